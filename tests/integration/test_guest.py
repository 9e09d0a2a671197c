"""The test guest under real libvirt: boot, app API, save/restore, install.

Timings are printed (run with -s to see them).
"""

import hashlib
import socket
import subprocess
import tarfile
import time
import urllib.error

import libvirt
import pytest

from cloudlet_engine import domainxml
from cloudlet_engine import hypervisor
from tests.integration.conftest import GUEST_ECHO_PORT
from tests.integration.conftest import GUEST_HTTP_PORT
from tests.integration.conftest import overlay_actual_size

pytestmark = pytest.mark.integration


def _timed(label, func, *args):
    start = time.monotonic()
    result = func(*args)
    print('%s: %.2f s' % (label, time.monotonic() - start))
    return result


def _echo(port, payload=b'ping-cloudlet\n'):
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        sock.sendall(payload)
        return sock.recv(len(payload))


def _wait_for_counter_above(guest, value, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = guest.state()
        if int(state['counter']) > value:
            return state
        time.sleep(0.5)
    raise AssertionError('counter of %s stuck at %s' % (guest.name, value))


def _expected_app_hash(disk, workdir):
    """The hash /cgi-bin/install reports, computed on the host from the
    tarball in the base disk: sha256 over the sorted `sha256sum ./path` lines.
    """
    tarball = workdir / 'app.tar.gz'
    subprocess.run(['debugfs', '-R', 'dump /app.tar.gz %s' % tarball, str(disk)],
                   check=True, capture_output=True)
    lines = []
    with tarfile.open(tarball) as tar:
        for member in tar:
            if member.isfile():
                digest = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
                lines.append('%s  ./%s\n' % (digest, member.name))
    return hashlib.sha256(''.join(sorted(lines)).encode()).hexdigest(), tarball.stat().st_size


def test_boot_app_api_and_echo(running_guest):
    start = time.monotonic()
    guest = running_guest()
    print('start to app: %.1f s' % (time.monotonic() - start))
    console = guest.wait_for_console('CLOUDLET-MARKER up bootid=', timeout=30)
    assert 'disk: hello-from-cloudlet-disk' in console

    state = guest.state()
    assert set(state) == {'bootid', 'uptime', 'counter', 'ram', 'disk', 'app'}
    assert 'bootid=%s' % state['bootid'] in console
    assert state['app'] == 'none' and state['ram'] == '' and state['disk'] == ''
    assert guest.get('/').strip() == 'hello-cloudlet'

    state = hypervisor.parse_state(guest.get('/cgi-bin/set?ram=r-1.A_b&disk=d.2'))
    assert (state['ram'], state['disk']) == ('r-1.A_b', 'd.2')
    for bad_query in ('ram=a%20b', 'ram=a/b', 'disk=*', 'nokey=1'):
        with pytest.raises(urllib.error.HTTPError) as failure:
            guest.get('/cgi-bin/set?' + bad_query)
        assert failure.value.code == 400
    assert guest.state()['ram'] == 'r-1.A_b'   # nothing stored from rejected queries

    assert _echo(guest.host_ports[GUEST_ECHO_PORT]) == b'ping-cloudlet\n'


def test_boots_without_nic_and_configures_a_hotplugged_one(running_guest):
    guest = running_guest(nic=False)
    console = guest.wait_for_console('CLOUDLET-MARKER up bootid=')
    assert 'disk: hello-from-cloudlet-disk' in console
    live = guest.dom.XMLDesc(0)
    assert 'hostfwd' not in live and '<interface' not in live

    # As after a restore of a NIC-less snapshot: plug a NIC (ACPI PCI hotplug),
    # the guest's background loop runs DHCP on it (QEMU user networking's server).
    start = time.monotonic()
    guest.dom.attachDeviceFlags("<interface type='user'><model type='virtio'/></interface>",
                                libvirt.VIR_DOMAIN_AFFECT_LIVE)
    guest.wait_for_console('dhcp: eth0 10.0.2.15', timeout=60)
    print('hotplug to DHCP lease: %.1f s' % (time.monotonic() - start))


def test_save_restore_keeps_memory_and_disk(running_guest, libvirt_conn, guest_workdir):
    guest = running_guest()
    guest.get('/cgi-bin/set?ram=kept-in-ram&disk=kept-on-disk')
    guest.get('/cgi-bin/fill?8')   # some changed guest memory
    before = _wait_for_counter_above(guest, int(guest.state()['counter']))

    save_path = guest_workdir / 'memory.save'
    _timed('save', hypervisor.save_domain, guest.dom, str(save_path))
    assert hypervisor.lookup(libvirt_conn, guest.name) is None   # transient: gone after save
    print('save image: %.1f MB' % (save_path.stat().st_size / 1e6))

    start = time.monotonic()
    guest.dom = _timed('restore', hypervisor.restore_domain, libvirt_conn, str(save_path))
    after = guest.wait_for_app(timeout=60)
    print('restore to app: %.2f s' % (time.monotonic() - start))

    assert after['bootid'] == before['bootid']
    assert (after['ram'], after['disk']) == ('kept-in-ram', 'kept-on-disk')
    assert int(after['counter']) >= int(before['counter'])
    assert float(after['uptime']) >= float(before['uptime'])
    _wait_for_counter_above(guest, int(after['counter']))   # still ticking


def test_restore_with_retargeted_host_paths_and_ports(running_guest, libvirt_conn, guest_workdir):
    guest = running_guest()
    before = hypervisor.parse_state(guest.get('/cgi-bin/set?ram=r1&disk=d1'))
    save_path = guest_workdir / 'memory.save'
    hypervisor.save_domain(guest.dom, str(save_path))

    # The disk moves to a copy and the forwards to new host ports: what libvirt
    # accepts in a restore's replacement XML (name and uuid it refuses).
    saved_xml = libvirt_conn.saveImageGetXMLDesc(str(save_path), 0)
    new_overlay = guest_workdir / 'moved.qcow2'
    subprocess.run(['cp', str(guest.overlay), str(new_overlay)], check=True)
    new_ports = {GUEST_HTTP_PORT: hypervisor.free_tcp_port(), GUEST_ECHO_PORT: hypervisor.free_tcp_port()}
    new_log = guest_workdir / 'moved.console.log'
    new_xml = domainxml.retarget(saved_xml, disk_path=str(new_overlay), console_log=str(new_log),
                                 port_forwards=new_ports)
    assert domainxml.abi_digest(new_xml) == domainxml.abi_digest(saved_xml)

    guest.dom = _timed('restore with new XML', hypervisor.restore_domain, libvirt_conn, str(save_path), new_xml)
    guest.host_ports = new_ports
    after = guest.wait_for_app(timeout=60)
    assert (after['bootid'], after['ram'], after['disk']) == (before['bootid'], 'r1', 'd1')

    live = guest.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
    assert str(new_overlay) in live and str(new_log) in live
    assert 'hostfwd=tcp:127.0.0.1:%d-:%d' % (new_ports[GUEST_HTTP_PORT], GUEST_HTTP_PORT) in live
    assert domainxml.abi_digest(live) == domainxml.abi_digest(saved_xml)
    assert _echo(new_ports[GUEST_ECHO_PORT]) == b'ping-cloudlet\n'


def test_install_writes_tens_of_mb_and_reports_app_hash(running_guest, guest_image, guest_workdir):
    expected_hash, tarball_size = _expected_app_hash(guest_image.disk, guest_workdir)
    guest = running_guest()
    size_before = overlay_actual_size(guest.overlay)

    state = hypervisor.parse_state(_timed('install', guest.get, '/cgi-bin/install', 300))
    assert state['app'] == expected_hash
    written = overlay_actual_size(guest.overlay) - size_before
    print('app.tar.gz %.1f MB; overlay grew %.1f MB' % (tarball_size / 1e6, written / 1e6))
    assert written > 25e6

    state = hypervisor.parse_state(_timed('fill 16 MB', guest.get, '/cgi-bin/fill?16', 120))
    assert state['app'] == expected_hash
    with pytest.raises(urllib.error.HTTPError):
        guest.get('/cgi-bin/fill?lots')
