"""The engine end to end on real libvirtd + QEMU (TCG) with the test guest.

capture a base -> resume it as a new VM (no boot) -> install the app, change RAM
and disk -> create an overlay -> destroy the VM -> synthesize a new VM from the
overlay served over HTTP -> the app answers with the state it had. Then bad
overlays: an error that names the problem, no VM, no file left.
"""

import functools
import http.server
import os
import shutil
import threading
import urllib.request

import pytest

from cloudlet_engine import basestore
from cloudlet_engine import capture
from cloudlet_engine import crypto
from cloudlet_engine import errors
from cloudlet_engine import format as overlay_format
from cloudlet_engine import hypervisor
from cloudlet_engine import outbound
from cloudlet_engine import synthesis
from tests.integration.conftest import APP_TIMEOUT

pytestmark = pytest.mark.integration

# The overlays are served on 127.0.0.1, which the default outbound policy refuses.
LOCAL_FETCH = outbound.Policy(allowed_networks=['127.0.0.1/32'])


@pytest.fixture
def http_server(guest_workdir):
    """Serve guest_workdir/www on 127.0.0.1; yields the base URL."""
    root = os.path.join(str(guest_workdir), 'www')
    os.makedirs(root)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()
    server.server_close()


def _forwards():
    return {8080: hypervisor.free_tcp_port(), 7: hypervisor.free_tcp_port()}


def _app_state(forwards, timeout=APP_TIMEOUT):
    """The app's state, waiting for it to answer at all."""
    url = 'http://127.0.0.1:%d/cgi-bin/state' % forwards[8080]
    return hypervisor.parse_state(hypervisor.wait_for_http(url, timeout))


def _app_call(forwards, path, timeout=600):
    """One request to the app (not retried: install and fill are not idempotent)."""
    url = 'http://127.0.0.1:%d%s' % (forwards[8080], path)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return hypervisor.parse_state(response.read().decode())


def _launch_dirs(instances):
    return sorted(os.listdir(instances)) if os.path.isdir(instances) else []


