"""End-to-end tier: the real box (tools/box.sh up), driven as its users do.

`tools/test.sh e2e` brings the box up first; these tests refuse to run
against a box that is not up. Shared, expensive state is built once per
session: a base VM (captured through nova, exported and re-imported with the
`openstack cloudlet` CLI) and an app overlay made from it.

The second cloud, box2 (`CLOUDLET_BOX=box2 CLOUDLET_BOX_PORT_OFFSET=100
tools/box.sh up`, which `tools/test.sh e2e` also runs), has its own libvirtd
and public endpoints behind an emulated WAN path: fixtures `box2`, `wan` (a
wan.WanPath: set_rate, set_delay, cut, cut_after, restore, stats; put back to
unshaped, no delay, not cut after every test that uses it), `box2_demo`,
`box2_admin` (internal endpoints) and `box2_wan_demo` (public endpoints: all
through the WAN path).
"""

import collections
import json
import pathlib
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tools'))

from cloudlet_box import box_libvirt  # noqa: E402
from cloudlet_box import cloud  # noqa: E402
from cloudlet_box import guest_app  # noqa: E402
from cloudlet_box import layout  # noqa: E402
from cloudlet_box import processes  # noqa: E402
from cloudlet_box import resources  # noqa: E402
from cloudlet_box import services  # noqa: E402
from cloudlet_box import wan as wan_path  # noqa: E402
from cloudlet_engine import ramfile  # noqa: E402

RAM_STATE, DISK_STATE = 'e2e-ram-state', 'e2e-disk-state'


def pytest_collection_modifyitems(items):
    for item in items:
        if 'tests/e2e/' in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def not_running(box):
    """The box's daemons that do not run (for a remote box also its libvirtd and WAN relay)."""
    down = [name for name in services.all_services(box)
            if not processes.pid_of(box.run / (name + '.pid'))]
    for owner in ((box,) if box.remote else ()) + tuple(box.compute_hosts):
        own = box_libvirt.BoxLibvirt(owner)
        down += ['%s (%s)' % (daemon, owner.name) for daemon in box_libvirt.DAEMONS if not own.pid(daemon)]
    if box.remote:
        if not wan_path.WanPath(box).is_up():
            down.append('WAN path %s' % box.wan.namespace)
    return down


@pytest.fixture(scope='session')
def box():
    box = layout.current()
    down = not_running(box)
    if down:
        pytest.fail('the box is not up (%s not running): `tools/box.sh up`, or run '
                    '`tools/test.sh e2e`, which brings it up' % ', '.join(down))
    return box


@pytest.fixture(scope='session')
def box2():
    """The second cloud: own libvirtd, public endpoints through its WAN path."""
    box2 = layout.named(layout.BOX2.name)
    down = not_running(box2)
    if down:
        pytest.fail('box2 is not up (%s not running): `CLOUDLET_BOX=%s CLOUDLET_BOX_PORT_OFFSET=%d '
                    'tools/box.sh up`, or run `tools/test.sh e2e`, which brings it up'
                    % (', '.join(down), box2.name, box2.port_offset))
    return box2


@pytest.fixture(scope='session')
def wan(box2):
    """box2's WAN path (wan.WanPath), unshaped, no delay, not cut at the start of each test."""
    path = wan_path.WanPath(box2)
    path.reset()
    return path


@pytest.fixture(autouse=True)
def _wan_put_back(request):
    """After a test that used `wan`: unshaped, no delay, not cut, whatever it did."""
    path = request.getfixturevalue('wan') if 'wan' in request.fixturenames else None
    yield
    if path is not None:
        path.reset()


@pytest.fixture(scope='session')
def box2_demo(box2):
    return cloud.connect('%s-demo' % box2.name)


@pytest.fixture(scope='session')
def box2_admin(box2):
    return cloud.connect('%s-admin' % box2.name)


@pytest.fixture(scope='session')
def box2_wan_demo(box2, wan):
    """box2's demo user through the public endpoints: every call crosses the WAN path."""
    return cloud.connect('%s-wan-demo' % box2.name)


