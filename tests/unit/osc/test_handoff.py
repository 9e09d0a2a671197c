"""openstack cloudlet server handoff: the request for each option, the application credential, --wait.

The source cloud is the usual mocked Keystone + nova (conftest); the
destination is a clouds.yaml cloud (`edge-b`) with its own mocked Keystone
(catalog: identity and compute in RegionB) and nova, in the same
requests-mock. The last tests run OSC's real `openstack` shell.
"""

import datetime
import json
import logging

from keystoneauth1 import fixture as ksa_fixture
from osc_lib import exceptions
import pytest

from cloudlet_osc.v1 import handoff
from tests.unit.osc.conftest import AUTH_URL
from tests.unit.osc.conftest import bodies
from tests.unit.osc.conftest import NOVA
from tests.unit.osc.conftest import run
from tests.unit.osc.conftest import server
from tests.unit.osc.conftest import SERVER_ID
from tests.unit.osc.test_plugin import _keystone

DEST_KEYSTONE = 'http://keystone-b.test:5000/v3'
DEST_IDENTITY = 'http://keystone-b.test:5000/identity/v3'
DEST_NOVA = 'http://nova-b.test:8774/v2.1'
DEST_USER = 'user-b-id'
DEST_PROJECT = 'project-b-id'
ROLES = ['role-member-id', 'role-reader-id']
APP_ID = 'app-cred-id-0001'
APP_SECRET = 'the-secret-of-the-application-credential'
DEST_TOKEN = 'dest-token-of-edge-b'
HANDOFF_ID = '7c0e9a3b-1f2d-4e5c-8a9b-0c1d2e3f4a5b'
REQUEST_ID = 'req-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'
DEST_SERVER_ID = 'd1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6'
ACTION_URL = NOVA + '/servers/%s/action' % SERVER_ID
APP_CREDS_URL = DEST_IDENTITY + '/users/%s/application_credentials' % DEST_USER
INSTANCE_ACTION_URL = NOVA + '/servers/%s/os-instance-actions/%s' % (SERVER_ID, REQUEST_ID)

CLOUDS = {'clouds': {
    'edge-b': {'auth_type': 'v3password', 'region_name': 'RegionB',
               'auth': {'auth_url': DEST_KEYSTONE, 'username': 'demo-b', 'password': 'password-b',
                        'project_name': 'demo-b', 'user_domain_id': 'default',
                        'project_domain_id': 'default'}},
    'edge-a': {'auth_type': 'v3password', 'region_name': 'RegionTwo',
               'auth': {'auth_url': AUTH_URL, 'username': 'demo', 'password': 'secret',
                        'project_name': 'demo', 'user_domain_id': 'default', 'project_domain_id': 'default'}},
    'no-url': {'auth_type': 'admin_token', 'auth': {'token': 'x', 'endpoint': 'http://nova-b.test'}},
}}


def _dest_token():
    token = ksa_fixture.V3Token(user_id=DEST_USER, project_id=DEST_PROJECT, project_name='demo-b')
    for role_id in ROLES:
        token.add_role(id=role_id, name=role_id)
    identity = token.add_service('identity', name='keystone')
    identity.add_standard_endpoints(public=DEST_IDENTITY, region='RegionB')
    compute = token.add_service('compute', name='nova')
    compute.add_standard_endpoints(public=DEST_NOVA, region='RegionB')
    return token


def _source_server(**fields):
    return server(status='ACTIVE', id=SERVER_ID, name='app', **fields)


def _dest_server(status, **fields):
    body = {'id': DEST_SERVER_ID, 'name': 'app', 'status': status,
            'metadata': {'cloudlet_handoff_id': HANDOFF_ID, 'cloudlet_overlay_id': 'residue'}}
    body.update(fields)
    return body


