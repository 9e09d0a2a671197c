"""Restore over the base's RAM file on real libvirtd + QEMU: the guest resumes unbooted with its
state, QEMU maps the file copy-on-write, captures of such a VM are stock overlays, and the file is
never written.
"""

import os
import subprocess
import urllib.request

import pytest

from cloudlet_engine import basestore
from cloudlet_engine import capture
from cloudlet_engine import domainxml
from cloudlet_engine import hypervisor
from cloudlet_engine import outbound
from cloudlet_engine import ramfile
from cloudlet_engine import savefile
from cloudlet_engine import synthesis
from tests.integration.conftest import APP_TIMEOUT

pytestmark = pytest.mark.integration


def _forwards():
    return {8080: hypervisor.free_tcp_port(), 7: hypervisor.free_tcp_port()}


def _state(forwards, path='/cgi-bin/state', timeout=APP_TIMEOUT):
    url = 'http://127.0.0.1:%d%s' % (forwards[8080], path)
    if path == '/cgi-bin/state':
        return hypervisor.parse_state(hypervisor.wait_for_http(url, timeout))
    with urllib.request.urlopen(url, timeout=600) as response:
        return hypervisor.parse_state(response.read().decode())


def _mapping_sizes(name, path):
    """{'Rss': kB, 'Shared_Clean': kB, ...} of the domain QEMU's mapping of `path`."""
    pid = subprocess.run(['pgrep', '-f', 'guest=%s,' % name], capture_output=True, text=True).stdout.split()[0]
    sizes, inside = {}, False
    with open('/proc/%s/smaps' % pid) as f:
        for line in f:
            fields = line.split()
            if '-' in fields[0] and len(fields) >= 5:        # a mapping's header line
                inside = fields[-1] == path
            elif inside and line.endswith('kB\n'):
                sizes[fields[0].rstrip(':')] = sizes.get(fields[0].rstrip(':'), 0) + int(fields[1])
    return sizes


def _qemu(name):
    """(command line, {'Rss': kB, 'Pss': kB}) of the domain's QEMU."""
    out = subprocess.run(['pgrep', '-f', 'guest=%s,' % name], capture_output=True, text=True).stdout.split()
    assert len(out) == 1, out
    with open('/proc/%s/cmdline' % out[0], 'rb') as f:
        args = f.read().replace(b'\0', b' ').decode()
    with open('/proc/%s/smaps_rollup' % out[0]) as f:
        sizes = {line.split(':')[0]: int(line.split()[1]) for line in f if line.split(':')[0] in ('Rss', 'Pss')}
    return args, sizes


def test_resume_capture_and_synthesis_over_the_ram_file(running_guest, guest_workdir, libvirt_conn):
    conn, work = libvirt_conn, str(guest_workdir)
    store = basestore.BaseStore(os.path.join(work, 'bases'))
    instances = os.path.join(work, 'instances')
    guest = running_guest(name='cl-it-ram-origin')
    booted = guest.state()
    base = capture.capture_base(conn, guest.name, store, 'it-ram-base')

    # Resume: a launch image of device state and small blocks, RAM mapped from the file.
    fwd = _forwards()
    running_guest.track('cl-it-ram-resumed')
    resumed = synthesis.synthesize(base, None, os.path.join(instances, 'resumed'), 'cl-it-ram-resumed',
                                   port_forwards=fwd, conn=conn, ram_file=True, keep_memory_image=True)
    ram = ramfile.RamFile(base.path)
    state = _state(fwd)
    assert state['bootid'] == booted['bootid']
    launch_image = os.path.join(resumed.launch_dir, 'memory.save')
    assert os.path.getsize(launch_image) < base.memory_size / 20
    assert domainxml.ram_file(savefile.read_save_image(launch_image).xml, ramfile.BACKEND_ID) == ram.path
    args, sizes = _qemu('cl-it-ram-resumed')
    assert 'mem-path=%s,share=off' % ram.path in args
    # The file is owned by the user QEMU runs as (it opens it read-write), mode 0600.
    st = os.stat(ram.path)
    assert (st.st_uid, st.st_gid) == hypervisor.qemu_owner(conn.getCapabilities(), hypervisor.virt_type())
    assert st.st_mode & 0o777 == 0o600

    # libvirt's managed save and start (nova's suspend and resume): back over the file, state kept.
    _state(fwd, '/cgi-bin/set?ram=before-managed-save')
    dom = hypervisor.lookup(conn, 'cl-it-ram-resumed')
    # Persistent as nova defines it: the definition does not map the file, the live XML does.
    conn.defineXML(domainxml.without_ram_file(dom.XMLDesc(0), ramfile.BACKEND_ID))
    dom.managedSave(0)
    dom.create()
    state = _state(fwd)
    assert (state['bootid'], state['ram']) == (booted['bootid'], 'before-managed-save')
    assert 'mem-path=%s,share=off' % ram.path in _qemu('cl-it-ram-resumed')[0]

    # Change it, capture an overlay (the VM is saved: its stream names the backend's block).
    _state(fwd, '/cgi-bin/fill?8')
    changed = _state(fwd, '/cgi-bin/set?ram=ram-file-token&disk=ram-file-disk')
    overlay = os.path.join(work, 'app.clo')
    capture.capture_overlay(conn, 'cl-it-ram-resumed', base, overlay)
    hypervisor.destroy_domain(conn, 'cl-it-ram-resumed')

    # The overlay synthesizes both ways with the state it had.
    for ram_file in (True, False):
        name = 'cl-it-ram-synth-%s' % ('file' if ram_file else 'image')
        fwd = _forwards()
        running_guest.track(name)
        synthesis.synthesize(base, overlay, os.path.join(instances, name), name, port_forwards=fwd, conn=conn,
                             ram_file=ram_file, policy=outbound.OPEN)
        state = _state(fwd)
        assert (state['bootid'], state['ram'], state['disk']) == (booted['bootid'], 'ram-file-token',
                                                                 'ram-file-disk')
        assert int(state['counter']) >= int(changed['counter'])
        assert ('memory-backend-file' in _qemu(name)[0]) == ram_file
    ram.verify()


def test_two_vms_share_the_base_pages(running_guest, guest_workdir, libvirt_conn):
    conn, work = libvirt_conn, str(guest_workdir)
    store = basestore.BaseStore(os.path.join(work, 'bases'))
    guest = running_guest(name='cl-it-ram-share')
    guest.state()
    base = capture.capture_base(conn, guest.name, store, 'it-ram-share')
    for name in ('cl-it-ram-a', 'cl-it-ram-b'):
        fwd = _forwards()
        running_guest.track(name)
        synthesis.synthesize(base, None, os.path.join(work, name), name, port_forwards=fwd, conn=conn,
                             ram_file=True)
        _state(fwd)
    ram = ramfile.RamFile(base.path)
    mapped = [_mapping_sizes(name, ram.path) for name in ('cl-it-ram-a', 'cl-it-ram-b')]
    # Each maps the file; the pages both have read are the same page cache pages.
    assert all(m.get('Shared_Clean', 0) > 1024 for m in mapped), mapped
    ram.verify()
