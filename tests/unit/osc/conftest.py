"""Fixtures of the OSC plugin's tests: a mocked Keystone + nova, a fake Glance, a fake OSC app.

nova is requests-mock behind a real keystoneauth session (v3 password against
a mocked Keystone whose catalog has two regions), so the tests see the very
requests the client sends. Glance is `FakeImageService` (tests/unit/glance),
set as the client's image service: the commands drive the real
cloudlet_glance.model on it. Commands run through cliff's own `run`, so their
`-f json` output is what a user gets.
"""

import configparser
import io
import json
import os
import subprocess
import sys

from keystoneauth1 import fixture as ksa_fixture
from keystoneauth1.identity import v3
from keystoneauth1 import session as ksa_session
import pytest
import requests_mock

from cloudlet_client import keys
from cloudlet_engine import format as overlay_format
from cloudlet_glance import model
from cloudlet_osc import client as client_mod
from cloudlet_osc import wait
# The Glance model tests' synthetic bases (64 MB, 2 vCPUs; "demo-base" and "other-base") and fake Glance.
from tests.unit.glance.conftest import fake_images  # noqa: F401
from tests.unit.glance.conftest import other_package  # noqa: F401
from tests.unit.glance.conftest import package  # noqa: F401

AUTH_URL = 'http://keystone.test/v3'
NOVA = 'http://nova-two.test/compute/v2.1'
SERVER_ID = '6f1c5a8e-3b0e-4c1a-9d55-0e6a1f1b2c3d'


@pytest.fixture
def nova():
    """requests-mock with Keystone; the compute endpoint of RegionTwo is NOVA."""
    token = ksa_fixture.V3Token()
    compute = token.add_service('compute', name='nova')
    compute.add_standard_endpoints(public='http://nova-one.test/compute/v2.1', region='RegionOne')
    compute.add_standard_endpoints(public=NOVA, internal='http://nova-two.internal/compute/v2.1',
                                   region='RegionTwo')
    with requests_mock.Mocker() as mock:
        mock.post(AUTH_URL + '/auth/tokens', json=token, headers={'X-Subject-Token': 'fake-token'})
        yield mock


@pytest.fixture
def cloudlet(nova, fake_images):  # noqa: F811 (a fixture imported above)
    """A CloudletClient on a real session (RegionTwo), its Glance replaced by the fake."""
    auth = v3.Password(auth_url=AUTH_URL, username='demo', password='secret', project_name='demo',
                       user_domain_id='default', project_domain_id='default')
    client = client_mod.CloudletClient(ksa_session.Session(auth=auth), region_name='RegionTwo',
                                       interface='public')
    client.images = fake_images
    return client


class FakeStream(io.StringIO):
    """stderr/stdout of the fake app; `tty` decides what isatty() answers."""

    def __init__(self, tty=False):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


class FakeBinaryStdout(io.TextIOWrapper):
    """A text stdout with a binary .buffer, like sys.stdout (for overlay download)."""

    def __init__(self):
        super().__init__(io.BytesIO(), encoding='utf-8')

    def isatty(self):
        return False


class FakeOSCApp:
    """Stands in for OSC's shell: its client manager (with the cloudlet client) and streams."""

    def __init__(self, cloudlet, stdout=None, stderr=None):
        self.client_manager = type('FakeClientManager', (), {'cloudlet': cloudlet})()
        self.stdout = stdout or FakeStream()
        self.stderr = stderr or FakeStream()
        self.options = None


@pytest.fixture
def app(cloudlet):
    return FakeOSCApp(cloudlet)


def run(app, command_class, *argv):
    """Run a command as cliff would (parse, take_action, format); return its `-f json` output."""
    command = command_class(app, None)
    parsed_args = command.get_parser('openstack cloudlet').parse_args(list(argv))
    start = app.stdout.tell()
    assert command.run(parsed_args) == 0
    if '-f' not in argv:
        return None
    app.stdout.seek(start)
    return json.loads(app.stdout.read())


@pytest.fixture(autouse=True)
def no_real_waiting(monkeypatch):
    """--wait polls without sleeping; `polls` counts the sleeps."""
    polls = []
    monkeypatch.setattr(wait, 'sleep', polls.append)
    return polls


@pytest.fixture
def base(fake_images, package):  # noqa: F811 (fixtures imported above)
    """The package's base imported into the fake Glance: (BaseVM, model.BaseImages)."""
    return package[0], model.import_base_package(fake_images, package[1])