@pytest.fixture
def dest_cloud(nova, tmp_path, monkeypatch):
    """clouds.yaml with edge-b; edge-b's Keystone and nova answer in the same requests-mock."""
    clouds = tmp_path / 'clouds.yaml'
    clouds.write_text(json.dumps(CLOUDS))
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', str(clouds))
    nova.post(DEST_KEYSTONE + '/auth/tokens', status_code=201, json=_dest_token(),
              headers={'X-Subject-Token': DEST_TOKEN})
    nova.post(APP_CREDS_URL, status_code=201, json={'application_credential': {
        'id': APP_ID, 'secret': APP_SECRET, 'name': 'x', 'roles': [], 'unrestricted': False}})
    nova.delete(APP_CREDS_URL + '/' + APP_ID, status_code=204)
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': _source_server()})
    nova.get(NOVA + '/servers/detail', json={'servers': [_source_server()]})
    nova.post(ACTION_URL, status_code=202, json={'handoff_id': HANDOFF_ID},
              headers={'x-openstack-request-id': REQUEST_ID})
    return str(clouds)


@pytest.fixture
def fake_time(monkeypatch):
    """--wait runs on a fake clock that each sleep advances; returns the list of sleeps."""
    from cloudlet_osc import wait
    now, sleeps = [0.0], []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds
    monkeypatch.setattr(wait, 'clock', lambda: now[0])
    monkeypatch.setattr(wait, 'sleep', sleep)
    return sleeps


def _handoff_request(nova):
    [request] = bodies(nova, 'POST', ACTION_URL)
    return request['cloudlet-handoff']


def _requests(nova, method, url):
    return [r for r in nova.request_history if r.method == method and r.url.split('?')[0] == url]


def test_default_request_with_a_fresh_application_credential(app, nova, dest_cloud, caplog):
    caplog.set_level(logging.DEBUG)
    shown = run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '-f', 'json')
    assert shown == {'handoff_id': HANDOFF_ID, 'source_server_id': SERVER_ID, 'server_id': None,
                     'name': 'app', 'status': 'started', 'seconds': None}
    assert _handoff_request(nova) == {
        'destination': {'auth_url': DEST_KEYSTONE, 'region_name': 'RegionB'},
        'credential': {'application_credential': {'id': APP_ID, 'secret': APP_SECRET}},
        'name': 'app'}
    [created] = bodies(nova, 'POST', APP_CREDS_URL)
    credential = created['application_credential']
    assert credential['name'].startswith('cloudlet-handoff-')
    assert credential['roles'] == [{'id': role_id} for role_id in ROLES]
    assert credential['unrestricted'] is False
    expires = datetime.datetime.strptime(credential['expires_at'], '%Y-%m-%dT%H:%M:%SZ').replace(
        tzinfo=datetime.timezone.utc)
    lifetime = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert handoff.HANDOFF_TIMEOUT + handoff.CREDENTIAL_MARGIN - 60 < lifetime <= 4200
    [creation] = _requests(nova, 'POST', APP_CREDS_URL)
    assert creation.headers['X-Auth-Token'] == DEST_TOKEN
    # Not deleted without --wait: it expires by itself, and the user is told when.
    assert _requests(nova, 'DELETE', APP_CREDS_URL + '/' + APP_ID) == []
    assert 'Application credential %s on edge-b expires by itself at ' % credential['name'] in \
        app.stderr.getvalue()
    # The secret is never printed or logged (keystoneauth logs request and response bodies at DEBUG;
    # test_openstack_shell_runs_the_handoff_without_showing_the_secret checks that with --debug).
    for text in (app.stdout.getvalue(), app.stderr.getvalue(), caplog.text):
        assert APP_SECRET not in text


@pytest.mark.parametrize('argv, expected', [
    (['--dest-auth-url', 'https://keystone-b.example:5000/v3'],
     {'destination': {'auth_url': 'https://keystone-b.example:5000/v3', 'region_name': 'RegionB'}}),
    (['--dest-compute-endpoint', 'https://nova-b.example/v2.1', '--dest-interface', 'internal'],
     {'destination': {'compute_endpoint': 'https://nova-b.example/v2.1', 'region_name': 'RegionB',
                      'interface': 'internal'}}),
    (['--dest-known-cloud', 'edge-b', '--dest-region', 'RegionB'],
     {'destination': {'cloud': 'edge-b', 'region_name': 'RegionB'}}),
    (['--name', 'app-at-b', '--codec', 'xz'], {'name': 'app-at-b', 'options': {'codec': 'xz'}}),
    (['--codec', 'auto'], {'options': {'codec': 'auto'}}),
])
def test_request_for_each_option(app, nova, dest_cloud, argv, expected):
    run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', *argv, '-f', 'json')
    request = _handoff_request(nova)
    for key, value in expected.items():
        assert request[key] == value


