"""Restores over the base's RAM file on the box ([cloudlet] memory_restore = ram_file), and the
lifecycle of such a server: every other e2e test resumes and synthesizes this way too (the box's
nova has no memory balloon, so its captured bases qualify); these look at what only this path has.
"""

import json
import re
import subprocess
import time

from cloudlet_box import cloud
from cloudlet_engine import ramfile
from tests.e2e.conftest import app_get
from tests.e2e.conftest import DISK_STATE
from tests.e2e.conftest import host_files
from tests.e2e.conftest import RAM_STATE


def _qemu_args(server_id):
    """The command line of the server's QEMU process."""
    out = subprocess.run(['pgrep', '-a', '-f', 'qemu-system.*-uuid %s' % server_id],
                         capture_output=True, text=True).stdout.strip()
    assert out, 'no QEMU runs for %s' % server_id
    return out


def _mapped(box, base):
    """The RAM file QEMU maps: every host has its own base store at the first host's path."""
    return box.state_dir / 'bases' / base['base_id'] / ramfile.RAM_FILE


def _record(files, server_id):
    with open(files.instances / server_id / 'cloudlet.json') as f:
        return json.load(f)


def _wait_status(conn, server_id, status, timeout=300):
    deadline = time.monotonic() + timeout
    while True:
        server = conn.compute.get_server(server_id)
        if server.status == status and not server.task_state:
            return server
        assert server.status != 'ERROR', server.fault
        assert time.monotonic() < deadline, 'server %s still %s/%s' % (server_id, server.status,
                                                                        server.task_state)
        time.sleep(0.5)


def test_resume_maps_the_base_ram_file_and_cold_boots_use_ordinary_ram(box, admin, demo, servers, base):
    server_id = servers.track(cloud.create_server(demo, 'e2e-ramfile', base['image_id']))
    assert cloud.wait_server(demo, server_id).status == 'ACTIVE'
    files = host_files(box, admin, server_id)
    ram = ramfile.RamFile(str(files.state_dir / 'bases' / base['base_id']))
    assert _record(files, server_id)['memory_restore'] == 'ram_file'
    args = _qemu_args(server_id)
    assert 'mem-path=%s,share=off' % _mapped(box, base) in args and 'memory-backend=%s' % ramfile.BACKEND_ID in args
    state = app_get(demo, server_id, '/cgi-bin/fill?8', '/cgi-bin/set?ram=mapped&disk=mapped-disk')
    assert state['bootid'] == base['bootid'] and state['ram'] == 'mapped'

    # Hard reboot, and stop + start, cold-boot the domain's definition: ordinary RAM, a new boot.
    # (Checked on the console: on the box a restarted domain's NIC stays deaf, see below.)
    demo.compute.reboot_server(server_id, 'HARD')
    _wait_status(demo, server_id, 'ACTIVE')
    first = _wait_new_boot(demo, server_id, {base['bootid']})
    assert 'memory-backend-file' not in _qemu_args(server_id)
    demo.compute.stop_server(server_id)
    _wait_status(demo, server_id, 'SHUTOFF')
    demo.compute.start_server(server_id)
    _wait_status(demo, server_id, 'ACTIVE')
    _wait_new_boot(demo, server_id, {base['bootid'], first})
    assert 'memory-backend-file' not in _qemu_args(server_id)
    ram.verify()


def _wait_new_boot(conn, server_id, seen, timeout=300):
    """The boot id of a boot the console shows that is not in `seen` (the guest prints one per boot)."""
    deadline = time.monotonic() + timeout
    while True:
        output = conn.compute.get_server_console_output(server_id).get('output', '')
        booted = set(re.findall(r'CLOUDLET-MARKER up bootid=([0-9a-f-]+)', output)) - set(seen)
        if booted:
            return booted.pop()
        assert time.monotonic() < deadline, 'no new boot on the console of %s' % server_id
        time.sleep(2)


def test_suspend_and_resume_come_back_over_the_file(box, admin, demo, servers, base):
    """libvirt's managed save holds the live XML, mapping included: the resume maps the file again.

    The guest's memory across a managed save over the file is checked on real QEMU in
    tests/integration/test_ram_file.py; on the box, a resumed guest's NIC stays deaf (Open vSwitch's
    userspace datapath does not reopen the tap libvirt makes again, whatever the restore path), so
    this checks the domain.
    """
    server_id = servers.track(cloud.create_server(demo, 'e2e-ramfile-suspend', base['image_id']))
    assert cloud.wait_server(demo, server_id).status == 'ACTIVE'
    ram = ramfile.RamFile(str(host_files(box, admin, server_id).state_dir / 'bases' / base['base_id']))
    demo.compute.suspend_server(server_id)
    _wait_status(demo, server_id, 'SUSPENDED')
    demo.compute.resume_server(server_id)
    _wait_status(demo, server_id, 'ACTIVE')
    assert 'mem-path=%s,share=off' % _mapped(box, base) in _qemu_args(server_id)
    ram.verify()


def test_a_synthesized_server_maps_the_file_under_the_overlay_s_state(box, admin, demo, servers, base,
                                                                     app_overlay):
    server_id = servers.track(cloud.create_server(demo, 'e2e-ramfile-synth', base['image_id'],
                                                  metadata={'cloudlet_overlay_id': app_overlay['image_id']}))
    assert cloud.wait_server(demo, server_id).status == 'ACTIVE'
    assert _record(host_files(box, admin, server_id), server_id)['memory_restore'] == 'ram_file'
    assert 'memory-backend-file' in _qemu_args(server_id)
    state = app_get(demo, server_id, '/cgi-bin/state')
    assert (state['ram'], state['disk'], state['bootid']) == (RAM_STATE, DISK_STATE, base['bootid'])