def write_overlay(path, base_vm, padding=0):
    """A valid overlay against `base_vm` (header, trailer).

    `padding` bytes larger by a segment of opaque memory bytes (the format
    checks it; only an apply would use it).
    """
    with open(path, 'wb') as f:
        writer = overlay_format.OverlayWriter(f, {'base_id': base_vm.base_id, 'base_name': base_vm.name,
                                                  'disk_size': base_vm.disk_size, 'memory_size': 4096})
        if padding:
            items = overlay_format.encode_items([overlay_format.Item(overlay_format.MEM_BYTES, length=padding)])
            writer.add_segment(overlay_format.CODEC_NONE, overlay_format.DELTA_NONE, 1, len(items), items,
                               padding, b'\0' * padding)
        writer.finish()
    return str(path)


def flavor(flavor_id, name, ram, vcpus, disk, ephemeral=0, swap=0, disabled=False):
    return {'id': flavor_id, 'name': name, 'ram': ram, 'vcpus': vcpus, 'disk': disk,
            'OS-FLV-EXT-DATA:ephemeral': ephemeral, 'swap': swap, 'OS-FLV-DISABLED:disabled': disabled}


def server(status='BUILD', **fields):
    body = {'id': SERVER_ID, 'name': 'app', 'status': status,
            'flavor': {'original_name': 'c1.base', 'ram': 64, 'vcpus': 2, 'disk': 1},
            'image': {'id': 'set-by-test'}, 'metadata': {}}
    body.update(fields)
    return body


def bodies(nova_mock, method, url):
    """JSON bodies of the requests made to one URL (without query string)."""
    return [r.json() for r in nova_mock.request_history
            if r.method == method and r.url.split('?')[0] == url]


# ---------------------------------------------------------------- the real `openstack` shell

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def entry_points():
    """setup.cfg's OSC entry point groups: {group: {name: target}}."""
    config = configparser.ConfigParser()
    config.optionxform = str
    config.read(os.path.join(ROOT, 'setup.cfg'))
    return {group: dict(line.replace(' ', '').split('=', 1)
                        for line in config['entry_points'][group].splitlines() if line.strip())
            for group in ('openstack.cli.extension', 'openstack.cloudlet.v1')}


@pytest.fixture
def openstack(tmp_path):
    """Run `openstack ARGS` (OSC's shell, subprocess) against answers; return (rc, out, err, requests)."""
    dist_info = tmp_path / 'site' / 'openstack_cloudlet_entry_points-0.dist-info'
    dist_info.mkdir(parents=True)
    (dist_info / 'METADATA').write_text('Metadata-Version: 2.1\nName: openstack-cloudlet-entry-points\n'
                                        'Version: 0\n')
    (dist_info / 'entry_points.txt').write_text(''.join(
        '[%s]\n%s\n' % (group, ''.join('%s = %s\n' % item for item in commands.items()))
        for group, commands in entry_points().items()))
    no_clouds = tmp_path / 'no-clouds.yaml'
    no_clouds.write_text('clouds: {}\n')

    def run(args, answers=(), env=None):
        answers_path, seen_path = tmp_path / 'answers.json', tmp_path / 'seen.json'
        answers_path.write_text(json.dumps(list(answers)))
        clean_env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'HOME': str(tmp_path),
                     'XDG_CACHE_HOME': str(tmp_path / 'cache'), 'OS_CLIENT_CONFIG_FILE': str(no_clouds),
                     'PYTHONPATH': os.pathsep.join([str(tmp_path / 'site'), ROOT]),
                     'OS_NOVA_DISABLE_EVENTLET_PATCHING': '1'}
        clean_env.update(env or {})
        done = subprocess.run([sys.executable, os.path.join(ROOT, 'tests/unit/osc/fake_cloud_shell.py'),
                               str(answers_path), str(seen_path)] + list(args),
                              env=clean_env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
        seen = json.loads(seen_path.read_text()) if seen_path.exists() else []
        return done.returncode, done.stdout, done.stderr, seen
    return run


class FakeKeyManager:
    """The project's key manager (a fake for unit tests): keys by id; every instance shares `keys`."""

    keys = {}
    deleted = []

    def __init__(self, session, region_name=None, interface=None):
        self.region_name = region_name

    def new_key(self, name):
        key = bytes(range(32))
        key_id = 'key-%d' % len(self.keys)
        self.keys[key_id] = key
        return key, key_id

    def delete(self, ref):
        self.deleted.append(ref)


@pytest.fixture
def key_manager(monkeypatch):
    monkeypatch.setattr(FakeKeyManager, 'keys', {})
    monkeypatch.setattr(FakeKeyManager, 'deleted', [])
    monkeypatch.setattr(keys, 'KeyManager', FakeKeyManager)
    return FakeKeyManager