def test_flavor_is_resolved_and_checked_on_the_destination(app, nova, dest_cloud):
    flavors = [{'id': 'f-64', 'name': 'c1.base', 'ram': 64, 'vcpus': 2, 'disk': 1},
               {'id': 'f-2g', 'name': 'm1.small', 'ram': 2048, 'vcpus': 1, 'disk': 20}]
    nova.get(DEST_NOVA + '/flavors/c1.base', status_code=404, json={'itemNotFound': {'message': 'no'}})
    nova.get(DEST_NOVA + '/flavors/detail', json={'flavors': flavors})
    run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--flavor', 'c1.base', '-f', 'json')
    assert _handoff_request(nova)['destination']['flavor'] == 'f-64'
    nova.get(DEST_NOVA + '/flavors/f-2g', json={'flavor': flavors[1]})
    expected = '^flavor m1.small of the destination has 2048 MB / 1 vCPUs; server app has 64 MB / 2 vCPUs$'
    with pytest.raises(exceptions.CommandError, match=expected):
        run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--flavor', 'f-2g')
    assert len(bodies(nova, 'POST', ACTION_URL)) == 1 and len(bodies(nova, 'POST', APP_CREDS_URL)) == 1


def test_token_credential(app, nova, dest_cloud, caplog):
    caplog.set_level(logging.DEBUG)
    run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--credential', 'token', '-f', 'json')
    assert _handoff_request(nova)['credential'] == {'token': DEST_TOKEN}
    assert bodies(nova, 'POST', APP_CREDS_URL) == []
    assert 'Application credential' not in app.stderr.getvalue()
    assert DEST_TOKEN not in app.stdout.getvalue() + app.stderr.getvalue() + caplog.text


def test_source_refusal_deletes_the_application_credential(app, nova, dest_cloud):
    message = "Cannot 'cloudlet-handoff' instance %s while it is in task_state migrating" % SERVER_ID
    nova.post(ACTION_URL, status_code=409, json={'conflictingRequest': {'code': 409, 'message': message}})
    with pytest.raises(exceptions.CommandError, match='^%s \\(HTTP 409\\)$' % message):
        run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b')
    assert len(_requests(nova, 'DELETE', APP_CREDS_URL + '/' + APP_ID)) == 1


def test_unanswered_request_keeps_the_application_credential(app, nova, dest_cloud):
    from keystoneauth1 import exceptions as ksa_exceptions
    nova.post(ACTION_URL, exc=ksa_exceptions.ConnectTimeout('Request to nova timed out'))
    with pytest.raises(exceptions.CommandError, match='timed out'):
        run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b')
    # nova may have taken the request all the same: the credential is left to expire.
    assert _requests(nova, 'DELETE', APP_CREDS_URL + '/' + APP_ID) == []
    assert 'expires by itself at' in app.stderr.getvalue()


def test_application_credential_refused(app, nova, dest_cloud):
    nova.post(APP_CREDS_URL, status_code=403, json={'error': {
        'code': 403, 'message': 'You are not authorized to perform the requested action.'}})
    with pytest.raises(exceptions.CommandError) as caught:
        run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b')
    assert str(caught.value) == (
        'destination cloud edge-b refused to create an application credential: You are not authorized to '
        'perform the requested action. (HTTP 403) (a clouds.yaml entry that is itself an application '
        'credential cannot create one: use --credential token)')
    assert bodies(nova, 'POST', ACTION_URL) == []


def _action(*events):
    return {'instanceAction': {'action': 'cloudlet-handoff', 'request_id': REQUEST_ID,
                               'instance_uuid': SERVER_ID, 'message': None,
                               'events': [dict({'event': 'cloudlet_handoff', 'result': None}, **e)
                                          for e in events]}}


