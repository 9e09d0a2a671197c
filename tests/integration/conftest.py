"""Fixtures for tests that run the real test guest (guest/) under libvirt.

Needs root, libvirtd (tools/libvirtd.sh start is run once per session) and the
Debian packages tools/build-guest.sh uses.  Guests run under QEMU TCG.

Fixtures
--------
guest_image    session.  GuestImage(dir, vmlinuz, initrd, disk): the guest built
               by tools/build-guest.sh into $CLOUDLET_GUEST_DIR (cached; a rerun
               costs ~1 s).  `disk` is the raw base disk: never write to it,
               put a qcow2 overlay on it (make_overlay).
libvirt_conn   session.  A libvirt connection (hypervisor.connect()).
guest_workdir  function.  A fresh directory that QEMU (user libvirt-qemu) can
               reach, for overlays, console logs and save images; removed after
               the test.  pytest's tmp_path is mode 0700, so QEMU cannot use it.
running_guest  function.  Factory:
                   running_guest(name=None, memory_mib=256, vcpus=1, nic=True,
                                 disk=True, wait=True) -> RunningGuest
               starts a transient domain on a fresh qcow2 overlay of the base
               disk, with guest ports 8080 (HTTP app) and 7 (echo) forwarded
               from free 127.0.0.1 ports when nic=True (no NIC at all when
               False), and with wait=True returns once the app answers.
               running_guest.track(name) adds another domain name to clean up
               (e.g. a clone restored under a new name).  At teardown every
               started or tracked domain is destroyed (absent ones are fine).

RunningGuest: conn, name, uuid, xml (as started), overlay (None without disk), console_log,
host_ports ({guest_port: host_port}), dom (refreshed by .lookup()),
url(path), get(path, timeout) -> body text, state() -> dict,
wait_for_app(timeout) -> dict, wait_for_console(text, timeout).

Helpers (import from tests.integration.conftest): make_overlay(base, path),
overlay_actual_size(path), APP_TIMEOUT.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid as uuidlib

import pytest

from cloudlet_engine import domainxml
from cloudlet_engine import hypervisor

REPO = pathlib.Path(__file__).resolve().parents[2]
GUEST_HTTP_PORT = 8080
GUEST_ECHO_PORT = 7
# Boot to app is ~10-15 s under TCG on an idle host; a busy 2-core host (or a
# libvirt capability probe) can take several times that.
APP_TIMEOUT = float(os.environ.get('CLOUDLET_TEST_APP_TIMEOUT', '120'))


def pytest_configure(config):
    config.addinivalue_line('markers', 'integration: needs root, libvirtd and QEMU; runs real guests')


@dataclasses.dataclass(frozen=True)
class GuestImage:
    dir: pathlib.Path
    vmlinuz: pathlib.Path
    initrd: pathlib.Path
    disk: pathlib.Path


def make_overlay(base, path):
    """A qcow2 overlay at `path` backed by the raw disk `base`."""
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', str(base), str(path)],
                   check=True)
    return pathlib.Path(path)


def overlay_actual_size(path):
    """Bytes allocated on the host for an image, even while a domain uses it (-U)."""
    out = subprocess.run(['qemu-img', 'info', '-U', '--output=json', str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)['actual-size']


@pytest.fixture(scope='session')
def guest_image():
    out = subprocess.run([str(REPO / 'tools' / 'build-guest.sh')], check=True,
                         capture_output=True, text=True).stdout
    paths = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
    return GuestImage(dir=pathlib.Path(paths['guest_dir']), vmlinuz=pathlib.Path(paths['vmlinuz']),
                      initrd=pathlib.Path(paths['initrd']), disk=pathlib.Path(paths['disk']))


@pytest.fixture(scope='session')
def libvirt_conn():
    # Idempotent; also warms libvirt so that its one-off QEMU probe does not
    # land inside a test's timeout.
    subprocess.run([str(REPO / 'tools' / 'libvirtd.sh'), 'start'], check=True, stdout=subprocess.DEVNULL)
    conn = hypervisor.connect()
    yield conn
    conn.close()


@pytest.fixture
def guest_workdir():
    base = os.environ.get('CLOUDLET_TEST_TMPDIR', '/var/tmp')
    path = pathlib.Path(tempfile.mkdtemp(prefix='cloudlet-test-', dir=base))
    path.chmod(0o755)   # QEMU runs as libvirt-qemu and must reach the files
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclasses.dataclass
class RunningGuest:
    conn: object
    name: str
    uuid: str
    xml: str
    overlay: pathlib.Path
    console_log: pathlib.Path
    host_ports: dict
    dom: object = None

    def lookup(self):
        self.dom = hypervisor.lookup(self.conn, self.name)
        return self.dom

    def url(self, path='/cgi-bin/state'):
        return 'http://127.0.0.1:%d%s' % (self.host_ports[GUEST_HTTP_PORT], path)

    def get(self, path='/cgi-bin/state', timeout=60):
        with urllib.request.urlopen(self.url(path), timeout=timeout) as response:
            return response.read().decode()

    def state(self, timeout=60):
        return hypervisor.parse_state(self.get('/cgi-bin/state', timeout))

    def wait_for_app(self, timeout=APP_TIMEOUT):
        return hypervisor.parse_state(hypervisor.wait_for_http(self.url('/cgi-bin/state'), timeout))

    def wait_for_console(self, text, timeout=APP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.console_log.exists() and text in self.console_log.read_text(errors='replace'):
                return self.console_log.read_text(errors='replace')
            time.sleep(0.5)
        raise AssertionError('%r not on the console of %s within %s s' % (text, self.name, timeout))


class _GuestFactory:
    def __init__(self, conn, image, workdir):
        self.conn, self.image, self.workdir = conn, image, workdir
        self.names = []

    def track(self, name):
        self.names.append(name)

    def __call__(self, name=None, memory_mib=256, vcpus=1, nic=True, disk=True, wait=True):
        name = name or 'cl-test-%s' % uuidlib.uuid4().hex[:8]
        uuid = str(uuidlib.uuid4())
        overlay = self.workdir / ('%s.qcow2' % name) if disk else None
        if disk:
            make_overlay(self.image.disk, overlay)
        console_log = self.workdir / ('%s.console.log' % name)
        host_ports = {}
        if nic:
            host_ports = {GUEST_HTTP_PORT: hypervisor.free_tcp_port(), GUEST_ECHO_PORT: hypervisor.free_tcp_port()}
        xml = domainxml.guest_domain_xml(
            name, uuid, str(self.image.vmlinuz), str(self.image.initrd), overlay and str(overlay), 'qcow2',
            memory_mib=memory_mib, vcpus=vcpus, port_forwards=host_ports,
            console_log=str(console_log), virt_type=hypervisor.virt_type())
        self.track(name)
        guest = RunningGuest(self.conn, name, uuid, xml, overlay, console_log, host_ports)
        guest.dom = hypervisor.start_domain(self.conn, xml)
        if wait and nic:
            guest.wait_for_app()
        return guest

    def cleanup(self):
        for name in self.names:
            hypervisor.destroy_domain(self.conn, name)


@pytest.fixture
def running_guest(libvirt_conn, guest_image, guest_workdir):
    factory = _GuestFactory(libvirt_conn, guest_image, guest_workdir)
    try:
        yield factory
    finally:
        factory.cleanup()