class OpenStackCLI:
    """The real `openstack` command, as one of the box's users."""

    def __init__(self, box, user):
        self.cloud = '%s-%s' % (box.name, user)

    def run(self, *args, timeout=900):
        argv = [str(layout.VENV / 'bin' / 'openstack'), '--os-cloud', self.cloud] + [str(a) for a in args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def json(self, *args, timeout=900):
        result = self.run(*args, '-f', 'json', timeout=timeout)
        assert result.returncode == 0, 'openstack %s failed:\n%s' % (' '.join(map(str, args)),
                                                                      result.stderr[-3000:])
        return json.loads(result.stdout)


@pytest.fixture(scope='session')
def demo_cli(box):
    return OpenStackCLI(box, 'demo')


@pytest.fixture(scope='session')
def alt_cli(box):
    return OpenStackCLI(box, 'alt')


@pytest.fixture(scope='session')
def demo(box):
    return cloud.connect('%s-demo' % box.name)


@pytest.fixture(scope='session')
def alt(box):
    return cloud.connect('%s-alt' % box.name)


@pytest.fixture(scope='session')
def admin(box):
    return cloud.connect('%s-admin' % box.name)


app_get = guest_app.app_answers


class Servers:
    """Servers a test made; deleted at its end whatever happened."""

    def __init__(self, conn):
        self.conn, self.ids = conn, []

    def track(self, server_id):
        self.ids.append(server_id)
        return server_id

    def cleanup(self):
        cloud.delete_servers(self.conn, self.ids)


def sweep(box):
    """Delete every `e2e-` server of the test projects (including any a failed
    CLI call created without telling us its id), then every `e2e-` network and
    security group: a run killed half-way leaves them, and a shared network
    left behind makes `networks: auto` ambiguous for every later run.
    """
    boxes = [box]
    second = layout.named(layout.BOX2.name)
    if second.name != box.name and not not_running(second):
        boxes.append(second)
    for each in boxes:
        for user in ('demo', 'alt'):
            conn = cloud.connect('%s-%s' % (each.name, user))
            cloud.delete_servers(conn, [s.id for s in conn.compute.servers() if s.name.startswith('e2e-')])
        admin = cloud.connect('%s-admin' % each.name)
        for network in admin.network.networks():
            if network.name.startswith('e2e-'):
                admin.network.delete_network(network)
        for group in admin.network.security_groups():
            if group.name.startswith('e2e-'):
                admin.network.delete_security_group(group)
        for hidden in (False, True):      # a base's companions and overlay uploads are hidden
            for image in list(admin.image.images(is_hidden=hidden)):
                if (image.name or '').startswith('e2e-'):
                    admin.image.delete_image(image, ignore_missing=True)


def _ram_files(*boxes):
    for made in boxes:
        for state_dir in made.state_dirs:
            for meta in sorted((state_dir / 'bases').glob('*/' + ramfile.RAM_META)):
                yield ramfile.RamFile(str(meta.parent))


def host_files(box, admin, server_id):
    """Where the server's compute host keeps its files (layout.HostFiles)."""
    return box.host_files(admin.compute.get_server(server_id).compute_host)


@pytest.fixture(scope='session', autouse=True)
def ram_files_never_written(box):
    """The bases' RAM files (which running VMs map) are never written: their SHA-256 at the end."""
    yield
    for ram in _ram_files(box, layout.named('box2')):
        ram.verify()


@pytest.fixture(autouse=True)
def _ram_files_unchanged(box):
    """After every test: each RAM file's stat signature (a punched hole changes its mtime)."""
    yield
    for ram in _ram_files(box, layout.named('box2')):
        ram.check()


@pytest.fixture(scope='session', autouse=True)
def no_test_resources_left(box):
    """Before and after the run: what `sweep` removes."""
    sweep(box)
    yield
    sweep(box)


@pytest.fixture
def servers(demo):
    made = Servers(demo)
    yield made
    made.cleanup()


@pytest.fixture(scope='session')
def base(box, demo, demo_cli, tmp_path_factory):
    """A base VM: boot the test guest, capture it through nova, then export it
    with the CLI, delete it, and import the package with the CLI.
    """
    made = Servers(demo)
    try:
        guest = demo.image.find_image(resources.GUEST_IMAGE, ignore_missing=False)
        booted = made.track(cloud.create_server(demo, 'e2e-boot', guest.id))
        assert cloud.wait_server(demo, booted).status == 'ACTIVE'
        booted_state = app_get(demo, booted, '/cgi-bin/state')
        captured = cloud.capture(demo, booted, 'base', 'e2e-captured')
    finally:
        made.cleanup()
    package = tmp_path_factory.mktemp('package') / 'e2e-base.zip'
    demo_cli.run('cloudlet', 'base', 'export', captured.id, package)
    assert package.stat().st_size > 10**6
    demo_cli.run('cloudlet', 'base', 'delete', captured.id)
    imported = demo_cli.json('cloudlet', 'base', 'import', package, '--name', 'e2e-base')
    yield {'image_id': imported['id'], 'base_id': imported['base_id'], 'bootid': booted_state['bootid'],
           'captured_id': captured.id, 'package': package}
    demo_cli.run('cloudlet', 'base', 'delete', imported['id'])


@pytest.fixture(scope='session')
def shared_base(base, demo, box2, box2_demo, tmp_path_factory):
    """The session's base, also in box2's Glance (demo's, private there): the handoffs' base
    (handoff_scene.SharedBase). Copied, not captured again: one boot of the guest per run.
    """
    from cloudlet_box import handoff_scene
    shared = handoff_scene.share_base(demo, box2_demo, tmp_path_factory.mktemp('shared'),
                                      handoff_scene.base_image(demo, base['image_id']))
    yield shared
    handoff_scene.forget_shared(box2_demo, shared)


@pytest.fixture(scope='session')
def app_overlay(base, demo, demo_cli, tmp_path_factory):
    """Resume the base with the CLI, write app state into the VM, create an
    overlay with the CLI, delete the server; the overlay image and its file.
    """
    made = Servers(demo)
    try:
        resumed = demo_cli.json('cloudlet', 'server', 'resume-base', base['image_id'],
                                '--name', 'e2e-resumed', '--wait')
        made.track(resumed['id'])
        assert resumed['status'] == 'ACTIVE', resumed
        state = app_get(demo, resumed['id'], '/cgi-bin/state',
                        '/cgi-bin/set?ram=%s&disk=%s' % (RAM_STATE, DISK_STATE))
        address = guest_app.floating_ip(demo, resumed['id'])
        overlay = demo_cli.json('cloudlet', 'overlay', 'create', resumed['id'],
                                '--name', 'e2e-app', '--wait')
        # The capture took the server's NICs out and put them back.
        after_capture = guest_app.get(address, '/cgi-bin/state', timeout=120)
        address_after_capture = guest_app.floating_ip(demo, resumed['id'])
    finally:
        made.cleanup()
    path = tmp_path_factory.mktemp('overlay') / 'e2e-app.clo'
    result = demo_cli.run('cloudlet', 'overlay', 'download', overlay['id'], '--file', path)
    assert result.returncode == 0, result.stderr
    yield {'image_id': overlay['id'], 'path': path, 'resumed_state': state, 'address': address,
           'after_capture': after_capture, 'address_after_capture': address_after_capture}
    demo_cli.run('cloudlet', 'overlay', 'delete', overlay['id'])


# -- the box's two compute hosts (test_hosts.py, test_migration.py) --------------------------

# Seconds until box-compute2 forgets a base no server uses: idle 30 s, a pass
# every 15 s, its trait gone at the next report (15 s).
AGED_OUT = 120


@pytest.fixture(scope='module')
def hosts(box, admin):
    """(first host, second host): nova's names."""
    if not box.compute_hosts:
        pytest.skip('box %s has one compute host' % box.name)
    second = box.compute_hosts[0].name
    names = {service.host for service in admin.compute.services(binary='nova-compute')}
    assert second in names and len(names) == 2, names
    return (names - {second}).pop(), second


def holds(box, host_name, base_id):
    """Whether the host's base store holds the base (its directory, as this machine sees it)."""
    return (box.host_files(host_name).state_dir / 'bases' / base_id).is_dir()


def traits(admin, host_name):
    provider = next(h for h in admin.compute.hypervisors(details=True) if h.service_details['host'] == host_name)
    return set(admin.placement.get('/resource_providers/%s/traits' % provider.id,
                                   microversion='1.6').json()['traits'])


def wait_until(what, check, timeout):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, 'not within %d s: %s' % (timeout, what)
        time.sleep(1)
    return time.monotonic()


def host_of(admin, server_id):
    return admin.compute.get_server(server_id).compute_host


def servers_per_host(admin):
    """How many servers, of every project, each compute host has (a Counter: 0 for a host with none)."""
    return collections.Counter(s.compute_host for s in admin.compute.servers(all_projects=True))


def synthesize(conn, name, base_image_id, overlay, **kwargs):
    """A server of the base image with the overlay: {'cloudlet_overlay_id': ...} or {'overlay_url': ...}."""
    return cloud.create_server(conn, name, base_image_id, metadata=overlay, **kwargs)


@pytest.fixture
def aggregate(admin):
    """A host aggregate the test fills (deleted afterwards, hosts removed first)."""
    made = []

    def make(name, *host_names, metadata=None):
        found = admin.compute.create_aggregate(name=name)
        for host_name in host_names:
            admin.compute.add_host_to_aggregate(found, host_name)
        if metadata:
            admin.compute.set_aggregate_metadata(found, metadata)
        made.append(found.id)
        return admin.compute.get_aggregate(found.id)
    yield make
    for aggregate_id in made:
        found = admin.compute.get_aggregate(aggregate_id)
        for host_name in found.hosts or ():
            admin.compute.remove_host_from_aggregate(found, host_name)
        admin.compute.delete_aggregate(found)