def test_wait_until_the_destination_is_active_and_the_source_gone(app, nova, dest_cloud, fake_time):
    nova.get(INSTANCE_ACTION_URL, [{'json': _action({})}] * 4 + [{'json': _action({'result': 'Success'})}])
    nova.get(DEST_NOVA + '/servers/detail', [
        {'json': {'servers': []}},
        {'json': {'servers': [_dest_server('BUILD', metadata={'cloudlet_handoff_id': 'another'}),
                              _dest_server('BUILD')]}},
        {'json': {'servers': [_dest_server('ACTIVE')]}}])
    migrating = {'json': {'server': _source_server(**{'OS-EXT-STS:task_state': 'migrating'})}}
    nova.get(NOVA + '/servers/' + SERVER_ID, [migrating] * 3 + [
        {'status_code': 404, 'json': {'itemNotFound': {'message': 'gone'}}}])
    app.stderr.tty = True
    shown = run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--wait', '-f', 'json')
    assert shown == {'handoff_id': HANDOFF_ID, 'source_server_id': SERVER_ID, 'server_id': DEST_SERVER_ID,
                     'name': 'app', 'status': 'ACTIVE', 'seconds': 8}
    # polls: nothing, BUILD, ACTIVE (source migrating), ACTIVE + source gone, then the event's Success
    assert fake_time == [2.0] * 4
    assert len(_requests(nova, 'DELETE', APP_CREDS_URL + '/' + APP_ID)) == 1
    listing = _requests(nova, 'GET', DEST_NOVA + '/servers/detail')[0]
    assert 'changes-since' in listing.qs
    stderr = app.stderr.getvalue()
    assert '\rhandoff 7c0e9a3b: source ACTIVE (migrating), destination not yet, 0 s' in stderr
    assert 'destination BUILD, 2 s' in stderr and 'source deleted, destination ACTIVE, 6 s' in stderr
    assert 'expires by itself' not in stderr


def test_wait_without_the_event_ends_after_the_grace(app, nova, dest_cloud, fake_time):
    nova.get(INSTANCE_ACTION_URL, status_code=404, json={'itemNotFound': {'message': 'gone'}})
    nova.get(DEST_NOVA + '/servers/detail', json={'servers': [_dest_server('ACTIVE')]})
    nova.get(NOVA + '/servers/' + SERVER_ID, status_code=404, json={'itemNotFound': {'message': 'gone'}})
    shown = run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--wait', '-f', 'json')
    assert (shown['server_id'], shown['status'], shown['seconds']) == (DEST_SERVER_ID, 'ACTIVE',
                                                                      handoff.SETTLE_GRACE)


def test_wait_ends_on_the_success_event(app, nova, dest_cloud, fake_time):
    nova.get(INSTANCE_ACTION_URL, json=_action({'result': 'Success'}))
    nova.get(DEST_NOVA + '/servers/detail', json={'servers': [_dest_server('ACTIVE', name='app-b')]})
    shown = run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--wait', '-f', 'json')
    assert (shown['server_id'], shown['name'], shown['status']) == (DEST_SERVER_ID, 'app-b', 'ACTIVE')
    assert fake_time == []


def test_wait_reports_the_failed_event(app, nova, dest_cloud, fake_time):
    details = 'destination https://keystone-b.test:5000/v3 has no active base disk image of base abc'
    nova.get(INSTANCE_ACTION_URL, [{'json': _action({})},
                                   {'json': _action({'result': 'Error', 'details': details})}])
    nova.get(DEST_NOVA + '/servers/detail', json={'servers': []})
    with pytest.raises(exceptions.CommandError) as caught:
        run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--wait')
    assert str(caught.value) == 'handoff %s of server %s failed: %s' % (HANDOFF_ID, SERVER_ID, details)
    assert len(_requests(nova, 'DELETE', APP_CREDS_URL + '/' + APP_ID)) == 1


