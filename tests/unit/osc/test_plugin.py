"""The OSC plugin contract, and OSC's own `openstack` shell running the plugin end to end.

The end-to-end tests run python-openstackclient's shell in a subprocess with a
temporary .dist-info that declares setup.cfg's entry points: the command
names, the plugin module, auth from OS_* variables or clouds.yaml, the
client's endpoint and microversion, `-f json` output and the one-line errors
are all OSC's real behaviour.
"""

import argparse
import json
import types

from keystoneauth1 import fixture as ksa_fixture
from osc_lib.command import command
from osc_lib import exceptions
import pytest

from cloudlet_osc import client as client_mod
from cloudlet_osc import plugin
from tests.unit.osc.conftest import AUTH_URL
from tests.unit.osc.conftest import entry_points as _entry_points
from tests.unit.osc.conftest import NOVA

COMMANDS = {
    'cloudlet base import': command.ShowOne, 'cloudlet base export': command.Command,
    'cloudlet base list': command.Lister, 'cloudlet base show': command.ShowOne,
    'cloudlet base delete': command.Command, 'cloudlet overlay create': command.ShowOne,
    'cloudlet overlay list': command.Lister, 'cloudlet overlay show': command.ShowOne,
    'cloudlet overlay download': command.Command, 'cloudlet overlay delete': command.Command,
    'cloudlet server synthesize': command.ShowOne, 'cloudlet server resume-base': command.ShowOne,
    'cloudlet server handoff': command.ShowOne,
    'cloudlet server lease': command.ShowOne, 'cloudlet server heartbeat': command.ShowOne,
    'cloudlet base create': command.ShowOne, 'cloudlet discover': command.Lister,
    'cloudlet base precache': command.Lister,
}
IMPORT_ID = '0c3f3b44-7b83-4f4e-9d6e-7d3b9a1e2f10'
URL = 'https://packages.example/demo-base.zip'


def test_setup_cfg_declares_the_plugin_and_every_command():
    entry_points = _entry_points()
    assert entry_points['openstack.cli.extension'] == {'cloudlet': 'cloudlet_osc.plugin'}
    commands = entry_points['openstack.cloudlet.v1']
    # cliff turns "_" into spaces and keeps "-": cloudlet_server_resume-base -> "cloudlet server resume-base"
    assert {name.replace('_', ' ') for name in commands} == set(COMMANDS)
    for name, target in commands.items():
        module, _, attribute = target.partition(':')
        command_class = getattr(__import__(module, fromlist=[attribute]), attribute)
        assert issubclass(command_class, COMMANDS[name.replace('_', ' ')]), name


def test_plugin_module_contract(monkeypatch):
    assert (plugin.API_NAME, plugin.API_VERSION_OPTION, plugin.DEFAULT_API_VERSION) == \
        ('cloudlet', 'os_cloudlet_api_version', '1')
    assert set(plugin.API_VERSIONS) == {'1'}
    monkeypatch.delenv('OS_CLOUDLET_API_VERSION', raising=False)
    assert plugin.build_option_parser(argparse.ArgumentParser()).parse_args([]).os_cloudlet_api_version == '1'
    monkeypatch.setenv('OS_CLOUDLET_API_VERSION', '7')
    assert plugin.build_option_parser(argparse.ArgumentParser()).parse_args([]).os_cloudlet_api_version == '7'


def test_make_client_uses_the_client_managers_session_region_and_interface():
    session = object()
    instance = types.SimpleNamespace(session=session, region_name='RegionTwo', interface='internal',
                                     _api_version={'cloudlet': '1'})
    client = plugin.make_client(instance)
    assert isinstance(client, client_mod.CloudletClient)
    assert client.session is session
    assert (client.compute.region_name, client.compute.interface, client.compute.service_type) == \
        ('RegionTwo', 'internal', 'compute')
    instance._api_version = {'cloudlet': '2'}
    with pytest.raises(exceptions.UnsupportedVersion, match='cloudlet API version 2 is not supported'):
        plugin.make_client(instance)


# ---------------------------------------------------------------- the real `openstack` shell


def _keystone():
    token = ksa_fixture.V3Token()
    compute = token.add_service('compute', name='nova')
    compute.add_standard_endpoints(public='http://nova-one.test/compute/v2.1', region='RegionOne')
    compute.add_standard_endpoints(public=NOVA, region='RegionTwo')
    return {'method': 'POST', 'url': AUTH_URL + '/auth/tokens', 'status': 201, 'json': token,
            'headers': {'X-Subject-Token': 'fake-token'}}


AUTH_ENV = {'OS_AUTH_TYPE': 'v3password', 'OS_AUTH_URL': AUTH_URL, 'OS_USERNAME': 'demo',
            'OS_PASSWORD': 'secret', 'OS_PROJECT_NAME': 'demo', 'OS_USER_DOMAIN_ID': 'default',
            'OS_PROJECT_DOMAIN_ID': 'default', 'OS_REGION_NAME': 'RegionTwo'}


def test_openstack_lists_the_cloudlet_commands(openstack):
    rc, out, err, _ = openstack(['command', 'list', '--group', 'cloudlet', '-f', 'json'])
    assert rc == 0, err
    [group] = json.loads(out)
    assert group['Command Group'] == 'openstack.cloudlet.v1'
    assert sorted(group['Commands']) == sorted(COMMANDS)


def test_openstack_runs_a_command_with_os_variables(openstack):
    record = {'id': IMPORT_ID, 'name': 'demo', 'url': URL, 'visibility': 'private', 'status': 'queued',
              'progress': {'stage': 'queued', 'bytes_done': 0, 'bytes_total': None}, 'error': None,
              'base_id': None, 'image_id': None, 'companion_image_ids': {}}
    rc, out, err, seen = openstack(
        ['cloudlet', 'base', 'import', URL, '--name', 'demo', '-f', 'json'],
        answers=[_keystone(), {'method': 'POST', 'url': NOVA + '/os-cloudlet/bases', 'status': 202,
                               'json': {'base': record}}],
        env=AUTH_ENV)
    assert rc == 0, err
    assert json.loads(out)['id'] == IMPORT_ID
    [call] = [r for r in seen if r['url'].startswith(NOVA)]
    assert call['json'] == {'base': {'url': URL, 'name': 'demo', 'visibility': 'private'}}
    assert call['headers']['OpenStack-API-Version'] == 'compute 2.96'
    assert call['headers']['X-Auth-Token'] == 'fake-token'


def test_openstack_shows_novas_refusal_on_one_line_with_clouds_yaml(openstack, tmp_path):
    clouds = tmp_path / 'clouds.yaml'
    clouds.write_text(json.dumps({'clouds': {'edge': {
        'auth_type': 'v3password', 'region_name': 'RegionTwo',
        'auth': {'auth_url': AUTH_URL, 'username': 'demo', 'password': 'secret', 'project_name': 'demo',
                 'user_domain_id': 'default', 'project_domain_id': 'default'}}}}))
    message = "base package URL refused: host 'packages.example' is not in the allowed hosts for cloudlet URLs"
    rc, out, err, seen = openstack(
        ['--os-cloud', 'edge', 'cloudlet', 'base', 'import', 'https://packages.example/x.zip'],
        answers=[_keystone(), {'method': 'POST', 'url': NOVA + '/os-cloudlet/bases', 'status': 400,
                               'json': {'badRequest': {'code': 400, 'message': message}}}],
        env={'OS_CLIENT_CONFIG_FILE': str(clouds)})
    assert rc == 1
    assert out == ''
    assert err == message + ' (HTTP 400)\n'