def test_capture_resume_overlay_synthesize(running_guest, guest_workdir, libvirt_conn, http_server):
    conn = libvirt_conn
    work = str(guest_workdir)
    store = basestore.BaseStore(os.path.join(work, 'bases'))
    instances = os.path.join(work, 'instances')
    www, url = http_server

    guest = running_guest(name='cl-it-origin')
    booted = guest.state()
    base = capture.capture_base(conn, guest.name, store, 'it-base')
    assert hypervisor.lookup(conn, guest.name) is None or not hypervisor.lookup(conn, guest.name).isActive()
    assert base.describe()['memory_mib'] == 256

    # Resume the base as a new VM: same memory (boot id), new identity, no reboot.
    resumed_fwd = _forwards()
    running_guest.track('cl-it-resumed')
    resumed = synthesis.synthesize(base, None, os.path.join(instances, 'cl-it-resumed'),
                                   'cl-it-resumed', port_forwards=resumed_fwd, conn=conn)
    assert resumed.timings['restore'] < 30
    state = _app_state(resumed_fwd)
    assert state['bootid'] == booted['bootid']
    assert float(state['uptime']) >= float(booted['uptime'])
    dom = hypervisor.lookup(conn, 'cl-it-resumed')
    assert dom.UUIDString() == resumed.uuid

    # Change it: install the app (tens of MB on disk), put state in RAM and on disk.
    installed = _app_call(resumed_fwd, '/cgi-bin/install')
    assert installed['app'] not in ('', 'none')
    _app_call(resumed_fwd, '/cgi-bin/fill?8')
    changed = _app_call(resumed_fwd, '/cgi-bin/set?ram=ram-token-42&disk=disk-token-7')
    assert changed['ram'] == 'ram-token-42' and changed['disk'] == 'disk-token-7'

    overlay_path = os.path.join(www, 'app.clo')
    stats = capture.capture_overlay(conn, 'cl-it-resumed', base, overlay_path)
    hypervisor.destroy_domain(conn, 'cl-it-resumed')
    shutil.rmtree(os.path.join(instances, 'cl-it-resumed'))
    assert stats.disk_chunks_changed * 4096 > 20e6         # the app really landed on disk
    assert os.path.getsize(overlay_path) < stats.changed_bytes   # dedup + compression paid
    assert not [f for f in os.listdir(www) if f != 'app.clo']

    # Synthesize from the overlay over HTTP: the app answers with its state, unbooted.
    fwd = _forwards()
    running_guest.track('cl-it-synth')
    result = synthesis.synthesize(base, url + '/app.clo', os.path.join(instances, 'cl-it-synth'),
                                  'cl-it-synth', port_forwards=fwd, conn=conn, policy=LOCAL_FETCH)
    assert result.overlay_bytes == os.path.getsize(overlay_path)
    state = _app_state(fwd)
    assert state['bootid'] == booted['bootid']
    assert state['ram'] == 'ram-token-42'
    assert state['disk'] == 'disk-token-7'
    assert state['app'] == installed['app']
    assert int(state['counter']) >= int(changed['counter'])
    # A second VM of the same name is refused before anything is touched: the first keeps running.
    with pytest.raises(errors.CloudletError, match='exists already'):
        synthesis.synthesize(base, url + '/app.clo', os.path.join(instances, 'cl-it-other'), 'cl-it-synth',
                             port_forwards=_forwards(), conn=conn)
    assert _app_state(fwd)['ram'] == 'ram-token-42'
    # The launch memory image is gone once QEMU has it; the disk stays in use.
    assert os.listdir(result.launch_dir) == ['console.log', 'disk.qcow2'] or \
        sorted(os.listdir(result.launch_dir)) == ['console.log', 'disk.qcow2']

    # The same overlay encrypted (format version 2): it synthesizes with its key only.
    key = crypto.new_key()
    with open(overlay_path, 'rb') as src, open(os.path.join(www, 'app-encrypted.clo'), 'xb') as out:
        overlay_format.encrypt_copy(src, out, key)
    encrypted_fwd = _forwards()
    running_guest.track('cl-it-encrypted')
    synthesis.synthesize(base, url + '/app-encrypted.clo', os.path.join(instances, 'cl-it-encrypted'),
                         'cl-it-encrypted', port_forwards=encrypted_fwd, conn=conn, key=key,
                         policy=LOCAL_FETCH)
    assert _app_state(encrypted_fwd)['ram'] == 'ram-token-42'
    hypervisor.destroy_domain(conn, 'cl-it-encrypted')
    shutil.rmtree(os.path.join(instances, 'cl-it-encrypted'))

    # Bad input: each fails with a clear error, leaves no VM and no launch files.
    blob = open(overlay_path, 'rb').read()
    with open(os.path.join(www, 'tail.clo'), 'wb') as f:
        f.write(blob + b'appended')
    with open(os.path.join(www, 'truncated.clo'), 'wb') as f:
        f.write(blob[:len(blob) // 2])
    flipped = bytearray(blob)
    flipped[len(blob) // 3] ^= 0x10
    with open(os.path.join(www, 'flipped.clo'), 'wb') as f:
        f.write(flipped)
    cases = [(url + '/truncated.clo', errors.TruncatedOverlay, 'truncated'),
             (url + '/flipped.clo', errors.CorruptOverlay, 'checksum'),
             (url + '/tail.clo', errors.CorruptOverlay, 'trailing data after the overlay trailer'),
             ((url + '/app-encrypted.clo', None), errors.KeyRequired, 'a key is needed'),
             ((url + '/app-encrypted.clo', crypto.new_key()), errors.DecryptionFailed, 'wrong key'),
             ((url + '/app.clo', key), errors.NotEncrypted, 'not encrypted'),
             (url + '/missing.clo', errors.SourceError, 'HTTP 404'),
             ('http://127.0.0.1:1/app.clo', errors.SourceError, 'cannot reach'),
             ('ftp://example.invalid/app.clo', errors.SourceError, 'not allowed')]
    before = _launch_dirs(instances)
    for location, error, words in cases:
        location, case_key = location if isinstance(location, tuple) else (location, None)
        with pytest.raises(error, match=words):
            synthesis.synthesize(base, location, os.path.join(instances, 'cl-it-bad'), 'cl-it-bad',
                                 port_forwards=_forwards(), conn=conn, key=case_key, policy=LOCAL_FETCH)
        assert hypervisor.lookup(conn, 'cl-it-bad') is None
        assert _launch_dirs(instances) == before