def test_wait_failure_without_details_names_the_destination_fault(app, nova, dest_cloud, fake_time):
    nova.get(INSTANCE_ACTION_URL, json=_action({'result': 'Error'}))
    nova.get(DEST_NOVA + '/servers/detail', json={'servers': [_dest_server('ERROR', fault={
        'code': 500, 'message': 'overlay is truncated'})]})
    with pytest.raises(exceptions.CommandError, match='failed: its cloudlet_handoff event ended in Error; '
                                                      'destination server %s: overlay is truncated$'
                                                      % DEST_SERVER_ID):
        run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--wait')


def test_wait_timeout_keeps_the_credential(app, nova, dest_cloud, fake_time):
    nova.get(INSTANCE_ACTION_URL, json=_action({}))
    nova.get(DEST_NOVA + '/servers/detail', status_code=503, text='unavailable')
    with pytest.raises(exceptions.CommandError) as caught:
        run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--wait', '--timeout', '10')
    assert str(caught.value).startswith('gave up waiting for handoff %s after 10 s: it may still be running '
                                        '(source server ACTIVE, destination server not found); last poll '
                                        'failed: unavailable' % HANDOFF_ID)
    assert _requests(nova, 'DELETE', APP_CREDS_URL + '/' + APP_ID) == []
    assert 'expires by itself at' in app.stderr.getvalue()


def test_wait_finds_the_action_without_a_request_id(app, nova, dest_cloud, fake_time):
    nova.post(ACTION_URL, status_code=202, json={'handoff_id': HANDOFF_ID})
    nova.get(NOVA + '/servers/%s/os-instance-actions' % SERVER_ID, json={'instanceActions': [
        {'action': 'cloudlet-handoff', 'request_id': 'req-old', 'start_time': '2026-01-01T00:00:00.000000'},
        {'action': 'cloudlet-handoff', 'request_id': REQUEST_ID, 'start_time': '2026-02-01T00:00:00.000000'},
        {'action': 'create', 'request_id': 'req-create', 'start_time': '2026-03-01T00:00:00.000000'}]})
    nova.get(INSTANCE_ACTION_URL, json=_action({'result': 'Success'}))
    nova.get(DEST_NOVA + '/servers/detail', json={'servers': [_dest_server('ACTIVE')]})
    shown = run(app, handoff.HandoffServer, 'app', '--dest-cloud', 'edge-b', '--wait', '-f', 'json')
    assert shown['server_id'] == DEST_SERVER_ID


@pytest.mark.parametrize('argv, message', [
    (['--dest-cloud', 'nowhere'], '^--dest-cloud nowhere: '),
    (['--dest-cloud', 'edge-b', '--dest-auth-url', 'ftp://keystone-b/v3'],
     "^--dest-auth-url takes an http\\(s\\) URL, not 'ftp://keystone-b/v3'$"),
    (['--dest-cloud', 'edge-b', '--dest-compute-endpoint', 'nova-b:8774'], '^--dest-compute-endpoint takes'),
    (['--dest-cloud', 'edge-b', '--name', 'x' * 256], '^--name takes 1 to 255 characters$'),
    (['--dest-cloud', 'no-url'], '^--dest-cloud no-url has no auth_url: give --dest-auth-url'),
])
def test_bad_arguments(app, nova, dest_cloud, argv, message):
    with pytest.raises(exceptions.CommandError, match=message):
        run(app, handoff.HandoffServer, 'app', *argv)
    assert bodies(nova, 'POST', ACTION_URL) == [] and bodies(nova, 'POST', APP_CREDS_URL) == []


@pytest.mark.parametrize('argv', [
    [],                                                              # --dest-cloud is required
    ['--dest-cloud', 'edge-b', '--dest-auth-url', 'http://a/v3', '--dest-known-cloud', 'b'],
    ['--dest-cloud', 'edge-b', '--codec', 'gzip'],
    ['--dest-cloud', 'edge-b', '--dest-interface', 'admin'],
    ['--dest-cloud', 'edge-b', '--credential', 'password'],
    ['--dest-cloud', 'edge-b', '--wait', '--timeout', '0'],
])
def test_arguments_argparse_refuses(app, argv, capsys):
    command = handoff.HandoffServer(app, None)
    with pytest.raises(SystemExit) as caught:
        command.get_parser('openstack cloudlet server handoff').parse_args(['app'] + argv)
    assert caught.value.code == 2


