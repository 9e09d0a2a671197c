"""End-to-end tier: the real box (tools/box.sh up), driven as its users do.

`tools/test.sh e2e` brings the box up first; these tests refuse to run
against a box that is not up. Shared, expensive state is built once per
session: a base VM (captured through nova, exported and re-imported with the
`openstack cloudlet` CLI) and an app overlay made from it.
"""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tools'))

from cloudlet_box import cloud  # noqa: E402
from cloudlet_box import guest_access  # noqa: E402
from cloudlet_box import layout  # noqa: E402
from cloudlet_box import processes  # noqa: E402
from cloudlet_box import resources  # noqa: E402
from cloudlet_box import services  # noqa: E402

RAM_STATE, DISK_STATE = 'e2e-ram-state', 'e2e-disk-state'


def pytest_collection_modifyitems(items):
    for item in items:
        if 'tests/e2e/' in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope='session')
def box():
    box = layout.current()
    down = [name for name in services.all_services(box)
            if not processes.pid_of(box.run / (name + '.pid'))]
    if down:
        pytest.fail('the box is not up (%s not running): `tools/box.sh up`, or run '
                    '`tools/test.sh e2e`, which brings it up' % ', '.join(down))
    return box


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


app_get = guest_access.app_answers


class Servers:
    """Servers a test made; deleted at its end whatever happened."""

    def __init__(self, conn):
        self.conn, self.ids = conn, []

    def track(self, server_id):
        self.ids.append(server_id)
        return server_id

    def cleanup(self):
        for server_id in self.ids:
            cloud.delete_server(self.conn, server_id)


@pytest.fixture(scope='session', autouse=True)
def no_servers_left(box):
    """At the end, delete every `e2e-` server of the test projects, including
    any a failed CLI call created without telling us its id."""
    yield
    for user in ('demo', 'alt'):
        conn = cloud.connect('%s-%s' % (box.name, user))
        for server in conn.compute.servers():
            if server.name.startswith('e2e-'):
                cloud.delete_server(conn, server.id)


@pytest.fixture
def servers(demo):
    made = Servers(demo)
    yield made
    made.cleanup()


@pytest.fixture(scope='session')
def base(box, demo, demo_cli, tmp_path_factory):
    """A base VM: boot the test guest, capture it through nova, then export it
    with the CLI, delete it, and import the package with the CLI."""
    made = Servers(demo)
    try:
        guest = demo.image.find_image(resources.GUEST_IMAGE, ignore_missing=False)
        booted = made.track(cloud.create_server(demo, 'e2e-boot', guest.id))
        assert cloud.wait_server(demo, booted).status == 'ACTIVE'
        booted_state = app_get(booted, '/cgi-bin/state')
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
def app_overlay(base, demo, demo_cli, tmp_path_factory):
    """Resume the base with the CLI, write app state into the VM, create an
    overlay with the CLI, delete the server; the overlay image and its file."""
    made = Servers(demo)
    try:
        resumed = demo_cli.json('cloudlet', 'server', 'resume-base', base['image_id'],
                                '--name', 'e2e-resumed', '--wait')
        made.track(resumed['id'])
        assert resumed['status'] == 'ACTIVE', resumed
        state = app_get(resumed['id'], '/cgi-bin/state',
                        '/cgi-bin/set?ram=%s&disk=%s' % (RAM_STATE, DISK_STATE))
        overlay = demo_cli.json('cloudlet', 'overlay', 'create', resumed['id'],
                                '--name', 'e2e-app', '--wait')
    finally:
        made.cleanup()
    path = tmp_path_factory.mktemp('overlay') / 'e2e-app.clo'
    result = demo_cli.run('cloudlet', 'overlay', 'download', overlay['id'], '--file', path)
    assert result.returncode == 0, result.stderr
    yield {'image_id': overlay['id'], 'path': path, 'resumed_state': state}
    demo_cli.run('cloudlet', 'overlay', 'delete', overlay['id'])
