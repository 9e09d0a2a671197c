"""The handoff residue on real libvirtd + QEMU: streamed while the VM runs, then applied elsewhere.

capture a base -> resume it -> change RAM and disk -> LiveResidue streams the
residue (disk pre-copy, QEMU live migration of the memory, final disk pass)
into a file while the app keeps answering -> the VM is paused -> a new VM
synthesized from that residue answers with the same state and boot id. A
failing sink in the middle of the memory phase cancels the migration and the
source VM runs on with its state.
"""

import os
import threading

import pytest

from cloudlet_engine import basestore
from cloudlet_engine import capture
from cloudlet_engine import domainxml
from cloudlet_engine import handoff
from cloudlet_engine import hypervisor
from cloudlet_engine import livemigration
from cloudlet_engine import synthesis
from tests.integration.test_synthesis import _app_call
from tests.integration.test_synthesis import _app_state
from tests.integration.test_synthesis import _forwards
from tests.integration.test_synthesis import http_server  # noqa: F401 - fixture
from tests.integration.test_synthesis import LOCAL_FETCH

pytestmark = pytest.mark.integration


class _SlowFile:
    """A sink that takes `rate` bytes/s (the WAN), and can fail after `fail_after` bytes."""

    def __init__(self, path, rate, fail_after=None):
        self.f = open(path, 'wb')
        self.rate, self.fail_after, self.bytes = rate, fail_after, 0
        self.app_answers_while_streaming = 0

    def write(self, data):
        if self.fail_after is not None and self.bytes + len(data) > self.fail_after:
            raise OSError('link cut')
        self.f.write(data)
        self.bytes += len(data)
        threading.Event().wait(len(data) / self.rate)

    def bandwidth(self):
        return self.rate * 8


@pytest.fixture
def changed_vm(running_guest, guest_workdir, libvirt_conn):
    """(base, the resumed VM's name, its port forwards, its app state) after changing RAM and disk."""
    work = str(guest_workdir)
    guest = running_guest(name='cl-ho-origin')
    booted = guest.state()
    base = capture.capture_base(libvirt_conn, guest.name, basestore.BaseStore(os.path.join(work, 'bases')),
                                'ho-base')
    fwd = _forwards()
    running_guest.track('cl-ho-src')
    synthesis.synthesize(base, None, os.path.join(work, 'instances', 'cl-ho-src'), 'cl-ho-src',
                         port_forwards=fwd, conn=libvirt_conn)
    assert _app_state(fwd)['bootid'] == booted['bootid']
    _app_call(fwd, '/cgi-bin/install')
    _app_call(fwd, '/cgi-bin/fill?8')
    state = _app_call(fwd, '/cgi-bin/set?ram=ram-ho-1&disk=disk-ho-2')
    return base, 'cl-ho-src', fwd, state


@pytest.mark.parametrize('memory', ['live', 'auto'])
def test_residue_streams_while_running_and_synthesizes(changed_vm, guest_workdir, libvirt_conn,
                                                        http_server, running_guest, memory):  # noqa: F811
    # `live` forces QEMU's pre-copy, which under TCG before QEMU 9.0 may miss a page now
    # and then (doc/handoff.md, "The memory of a TCG guest"); `auto` pauses such a guest first.
    base, name, fwd, state = changed_vm
    www, url = http_server
    dom = hypervisor.lookup(libvirt_conn, name)
    sink = _SlowFile(os.path.join(www, 'residue.clo'), rate=3e6)
    live = handoff.LiveResidue(dom, base, str(guest_workdir), codec='auto', bandwidth=sink.bandwidth,
                               memory=memory)
    stats = live.run(sink)
    sink.f.close()
    print('residue', stats)
    assert dom.state()[0] == 3                                    # paused at the source
    assert stats.bytes_out == os.path.getsize(os.path.join(www, 'residue.clo'))
    assert stats.disk_chunks_sent * 4096 > 20e6                   # the installed app, sent while running
    exact = livemigration.precopy_is_exact(domainxml.virt_type(dom.XMLDesc(0)),
                                           livemigration.qemu_version(dom))
    assert stats.memory_transfer == ('live' if memory == 'live' or exact else 'stopped')
    if stats.memory_transfer == 'live':
        assert stats.bytes_after_pause < stats.bytes_out / 4      # most of it went before the pause
        assert stats.precopy_seconds > stats.final_seconds
    # The slow sink limits the memory phase: it is where the pipeline waited.
    assert 0 < stats.send_wait_seconds
    assert stats.qemu_wait_seconds + stats.send_wait_seconds <= stats.memory_seconds
    assert 0 < stats.memory_cpu_seconds <= stats.memory_seconds

    hypervisor.destroy_domain(libvirt_conn, name)
    fwd2 = _forwards()
    running_guest.track('cl-ho-dst')
    synthesis.synthesize(base, url + '/residue.clo', os.path.join(str(guest_workdir), 'instances', 'cl-ho-dst'),
                         'cl-ho-dst', port_forwards=fwd2, conn=libvirt_conn, policy=LOCAL_FETCH)
    moved = _app_state(fwd2)
    assert moved['bootid'] == state['bootid']
    assert (moved['ram'], moved['disk'], moved['app']) == ('ram-ho-1', 'disk-ho-2', state['app'])
    assert int(moved['counter']) >= int(state['counter'])


def test_failing_sink_leaves_the_source_running(changed_vm, guest_workdir, libvirt_conn):
    base, name, fwd, state = changed_vm
    dom = hypervisor.lookup(libvirt_conn, name)
    sink = _SlowFile(os.path.join(str(guest_workdir), 'cut.clo'), rate=20e6, fail_after=12 << 20)
    live = handoff.LiveResidue(dom, base, str(guest_workdir), codec='zstd', bandwidth=sink.bandwidth)
    with pytest.raises(OSError, match='link cut'):
        live.run(sink)
    assert live.stats.memory_stream_bytes > 0                     # it failed during the live migration
    live.resume_source()
    after = _app_state(fwd, timeout=30)
    assert after['bootid'] == state['bootid'] and after['ram'] == 'ram-ho-1'
    assert not [f for f in os.listdir(str(guest_workdir)) if f.startswith('memory.stream')]