# ---------------------------------------------------------------- the real `openstack` shell


def _answers(**overrides):
    answers = {
        'source-keystone': _keystone(),
        'dest-keystone': {'method': 'POST', 'url': DEST_KEYSTONE + '/auth/tokens', 'status': 201,
                          'json': _dest_token(), 'headers': {'X-Subject-Token': DEST_TOKEN}},
        'app-cred': {'method': 'POST', 'url': APP_CREDS_URL, 'status': 201,
                     'json': {'application_credential': {'id': APP_ID, 'secret': APP_SECRET}}},
        'app-cred-delete': {'method': 'DELETE', 'url': APP_CREDS_URL + '/' + APP_ID, 'status': 204},
        'server': {'method': 'GET', 'url': NOVA + '/servers/' + SERVER_ID,
                   'json': {'server': _source_server()}},
        'action': {'method': 'POST', 'url': ACTION_URL, 'status': 202, 'json': {'handoff_id': HANDOFF_ID},
                   'headers': {'x-openstack-request-id': REQUEST_ID}},
    }
    answers.update(overrides)
    return list(answers.values())


@pytest.mark.parametrize('kind', ['application-credential', 'token'])
def test_openstack_shell_runs_the_handoff_without_showing_the_secret(openstack, tmp_path, kind):
    clouds = tmp_path / 'clouds.yaml'
    clouds.write_text(json.dumps(CLOUDS))
    rc, out, err, seen = openstack(
        ['--debug', '--os-cloud', 'edge-a', 'cloudlet', 'server', 'handoff', SERVER_ID,
         '--dest-cloud', 'edge-b', '--codec', 'zstd', '--credential', kind, '-f', 'json'],
        answers=_answers(), env={'OS_CLIENT_CONFIG_FILE': str(clouds)})
    assert rc == 0, err
    assert json.loads(out)['handoff_id'] == HANDOFF_ID
    [action] = [r for r in seen if r['url'] == ACTION_URL]
    assert action['json']['cloudlet-handoff']['credential'] == (
        {'application_credential': {'id': APP_ID, 'secret': APP_SECRET}} if kind == 'application-credential'
        else {'token': DEST_TOKEN})
    assert action['json']['cloudlet-handoff']['options'] == {'codec': 'zstd'}
    assert action['headers']['X-Auth-Token'] == 'fake-token'             # the source's token
    creations = [r for r in seen if r['url'] == APP_CREDS_URL]
    assert [r['headers']['X-Auth-Token'] for r in creations] == \
        ([DEST_TOKEN] if kind == 'application-credential' else [])
    assert 'REQ: curl' in err                                             # --debug logs requests...
    for secret in (APP_SECRET, 'password-b', DEST_TOKEN):                 # ...but never a secret
        assert secret not in out and secret not in err


def test_openstack_shell_wait_success(openstack, tmp_path):
    clouds = tmp_path / 'clouds.yaml'
    clouds.write_text(json.dumps(CLOUDS))
    rc, out, err, seen = openstack(
        ['--os-cloud', 'edge-a', 'cloudlet', 'server', 'handoff', SERVER_ID, '--dest-cloud', 'edge-b',
         '--wait', '-f', 'json'],
        answers=_answers(**{
            'instance-action': {'method': 'GET', 'url': INSTANCE_ACTION_URL,
                                'json': _action({'result': 'Success'})},
            'dest-servers': {'method': 'GET', 'url': DEST_NOVA + '/servers/detail',
                             'json': {'servers': [_dest_server('ACTIVE')]}}}),
        env={'OS_CLIENT_CONFIG_FILE': str(clouds)})
    assert rc == 0, err
    shown = json.loads(out)
    assert (shown['server_id'], shown['status']) == (DEST_SERVER_ID, 'ACTIVE')
    assert [r['method'] for r in seen if r['url'] == APP_CREDS_URL + '/' + APP_ID] == ['DELETE']
