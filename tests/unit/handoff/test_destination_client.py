"""cloudlet_nova.handoff.destination_client: the destination cloud as the source compute host talks to it.

Keystone, Glance, nova, Neutron and Barbican are requests-mock answers
behind the real keystoneauth session (and openstacksdk's proxies on it), so
the tests see the very requests DestinationClient sends.
The streaming upload (the residue, to nova's cloudlet-residue) runs against
a real HTTP server on 127.0.0.1 that reads the chunked PUT (fast, slow, or
not at all).
"""

import base64
import hashlib
import http.server
import json
import socket
import ssl
import threading
import time
import urllib.parse

from keystoneauth1 import fixture as ksa_fixture
import pytest
import requests
import requests_mock

from cloudlet_engine import outbound
from cloudlet_glance import properties as props
from cloudlet_nova.handoff import destination_client as dest_mod
from cloudlet_nova.handoff.destination_client import DestinationClient
from cloudlet_nova.handoff.destination_client import HandoffDestinationError
from cloudlet_nova.handoff.destination_client import Upload
from cloudlet_nova.handoff import remote
from cloudlet_nova.handoff import upload as upload_mod
from tests.fixtures import http_server

KEYSTONE = 'https://keystone-b.test:5000/v3'
GLANCE = 'https://glance-b.test:9292'
NOVA = 'https://nova-b.test:8774/v2.1'
NEUTRON = 'https://neutron-b.test:9696'
PROJECT = 'b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5'
TOKEN = 'gAAAAABsecret-token-of-the-destination'
APP_ID = 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6'
APP_SECRET = 'very-secret-application-credential-secret'
BASE_ID = 'ab' * 32
HANDOFF_ID = '3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a'
SERVER_ID = '9e8d7c6b-5a49-4837-a625-1403f2e1d0c9'
DISK_ID, MEMORY_ID, DISKHASH_ID, MEMHASH_ID = ('11111111-0000-4000-8000-00000000000%d' % i for i in range(4))
RESIDUE_PATH = '/v2.1/servers/%s/cloudlet-residue' % SERVER_ID


def _token():
    token = ksa_fixture.V3Token(project_id=PROJECT, project_name='demo', user_id='user-b')
    token.add_role(name='member')
    image = token.add_service('image', name='glance')
    image.add_standard_endpoints(public='https://glance-other.test:9292', region='RegionOne')
    image.add_standard_endpoints(public=GLANCE + '/', internal='http://glance-b.internal:9292/v2',
                                 region='RegionB')
    compute = token.add_service('compute', name='nova')
    compute.add_standard_endpoints(public='https://nova-other.test/v2.1', region='RegionOne')
    compute.add_standard_endpoints(public=NOVA, internal='http://nova-b.internal/v2.1', region='RegionB')
    network = token.add_service('network', name='neutron')
    network.add_standard_endpoints(public=NEUTRON + '/', region='RegionB')
    return token


def _version_documents(mock, *urls):
    """What the services answer at their versioned endpoints (openstacksdk reads them once)."""
    for url in urls:
        version = {'id': url.rsplit('/', 1)[-1], 'status': 'CURRENT', 'links': [{'rel': 'self', 'href': url + '/'}]}
        if url == NOVA:
            version.update(version='2.96', min_version='2.1')
        for path in (url, url + '/'):
            mock.get(path, json={'version': version})


@pytest.fixture
def keystone():
    """requests-mock with the destination's Keystone: app credentials and token validation;
    and the version documents of its nova, Glance and Neutron.
    """
    with requests_mock.Mocker() as mock:
        mock.post(KEYSTONE + '/auth/tokens', status_code=201, json=_token(),
                  headers={'X-Subject-Token': 'token-from-app-cred'})
        mock.get(KEYSTONE + '/auth/tokens', json=_token(), headers={'X-Subject-Token': TOKEN})
        _version_documents(mock, NOVA, GLANCE + '/v2', NEUTRON + '/v2.0')
        yield mock


APP_CREDENTIAL = {'application_credential': {'id': APP_ID, 'secret': APP_SECRET}}
REGION_B = {'auth_url': KEYSTONE, 'region_name': 'RegionB'}


@pytest.fixture
def dest(keystone):
    """A connected DestinationClient (application credential, RegionB, public)."""
    return DestinationClient(REGION_B, APP_CREDENTIAL).connect()


@pytest.fixture
def no_waiting(monkeypatch):
    """wait_active's clock runs on the sleeps: each sleep advances it."""
    now = [1000.0]
    monkeypatch.setattr(dest_mod, 'clock', lambda: now[0])
    monkeypatch.setattr(dest_mod, 'sleep', lambda seconds: now.__setitem__(0, now[0] + max(seconds, 0.01)))
    return now


def _requests(mock, method, url):
    return [r for r in mock.request_history if r.method == method and r.url.split('?')[0] == url]


# ---------------------------------------------------------------- the destination and the credential


def test_auth_url_with_an_application_credential(keystone):
    dest = DestinationClient({'auth_url': 'https://keystone-b.test:5000/', 'region_name': 'RegionB'},
                       APP_CREDENTIAL)
    assert dest.auth_url == KEYSTONE            # /v3 appended, known before connect()
    dest.connect()
    [auth] = _requests(keystone, 'POST', KEYSTONE + '/auth/tokens')
    assert auth.json() == {'auth': {'identity': {
        'methods': ['application_credential'],
        'application_credential': {'id': APP_ID, 'secret': APP_SECRET}}}}
    assert (dest.project_id, dest.image_url, dest.compute_url) == (PROJECT, GLANCE, NOVA)
    keystone.get(NOVA + '/servers/' + SERVER_ID, json={'server': {'id': SERVER_ID, 'status': 'BUILD'}})
    dest.get_server(SERVER_ID)
    request = keystone.last_request
    assert request.headers['X-Auth-Token'] == 'token-from-app-cred'
    assert request.headers['OpenStack-API-Version'] == 'compute 2.37'


def test_internal_interface_and_a_versioned_glance_endpoint(keystone):
    dest = DestinationClient(dict(REGION_B, interface='internal'), APP_CREDENTIAL).connect()
    assert (dest.image_url, dest.compute_url) == ('http://glance-b.internal:9292',
                                                  'http://nova-b.internal/v2.1')


def test_token_is_validated_and_used_as_is(keystone):
    dest = DestinationClient(REGION_B, {'token': TOKEN}).connect()
    [validation] = _requests(keystone, 'GET', KEYSTONE + '/auth/tokens')
    assert validation.headers['X-Auth-Token'] == TOKEN and validation.headers['X-Subject-Token'] == TOKEN
    assert _requests(keystone, 'POST', KEYSTONE + '/auth/tokens') == []
    assert dest.project_id == PROJECT
    keystone.get(GLANCE + '/v2/images', json={'images': []})
    with pytest.raises(HandoffDestinationError):
        dest.find_base_image(BASE_ID)
    assert keystone.last_request.headers['X-Auth-Token'] == TOKEN


def test_compute_endpoint_discovers_keystone_from_www_authenticate(keystone):
    # nova's unversioned answer has no header; the authenticated path's 401 names Keystone.
    keystone.get(NOVA, json={'version': {'id': 'v2.1'}})
    keystone.get(NOVA + '/servers', status_code=401, json={'error': {'message': 'authenticate'}},
                 headers={'WWW-Authenticate': 'Keystone uri="https://keystone-b.test:5000"'})
    dest = DestinationClient({'compute_endpoint': NOVA + '/', 'region_name': 'RegionB'}, APP_CREDENTIAL)
    assert dest.auth_url is None
    dest.connect()
    assert dest.auth_url == KEYSTONE
    discovery = [r for r in keystone.request_history if r.url.startswith(NOVA)]
    assert [r.url for r in discovery] == [NOVA, NOVA + '/servers']
    assert all('X-Auth-Token' not in r.headers for r in discovery)


def test_compute_endpoint_without_a_keystone_header_is_refused(keystone):
    keystone.get(NOVA, status_code=200, json={})
    keystone.get(NOVA + '/servers', status_code=404, text='not found')
    with pytest.raises(HandoffDestinationError, match='does not name its Keystone') as caught:
        DestinationClient({'compute_endpoint': NOVA}, APP_CREDENTIAL).connect()
    assert caught.value.refused


def test_compute_endpoint_unreachable_is_not_refused(keystone):
    keystone.get(NOVA, exc=requests.exceptions.ConnectTimeout('timed out'))
    with pytest.raises(HandoffDestinationError, match='cannot reach it') as caught:
        DestinationClient({'compute_endpoint': NOVA}, APP_CREDENTIAL).connect()
    assert not caught.value.refused


def test_known_cloud(keystone):
    dest = DestinationClient({'cloud': 'edge-b', 'region_name': 'RegionB'}, APP_CREDENTIAL,
                       known_clouds={'edge-b': 'https://keystone-b.test:5000/v3', 'edge-c': 'http://c/v3'})
    assert dest.auth_url == KEYSTONE
    assert dest.connect().project_id == PROJECT


def test_unknown_cloud_is_refused():
    with pytest.raises(HandoffDestinationError, match="destination cloud 'edge-z' is not configured here "
                                                      r"\(known: edge-b\)") as caught:
        DestinationClient({'cloud': 'edge-z'}, APP_CREDENTIAL, known_clouds={'edge-b': KEYSTONE})
    assert caught.value.refused


@pytest.mark.parametrize('destination, credential, message', [
    ({}, APP_CREDENTIAL, 'exactly one of auth_url, compute_endpoint and cloud'),
    ({'auth_url': KEYSTONE, 'cloud': 'x'}, APP_CREDENTIAL, 'exactly one of auth_url'),
    ({'auth_url': 'file:///etc/passwd'}, APP_CREDENTIAL, 'is not an http'),
    ({'auth_url': KEYSTONE, 'interface': 'private'}, APP_CREDENTIAL, 'interface'),
    (REGION_B, {}, 'exactly one of token and application_credential'),
    (REGION_B, {'token': TOKEN, **APP_CREDENTIAL}, 'exactly one of token'),
    (REGION_B, {'application_credential': {'id': APP_ID}}, 'needs an id and a secret'),
])
def test_bad_destination_or_credential(destination, credential, message):
    with pytest.raises(HandoffDestinationError, match=message) as caught:
        DestinationClient(destination, credential)
    assert caught.value.refused
    assert TOKEN not in str(caught.value)


def test_refused_application_credential_never_shows_the_secret(keystone):
    keystone.post(KEYSTONE + '/auth/tokens', status_code=401, json={'error': {
        'code': 401, 'title': 'Unauthorized', 'message': 'Invalid application credential: %s' % APP_SECRET}})
    with pytest.raises(HandoffDestinationError) as caught:
        DestinationClient(REGION_B, APP_CREDENTIAL).connect()
    assert caught.value.refused
    assert str(caught.value) == 'destination %s refused the credential (HTTP 401)' % KEYSTONE
    assert APP_SECRET not in repr(caught.value) and caught.value.__cause__ is None


def test_keystone_failing_is_not_a_refusal(keystone):
    keystone.post(KEYSTONE + '/auth/tokens', status_code=503, text='Service Unavailable')
    with pytest.raises(HandoffDestinationError, match=r'Keystone failed .* \(HTTP 503\)') as caught:
        DestinationClient(REGION_B, APP_CREDENTIAL).connect()
    assert not caught.value.refused


def test_refused_token_never_shows_the_token(keystone):
    keystone.get(KEYSTONE + '/auth/tokens', status_code=404,
                 json={'error': {'code': 404, 'message': 'Could not find token: %s.' % TOKEN}})
    with pytest.raises(HandoffDestinationError) as caught:
        DestinationClient(REGION_B, {'token': TOKEN}).connect()
    assert caught.value.refused
    assert 'refused the token' in str(caught.value) and TOKEN not in str(caught.value)


def test_unreachable_keystone_is_not_refused(keystone):
    keystone.post(KEYSTONE + '/auth/tokens', exc=requests.exceptions.ConnectionError('Connection refused'))
    with pytest.raises(HandoffDestinationError, match='cannot reach Keystone') as caught:
        DestinationClient(REGION_B, APP_CREDENTIAL).connect()
    assert not caught.value.refused
    assert APP_SECRET not in str(caught.value)


def test_unscoped_token_is_refused(keystone):
    unscoped = ksa_fixture.V3Token(user_id='user-b')
    keystone.get(KEYSTONE + '/auth/tokens', json=unscoped, headers={'X-Subject-Token': TOKEN})
    with pytest.raises(HandoffDestinationError, match='not scoped to a project') as caught:
        DestinationClient(REGION_B, {'token': TOKEN}).connect()
    assert caught.value.refused


def test_no_endpoint_in_the_region_is_refused(keystone):
    with pytest.raises(HandoffDestinationError, match=r'no image \(Glance\) endpoint for interface public '
                                                      'in region RegionZ') as caught:
        DestinationClient(dict(REGION_B, region_name='RegionZ'), APP_CREDENTIAL).connect()
    assert caught.value.refused


def test_error_pickles_with_refused():
    import pickle
    error = pickle.loads(pickle.dumps(HandoffDestinationError('no', refused=True)))
    assert (str(error), error.refused) == ('no', True)


# ---------------------------------------------------------------- Glance: the base


def _image(image_id, kind, status='active', **fields):
    image = {'id': image_id, 'name': kind, 'status': status, 'visibility': 'private', 'os_hidden': False,
             'created_at': '2026-01-01T00:00:00Z', props.CLOUDLET_TYPE: kind, props.BASE_ID: BASE_ID}
    image.update(fields)
    return image


def _disk(image_id=DISK_ID, status='active', **fields):
    fields = dict({'min_disk': 2, props.BASE_MEMORY: MEMORY_ID,
                   props.BASE_DISK_HASH: DISKHASH_ID,
                   props.BASE_MEMORY_HASH: MEMHASH_ID}, **fields)
    return _image(image_id, props.BASE_DISK, status, **fields)


@pytest.fixture
def companions(keystone):
    for image_id, kind in ((MEMORY_ID, props.BASE_MEMORY), (DISKHASH_ID, props.BASE_DISK_HASH),
                           (MEMHASH_ID, props.BASE_MEMORY_HASH)):
        keystone.get(GLANCE + '/v2/images/' + image_id, json=_image(image_id, kind, os_hidden=True))


def test_find_base_image(dest, keystone, companions):
    keystone.get(GLANCE + '/v2/images', json={'images': [_disk()]})
    image = dest.find_base_image(BASE_ID)
    assert _disk().items() <= image.items()          # Glance's JSON: its names, properties at the top
    [listing] = _requests(keystone, 'GET', GLANCE + '/v2/images')
    assert listing.qs == {props.CLOUDLET_TYPE: [props.BASE_DISK], props.BASE_ID: [BASE_ID]}


def test_find_base_image_follows_pages_and_skips_incomplete_bases(dest, keystone, companions):
    other = '33333333-0000-4000-8000-000000000001'
    broken = _disk(other, created_at='2025-01-01T00:00:00Z')
    broken[props.BASE_MEMORY] = '44444444-0000-4000-8000-000000000001'
    keystone.get(GLANCE + '/v2/images/44444444-0000-4000-8000-000000000001', status_code=404, text='')
    keystone.get(GLANCE + '/v2/images', [
        {'json': {'images': [broken], 'next': '/v2/images?marker=%s&cloudlet_type=x' % other}},
        {'json': {'images': [_disk()]}}])
    assert dest.find_base_image(BASE_ID)['id'] == DISK_ID
    assert _requests(keystone, 'GET', GLANCE + '/v2/images')[1].qs['marker'] == [other]


def test_find_base_image_none(dest, keystone):
    keystone.get(GLANCE + '/v2/images', json={'images': []})
    with pytest.raises(HandoffDestinationError) as caught:
        dest.find_base_image(BASE_ID)
    assert caught.value.refused
    assert str(caught.value) == ('destination %s has no active base disk image of base %s visible to project '
                                 '%s: import the base there first' % (KEYSTONE, BASE_ID, PROJECT))


def test_find_base_image_not_active(dest, keystone, companions):
    keystone.get(GLANCE + '/v2/images', json={'images': [_disk(status='queued')]})
    with pytest.raises(HandoffDestinationError, match=r'\(image %s is queued\)' % DISK_ID) as caught:
        dest.find_base_image(BASE_ID)
    assert caught.value.refused


def test_find_base_image_with_a_companion_not_active(dest, keystone, companions):
    keystone.get(GLANCE + '/v2/images/' + MEMHASH_ID,
                 json=_image(MEMHASH_ID, props.BASE_MEMORY_HASH, status='saving'))
    keystone.get(GLANCE + '/v2/images', json={'images': [_disk()]})
    with pytest.raises(HandoffDestinationError, match='its cloudlet_base_memory_hash image %s is saving'
                                                      % MEMHASH_ID):
        dest.find_base_image(BASE_ID)


# ---------------------------------------------------------------- nova: flavor, server


def _flavor(flavor_id, ram, vcpus, disk, **fields):
    flavor = {'id': flavor_id, 'name': 'f-' + flavor_id, 'ram': ram, 'vcpus': vcpus, 'disk': disk,
              'OS-FLV-EXT-DATA:ephemeral': 0, 'swap': 0, 'OS-FLV-DISABLED:disabled': False}
    flavor.update(fields)
    return flavor


FLAVORS = [_flavor('big', 256, 1, 20), _flavor('zero', 256, 1, 0), _flavor('swap', 256, 1, 1, swap=512),
           _flavor('fit', 256, 1, 5), _flavor('other', 512, 1, 1),
           _flavor('off', 256, 1, 1, **{'OS-FLV-DISABLED:disabled': True})]


def test_pick_flavor_exact_smallest_disk(dest, keystone):
    keystone.get(NOVA + '/flavors/detail', json={'flavors': FLAVORS})
    flavor = dest.pick_flavor(256, 1)
    assert FLAVORS[3].items() <= flavor.items()      # nova's JSON of 'fit'
    assert dest.pick_flavor(256, 1, min_disk_gb=6)['id'] == 'big'
    # What nova lists without the parameter (the sdk would ask for private flavors too).
    assert _requests(keystone, 'GET', NOVA + '/flavors/detail')[0].qs == {'is_public': ['true']}


def test_flavor_listing_follows_pages_within_a_bound(dest, keystone, monkeypatch):
    monkeypatch.setattr(dest_mod, 'MAX_LIST_ITEMS', 3)
    keystone.get(NOVA + '/flavors/detail', [
        {'json': {'flavors': [_flavor('f%d' % i, 256, 1, 10 - i)],
                  'flavors_links': [{'rel': 'next', 'href': NOVA + '/flavors/detail?marker=f%d' % i}]}}
        for i in range(10)])
    assert dest.pick_flavor(256, 1)['id'] == 'f2'
    listings = _requests(keystone, 'GET', NOVA + '/flavors/detail')
    assert [r.qs.get('marker') for r in listings] == [None, ['f0'], ['f1']]


def test_pick_flavor_uses_the_base_images_min_disk(dest, keystone, companions):
    keystone.get(GLANCE + '/v2/images', json={'images': [_disk(min_disk=10)]})
    keystone.get(NOVA + '/flavors/detail', json={'flavors': FLAVORS})
    dest.find_base_image(BASE_ID)
    assert dest.pick_flavor(256, 1)['id'] == 'big'


def test_pick_flavor_none(dest, keystone):
    keystone.get(NOVA + '/flavors/detail', json={'flavors': FLAVORS})
    with pytest.raises(HandoffDestinationError, match='no flavor with 1024 MB RAM, 2 vCPUs') as caught:
        dest.pick_flavor(1024, 2)
    assert caught.value.refused


def test_pick_flavor_given_id(dest, keystone):
    keystone.get(NOVA + '/flavors/other', json={'flavor': FLAVORS[4]})
    with pytest.raises(HandoffDestinationError, match='destination flavor f-other has 512 MB / 1 vCPUs; the '
                                                      'server needs 256 MB / 1 vCPUs') as caught:
        dest.pick_flavor(256, 1, 'other')
    assert caught.value.refused
    keystone.get(NOVA + '/flavors/fit', json={'flavor': FLAVORS[3]})
    assert dest.pick_flavor(256, 1, 'fit')['id'] == 'fit'
    keystone.get(NOVA + '/flavors/gone', status_code=404, json={'itemNotFound': {'message': 'gone'}})
    with pytest.raises(HandoffDestinationError, match='has no flavor gone'):
        dest.pick_flavor(256, 1, 'gone')


def test_pick_flavor_from_the_destination_dict(keystone):
    dest = DestinationClient(dict(REGION_B, flavor='fit'), APP_CREDENTIAL).connect()
    keystone.get(NOVA + '/flavors/fit', json={'flavor': FLAVORS[3]})
    assert dest.pick_flavor(256, 1)['id'] == 'fit'


def test_create_server_body(dest, keystone):
    keystone.post(NOVA + '/servers', status_code=202, json={'server': {'id': SERVER_ID}})
    metadata = {props.HANDOFF_ID: HANDOFF_ID, props.META_LEASE_SECONDS: '120'}
    assert dest.create_server('app-b', DISK_ID, 'fit', metadata) == SERVER_ID
    request = keystone.last_request
    assert request.json() == {'server': {'name': 'app-b', 'imageRef': DISK_ID, 'flavorRef': 'fit',
                                         'networks': 'none', 'metadata': metadata}}
    assert request.headers['OpenStack-API-Version'] == 'compute 2.37'
    dest.create_server('app-b', DISK_ID, 'fit', metadata, networks='auto')
    assert keystone.last_request.json()['server']['networks'] == 'auto'


def test_create_server_refused_with_novas_message(dest, keystone):
    message = 'Quota exceeded for instances: Requested 1, but already used 10 of 10 instances'
    keystone.post(NOVA + '/servers', status_code=403, json={'forbidden': {'code': 403, 'message': message}})
    with pytest.raises(HandoffDestinationError) as caught:
        dest.create_server('app-b', DISK_ID, 'fit', {})
    assert caught.value.refused
    assert str(caught.value) == 'destination %s: creating the server: %s (HTTP 403)' % (KEYSTONE, message)
    keystone.post(NOVA + '/servers', status_code=503, text='Service Unavailable')
    with pytest.raises(HandoffDestinationError) as caught:
        dest.create_server('app-b', DISK_ID, 'fit', {})
    assert not caught.value.refused


def _server(status, **fields):
    return {'server': dict({'id': SERVER_ID, 'status': status}, **fields)}


def test_get_server_is_novas_json(dest, keystone):
    server = _server('BUILD', fault={'code': 500, 'message': 'x'}, **{'OS-EXT-STS:task_state': 'spawning',
                                                                      'os-new-extension:field': [1]})['server']
    keystone.get(NOVA + '/servers/' + SERVER_ID, json={'server': server})
    assert dest.get_server(SERVER_ID, timeout=4) == server
    assert keystone.last_request.timeout == 4
    keystone.get(NOVA + '/servers/' + SERVER_ID, status_code=404, json={'itemNotFound': {'message': 'x'}})
    assert dest.get_server(SERVER_ID) is None


def test_wait_active(dest, keystone, no_waiting):
    keystone.get(NOVA + '/servers/' + SERVER_ID, [
        {'json': _server('BUILD')}, {'exc': requests.exceptions.ConnectTimeout('wan hiccup')},
        {'json': _server('BUILD')}, {'json': _server('ACTIVE')}])
    assert dest.wait_active(SERVER_ID, timeout=60)['status'] == 'ACTIVE'
    assert len(_requests(keystone, 'GET', NOVA + '/servers/' + SERVER_ID)) == 4


def test_wait_active_error_with_fault(dest, keystone, no_waiting):
    fault = {'code': 500, 'message': 'Build of instance aborted: overlay was made for base abc'}
    keystone.get(NOVA + '/servers/' + SERVER_ID, [{'json': _server('BUILD')},
                                                 {'json': _server('ERROR', fault=fault)}])
    with pytest.raises(HandoffDestinationError) as caught:
        dest.wait_active(SERVER_ID, timeout=60)
    assert caught.value.refused
    assert str(caught.value) == 'destination %s: server %s is ERROR: %s' % (KEYSTONE, SERVER_ID,
                                                                            fault['message'])


def test_wait_active_timeout(dest, keystone, no_waiting):
    keystone.get(NOVA + '/servers/' + SERVER_ID, json=_server('BUILD'))
    start = no_waiting[0]
    with pytest.raises(HandoffDestinationError, match=r'is not ACTIVE after 5 s \(it is BUILD\)') as caught:
        dest.wait_active(SERVER_ID, timeout=5, poll=0.5)
    assert not caught.value.refused
    assert 5 <= no_waiting[0] - start < 5.6


def test_wait_active_gives_up_after_stall_timeout_without_an_answer(dest, keystone, no_waiting):
    """A link cut during the switch (the VM paused at the source): stall_timeout, not activate_timeout."""
    keystone.get(NOVA + '/servers/' + SERVER_ID, [{'json': _server('BUILD')}]
                 + [{'exc': requests.exceptions.ConnectTimeout('link down')}] * 1000)
    start = no_waiting[0]
    with pytest.raises(HandoffDestinationError) as caught:
        dest.wait_active(SERVER_ID, timeout=600)
    assert not caught.value.refused
    assert 'no answer for 60 s while waiting for server %s to be ACTIVE' % SERVER_ID in str(caught.value)
    assert 60 <= no_waiting[0] - start < 61


def test_wait_gone(dest, keystone, no_waiting):
    keystone.get(NOVA + '/servers/' + SERVER_ID, [
        {'json': _server('ACTIVE')}, {'exc': requests.exceptions.ConnectTimeout('wan hiccup')},
        {'json': _server('DELETED')}])
    assert dest.wait_gone(SERVER_ID, timeout=60) is True
    keystone.get(NOVA + '/servers/' + SERVER_ID, status_code=404, json={'itemNotFound': {'message': 'x'}})
    assert dest.wait_gone(SERVER_ID, timeout=60) is True


def test_wait_gone_fails_without_an_answer(dest, keystone, no_waiting):
    keystone.get(NOVA + '/servers/' + SERVER_ID, exc=requests.exceptions.ConnectTimeout('link down'))
    with pytest.raises(HandoffDestinationError, match='no answer for 60 s while waiting for server %s to be '
                                                      'deleted' % SERVER_ID):
        dest.wait_gone(SERVER_ID, timeout=300)


def test_wait_active_server_gone(dest, keystone, no_waiting):
    keystone.get(NOVA + '/servers/' + SERVER_ID, status_code=404, json={'itemNotFound': {'message': 'x'}})
    with pytest.raises(HandoffDestinationError, match='disappeared') as caught:
        dest.wait_active(SERVER_ID, timeout=5)
    assert caught.value.refused


# ---------------------------------------------------------------- nova: the server's residue inbox

RESIDUE_URL = NOVA + '/servers/%s/cloudlet-residue' % SERVER_ID


def _residue(state, received=0, reason=None):
    return {'residue': {'state': state, 'bytes_received': received, 'reason': reason}}


def test_residue_status(dest, keystone):
    keystone.get(RESIDUE_URL, json=_residue('receiving', 4096))
    assert dest.residue_status(SERVER_ID, HANDOFF_ID) == {'state': 'receiving', 'bytes_received': 4096,
                                                          'reason': None}
    [request] = _requests(keystone, 'GET', RESIDUE_URL)
    assert request.headers['X-Cloudlet-Handoff-Id'] == HANDOFF_ID
    assert request.headers['X-Auth-Token'] == 'token-from-app-cred'
    assert request.headers['OpenStack-API-Version'] == 'compute 2.37'
    assert request.timeout == 30
    dest.residue_status(SERVER_ID, HANDOFF_ID, timeout=4)
    assert keystone.last_request.timeout == 4


def test_residue_status_quotes_the_server_id(dest, keystone):
    keystone.get(NOVA + '/servers/a%2Fb/cloudlet-residue', json=_residue('ready'))
    assert dest.residue_status('a/b', HANDOFF_ID)['state'] == 'ready'


def test_residue_status_refused_with_novas_message(dest, keystone):
    message = 'server %s is not the destination of handoff %s' % (SERVER_ID, HANDOFF_ID)
    keystone.get(RESIDUE_URL, status_code=409, json={'conflictingRequest': {'code': 409, 'message': message}})
    with pytest.raises(HandoffDestinationError) as caught:
        dest.residue_status(SERVER_ID, HANDOFF_ID)
    assert caught.value.refused
    assert str(caught.value) == ('destination %s: asking server %s whether it is ready for the residue: %s '
                                 '(HTTP 409)' % (KEYSTONE, SERVER_ID, message))
    keystone.get(RESIDUE_URL, status_code=502, text='Bad Gateway')
    with pytest.raises(HandoffDestinationError) as caught:
        dest.residue_status(SERVER_ID, HANDOFF_ID)
    assert not caught.value.refused


def test_wait_ready(dest, keystone, no_waiting):
    keystone.get(RESIDUE_URL, [{'json': _residue('waiting')}, {'json': _residue('waiting')},
                               {'json': _residue('ready')}])
    start = no_waiting[0]
    assert dest.wait_ready(SERVER_ID, HANDOFF_ID, timeout=60) == {'state': 'ready', 'bytes_received': 0,
                                                                  'reason': None}
    polls = _requests(keystone, 'GET', RESIDUE_URL)
    assert len(polls) == 3
    assert all(r.headers['X-Cloudlet-Handoff-Id'] == HANDOFF_ID for r in polls)
    assert no_waiting[0] - start == pytest.approx(0.4)            # two polls of 0.2 s


@pytest.mark.parametrize('state', ['receiving', 'received'])
def test_wait_ready_takes_a_destination_already_receiving(dest, keystone, no_waiting, state):
    keystone.get(RESIDUE_URL, json=_residue(state, 10))
    assert dest.wait_ready(SERVER_ID, HANDOFF_ID, timeout=60)['state'] == state
    assert len(_requests(keystone, 'GET', RESIDUE_URL)) == 1


def test_wait_ready_failed_is_refused(dest, keystone, no_waiting):
    keystone.get(RESIDUE_URL, [{'json': _residue('waiting')},
                               {'json': _residue('failed', 0, 'no residue byte for 120 s')},
                               {'json': _residue('ready')}])
    with pytest.raises(HandoffDestinationError) as caught:
        dest.wait_ready(SERVER_ID, HANDOFF_ID, timeout=60)
    assert caught.value.refused
    assert str(caught.value) == ('destination %s: server %s gave the residue up: no residue byte for 120 s'
                                 % (KEYSTONE, SERVER_ID))
    assert len(_requests(keystone, 'GET', RESIDUE_URL)) == 2


def test_wait_ready_a_failed_build_is_refused_at_once(dest, keystone, no_waiting):
    message = 'server %s failed to build: No valid host was found.' % SERVER_ID
    keystone.get(RESIDUE_URL, status_code=409, json={'conflictingRequest': {'code': 409, 'message': message}})
    with pytest.raises(HandoffDestinationError, match='No valid host was found') as caught:
        dest.wait_ready(SERVER_ID, HANDOFF_ID, timeout=60)
    assert caught.value.refused
    assert len(_requests(keystone, 'GET', RESIDUE_URL)) == 1


def test_wait_ready_timeout(dest, keystone, no_waiting):
    keystone.get(RESIDUE_URL, json=_residue('waiting'))
    start = no_waiting[0]
    with pytest.raises(HandoffDestinationError) as caught:
        dest.wait_ready(SERVER_ID, HANDOFF_ID, timeout=5, poll=0.5)
    assert not caught.value.refused
    assert str(caught.value) == ('destination %s: server %s not ready for the residue after 5 s (its compute '
                                 'host is still preparing the base)' % (KEYSTONE, SERVER_ID))
    assert 5 <= no_waiting[0] - start < 5.6
    polls = _requests(keystone, 'GET', RESIDUE_URL)
    assert 10 <= len(polls) <= 12
    assert all(1.0 <= r.timeout <= 30 for r in polls)          # each poll bounded, never below 1 s


def test_wait_ready_retries_an_unreachable_destination(dest, keystone, no_waiting):
    keystone.get(RESIDUE_URL, [{'exc': requests.exceptions.ConnectTimeout('wan hiccup')},
                               {'status_code': 503, 'text': 'Service Unavailable'},
                               {'json': _residue('waiting')}, {'json': _residue('ready')}])
    assert dest.wait_ready(SERVER_ID, HANDOFF_ID, timeout=60)['state'] == 'ready'
    assert len(_requests(keystone, 'GET', RESIDUE_URL)) == 4


def test_wait_ready_timeout_names_the_last_problem(dest, keystone, no_waiting):
    keystone.get(RESIDUE_URL, exc=requests.exceptions.ConnectionError('Connection refused'))
    with pytest.raises(HandoffDestinationError) as caught:
        dest.wait_ready(SERVER_ID, HANDOFF_ID, timeout=2)
    assert not caught.value.refused
    assert 'not ready for the residue after 2 s' in str(caught.value)
    assert 'Connection refused' in str(caught.value)


def test_wait_ready_gives_up_after_stall_timeout_without_an_answer(dest, keystone, no_waiting):
    """A cut link fails the wait as a stalled upload does, long before ready_timeout."""
    keystone.get(RESIDUE_URL, [{'json': _residue('waiting')}]
                 + [{'exc': requests.exceptions.ConnectTimeout('link down')}] * 1000)
    start = no_waiting[0]
    with pytest.raises(HandoffDestinationError) as caught:
        dest.wait_ready(SERVER_ID, HANDOFF_ID, timeout=600)
    assert not caught.value.refused
    assert 'no answer for 60 s while waiting for server %s to be ready' % SERVER_ID in str(caught.value)
    assert 'timed out' in str(caught.value)       # the last problem, as keystoneauth names it
    assert 60 <= no_waiting[0] - start < 61


def test_delete_server_is_best_effort_and_says_whether_it_is_gone(dest, keystone):
    keystone.delete(NOVA + '/servers/' + SERVER_ID, status_code=204)
    assert dest.delete_server(SERVER_ID) is True
    keystone.delete(NOVA + '/servers/' + SERVER_ID, status_code=404)
    assert dest.delete_server(SERVER_ID) is True             # gone already
    keystone.delete(NOVA + '/servers/' + SERVER_ID, status_code=409,
                    json={'conflictingRequest': {'message': 'x'}})
    assert dest.delete_server(SERVER_ID) is False
    keystone.delete(NOVA + '/servers/' + SERVER_ID, exc=requests.exceptions.ReadTimeout('slow'))
    assert dest.delete_server(SERVER_ID) is False            # e.g. the link down: retried later
    assert len(_requests(keystone, 'DELETE', NOVA + '/servers/' + SERVER_ID)) == 4


def test_calls_before_connect_fail_clearly():
    dest = DestinationClient(REGION_B, APP_CREDENTIAL)
    with pytest.raises(HandoffDestinationError, match='connect'):
        dest.create_server('a', DISK_ID, 'fit', {})
    dest.delete_server(SERVER_ID)        # best effort, even now


def test_secrets_never_logged(keystone, caplog):
    caplog.set_level('DEBUG')
    keystone.get(NOVA + RESIDUE_PATH[len('/v2.1'):], json={'residue': _residue('ready')})
    dest = DestinationClient(REGION_B, APP_CREDENTIAL).connect()
    dest.residue_status(SERVER_ID, HANDOFF_ID)
    DestinationClient(REGION_B, {'token': TOKEN}).connect()
    assert APP_SECRET not in caplog.text and TOKEN not in caplog.text


# ---------------------------------------------------------------- the outbound policy


@pytest.fixture
def no_connection(monkeypatch):
    """Fails the test on any connect() of a socket: a refusal must come before one."""
    attempts = []

    def connect(sock, address):
        attempts.append(address)
        raise AssertionError('connection to %s attempted' % (address,))
    monkeypatch.setattr(socket.socket, 'connect', connect)
    return attempts


def _resolving(monkeypatch, answers):
    """outbound's resolver answers `answers` {name: [address, ...]}; other names do not resolve."""
    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')
        return [(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_STREAM, 6, '', (a, port or 0))
                for a in answers[host]]
    monkeypatch.setattr(outbound, 'getaddrinfo', getaddrinfo)


@pytest.mark.parametrize('auth_url', ['http://127.0.0.1:5000/v3', 'http://169.254.169.254/latest',
                                      'https://10.0.0.5:5000/v3', 'http://[::ffff:127.0.0.1]:5000/v3'])
def test_an_auth_url_the_policy_refuses_is_refused_before_any_connection(auth_url, no_connection):
    dest = DestinationClient({'auth_url': auth_url}, APP_CREDENTIAL)
    with pytest.raises(HandoffDestinationError) as caught:
        dest.connect()
    assert caught.value.refused and 'refused by policy' in str(caught.value)
    assert 'outbound_allowed_networks' in str(caught.value)
    assert no_connection == []


def test_a_name_resolving_to_a_private_address_is_refused_when_connecting(monkeypatch, no_connection):
    _resolving(monkeypatch, {'keystone.evil.test': ['203.0.113.9', '10.9.8.7']})
    dest = DestinationClient({'auth_url': 'https://keystone.evil.test:5000/v3'}, {'token': TOKEN})
    with pytest.raises(HandoffDestinationError) as caught:
        dest.connect()
    message = str(caught.value)
    assert caught.value.refused and 'refused by policy: host keystone.evil.test' in message
    assert '10.9.8.7' not in message and TOKEN not in message
    assert no_connection == []


def test_a_compute_endpoint_the_policy_refuses_is_refused(no_connection):
    dest = DestinationClient({'compute_endpoint': 'http://192.168.1.1:8774/v2.1'}, APP_CREDENTIAL)
    with pytest.raises(HandoffDestinationError, match='refused by policy') as caught:
        dest.connect()
    assert caught.value.refused and no_connection == []


def test_the_policy_allows_what_the_operator_allows(keystone):
    token = _token()
    token.remove_service('image')
    token.add_service('image', name='glance').add_standard_endpoints(public='http://10.20.0.5:9292',
                                                                     region='RegionB')
    keystone.post(KEYSTONE + '/auth/tokens', status_code=201, json=token,
                  headers={'X-Subject-Token': 'token-from-app-cred'})
    policy = outbound.Policy(allowed_networks=['10.20.0.0/24'])
    assert DestinationClient(REGION_B, APP_CREDENTIAL, policy=policy).connect().image_url == 'http://10.20.0.5:9292'


@pytest.mark.parametrize('endpoint', ['http://169.254.169.254', 'http://127.0.0.1:9292', 'http://[fd00::1]:9292'])
def test_a_catalog_endpoint_the_policy_refuses_fails_the_connect(keystone, endpoint):
    token = _token()
    token.remove_service('image')
    token.add_service('image', name='glance').add_standard_endpoints(public=endpoint, region='RegionB')
    keystone.post(KEYSTONE + '/auth/tokens', status_code=201, json=token,
                  headers={'X-Subject-Token': 'token-from-app-cred'})
    with pytest.raises(HandoffDestinationError) as caught:
        DestinationClient(REGION_B, APP_CREDENTIAL).connect()
    assert caught.value.refused and 'catalog endpoint refused by policy: host ' in str(caught.value)


def test_a_redirect_to_a_refused_host_is_refused():
    server = http_server.RedirectingHTTPServer('http://169.254.169.254/latest/meta-data/')
    try:
        dest = DestinationClient({'auth_url': 'http://127.0.0.1:%d' % server.server_address[1]}, {'token': TOKEN},
                           policy=LOCAL, connect_timeout=5)
        with pytest.raises(HandoffDestinationError) as caught:
            dest.connect()
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.refused and 'refused by policy: host 169.254.169.254' in str(caught.value)


def test_the_upload_goes_only_where_the_policy_allows(no_connection):
    upload = Upload('http://169.254.169.254/v2/images/x/file', {}, connect_timeout=2, stall_timeout=2)
    with pytest.raises(HandoffDestinationError) as caught:
        with upload:
            upload.write(b'x' * 1000)
    assert caught.value.refused and 'refused by policy' in str(caught.value)
    assert no_connection == []


def test_the_residue_upload_goes_only_where_the_policy_allows(keystone, monkeypatch, no_connection):
    # The catalog names the compute endpoint by name; the name resolves to a private address.
    _resolving(monkeypatch, {'nova-b.test': ['10.9.8.7']})
    dest = DestinationClient(REGION_B, APP_CREDENTIAL).connect()
    keystone.stop()
    with pytest.raises(HandoffDestinationError) as caught:
        with dest.residue_upload(SERVER_ID, HANDOFF_ID) as upload:
            upload.write(b'x' * 1000)
    assert caught.value.refused and 'refused by policy: host nova-b.test' in str(caught.value)
    assert 'residue upload to server %s' % SERVER_ID in str(caught.value)
    assert no_connection == []


# ---------------------------------------------------------------- the streaming upload (real HTTP server)


class _PutStandIn(http.server.ThreadingHTTPServer):
    """Reads chunked PUTs on 127.0.0.1: `mode` = 'read' (at `rate` bytes/s, None: as fast as it can)
    or 'hang' (reads the headers, then nothing); answers `status`. Records each request.
    """

    daemon_threads = True

    def __init__(self, mode='read', rate=None, status=204, tls=None):
        self.mode, self.rate, self.status = mode, rate, status
        self.requests = []
        self.release = threading.Event()
        super().__init__(('127.0.0.1', 0), _Handler)
        self.scheme = 'http'
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = 'https'
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % (self.scheme, self.server_address[1])

    def handle_error(self, request, client_address):
        pass

    def stop(self):
        self.release.set()
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def do_PUT(self):
        server = self.server
        record = {'path': self.path, 'headers': dict(self.headers), 'data': bytearray(), 'complete': False,
                  'error': None}
        server.requests.append(record)
        if server.mode == 'hang':
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            server.release.wait(30)
            return
        try:
            while True:
                size = int(self.rfile.readline().split(b';')[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                remaining = size
                while remaining:
                    block = self.rfile.read(min(remaining, 16384))
                    if not block:
                        raise EOFError('connection closed inside a chunk')
                    record['data'] += block
                    remaining -= len(block)
                    if server.rate:
                        time.sleep(len(block) / server.rate)
                self.rfile.readline()
            record['complete'] = True
        except (OSError, ValueError, EOFError) as exc:
            record['error'] = exc
            return
        body = json.dumps({'message': 'refused by the stand-in'}).encode() if server.status >= 300 else b''
        self.send_response(server.status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def put_server():
    servers = []

    def start(**kwargs):
        servers.append(_PutStandIn(**kwargs))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


# The stand-ins listen on 127.0.0.1: the tests that reach them allow it, explicitly.
LOCAL = outbound.Policy(allowed_networks=['127.0.0.1/32'])


def _upload(server, **kwargs):
    kwargs.setdefault('connect_timeout', 5)
    kwargs.setdefault('stall_timeout', 5)
    kwargs.setdefault('policy', LOCAL)
    return Upload(server.url + RESIDUE_PATH,
                  {'X-Auth-Token': 'upload-token', 'Content-Type': 'application/octet-stream'}, **kwargs)


def _dest_with_compute_at(keystone, url, policy=LOCAL):
    """A connected DestinationClient whose compute endpoint is `url` (a stand-in); keystone stopped."""
    token = _token()
    token.remove_service('compute')
    token.add_service('compute', name='nova').add_standard_endpoints(public=url, region='RegionB')
    keystone.post(KEYSTONE + '/auth/tokens', status_code=201, json=token,
                  headers={'X-Subject-Token': 'token-from-app-cred'})
    dest = DestinationClient(REGION_B, APP_CREDENTIAL, policy=policy).connect()
    keystone.stop()            # the upload goes to the real server
    return dest


def test_residue_upload_through_destination_arrives_intact(keystone, put_server):
    server = put_server()
    dest = _dest_with_compute_at(keystone, server.url + '/v2.1/')
    data = bytes(range(256)) * 40000 + b'tail'     # ~10 MB, not a multiple of the chunk size
    with dest.residue_upload(SERVER_ID, HANDOFF_ID) as upload:
        for offset in range(0, len(data), 1000003):
            upload.write(data[offset:offset + 1000003])
    [request] = server.requests
    assert request['complete'] and hashlib.sha256(request['data']).digest() == hashlib.sha256(data).digest()
    assert request['path'] == RESIDUE_PATH
    assert upload.url == server.url + RESIDUE_PATH
    headers = {k.lower(): v for k, v in request['headers'].items()}
    assert headers['transfer-encoding'] == 'chunked'
    assert headers['content-type'] == 'application/octet-stream'
    assert headers['x-auth-token'] == 'token-from-app-cred'
    assert headers['x-cloudlet-handoff-id'] == HANDOFF_ID
    assert remote.RESIDUE_HEADER == 'X-Cloudlet-Handoff-Id'
    assert upload.bytes_sent == upload.bytes_written == len(data)
    assert upload.status_code == 204


def test_residue_upload_quotes_the_server_id(keystone):
    dest = DestinationClient(REGION_B, APP_CREDENTIAL).connect()
    upload = dest.residue_upload('a/b?c', HANDOFF_ID)
    assert upload.url == NOVA + '/servers/a%2Fb%3Fc/cloudlet-residue'
    assert (upload.connect_timeout, upload.stall_timeout) == (30, 60)


def test_residue_upload_refused_by_the_destination_names_the_server(keystone, put_server):
    server = put_server(status=409)
    dest = _dest_with_compute_at(keystone, server.url + '/v2.1')
    with pytest.raises(HandoffDestinationError) as caught:
        with dest.residue_upload(SERVER_ID, HANDOFF_ID) as upload:
            upload.write(b'a' * 1000)
    assert caught.value.refused
    assert str(caught.value) == ('residue upload to server %s at %s: refused by the stand-in (HTTP 409)'
                                 % (SERVER_ID, server.url + RESIDUE_PATH))


def test_residue_upload_before_connect_fails_clearly():
    with pytest.raises(HandoffDestinationError, match='connect'):
        DestinationClient(REGION_B, APP_CREDENTIAL).residue_upload(SERVER_ID, HANDOFF_ID)


def test_upload_bandwidth_is_measured_with_a_slow_server(put_server):
    rate = 4 * 1024 * 1024                                  # the server reads 4 MiB/s = 33.5 Mbit/s
    server = put_server(rate=rate)
    upload = _upload(server, buffer_bytes=256 * 1024)
    samples = []
    with upload:
        assert upload.bandwidth() is None
        started = time.monotonic()
        # The first MBs fill the socket buffers at once; after the 2 s window the rate is the server's.
        while time.monotonic() - started < 3.5:
            upload.write(b'x' * 65536)
            samples.append(upload.bandwidth())
    assert server.requests[0]['complete']
    assert samples[0] is None and samples[-1] is not None
    assert 0.3 * rate * 8 < samples[-1] < 1.5 * rate * 8


def test_a_slow_link_gets_a_shorter_queue(put_server):
    server = put_server(rate=256 * 1024)                    # 2 Mbit/s: 0.1 s of it is 26 KB
    upload = _upload(server, buffer_bytes=256 * 1024)
    queued = []
    with upload:
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            upload.write(b'x' * 16384)
            if upload.bandwidth():
                queued.append(upload._buffered)
    assert server.requests[0]['complete']
    assert queued and max(queued) <= upload_mod.MIN_BUFFER_BYTES       # not the 256 KiB it may hold on fast links


def test_upload_bandwidth_is_the_link_s_not_a_slow_sender_s(put_server):
    server = put_server()                                   # loopback, read at once
    upload = _upload(server, buffer_bytes=256 * 1024)
    pace = 65536 / 0.05                                     # the sender: 64 KiB every 50 ms = 1.3 MB/s
    with upload:
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            upload.write(b'x' * 65536)
            time.sleep(0.05)
        measured = upload.bandwidth()
    assert server.requests[0]['complete']
    assert measured > 10 * pace * 8                         # the link is not what limits


def test_upload_write_raises_when_the_server_stops_reading(put_server):
    server = put_server(mode='hang')
    upload = _upload(server, stall_timeout=1.0, buffer_bytes=256 * 1024)
    started = time.monotonic()
    with pytest.raises(HandoffDestinationError) as caught:
        with upload:
            while time.monotonic() - started < 60:
                upload.write(b'y' * 65536)
    elapsed = time.monotonic() - started
    assert not caught.value.refused
    assert 'stalled' in str(caught.value) or 'timed out' in str(caught.value)
    # Filling the kernel's socket buffers takes a moment; then at most ~stall_timeout passes.
    assert elapsed < 10
    assert not upload._thread.is_alive()


def test_upload_exit_with_an_exception_aborts_the_request(put_server):
    server = put_server(rate=1024 * 1024)
    upload = _upload(server)
    with pytest.raises(KeyError):
        with upload:
            upload.write(b'z' * (512 * 1024))
            time.sleep(0.3)
            raise KeyError('the residue failed')
    assert not upload._thread.is_alive()
    deadline = time.monotonic() + 5
    while not server.requests or (not server.requests[0]['error'] and time.monotonic() < deadline):
        time.sleep(0.05)
    [request] = server.requests
    assert not request['complete'] and request['error'] is not None


def test_upload_abort_unblocks_a_stuck_connection_at_once(put_server):
    server = put_server(mode='hang')
    upload = _upload(server, stall_timeout=30, buffer_bytes=256 * 1024)
    writer_errors = []

    def writer():
        try:
            for _ in range(2000):               # far more than the socket buffers hold
                upload.write(b'w' * 65536)
        except HandoffDestinationError as exc:
            writer_errors.append(exc)
    started = time.monotonic()
    with pytest.raises(KeyError):
        with upload:
            thread = threading.Thread(target=writer, daemon=True)
            thread.start()
            time.sleep(1.0)                     # the writer blocks, the request thread is stuck in send
            raise KeyError('the residue failed')
    thread.join(5)
    assert time.monotonic() - started < 5       # not stall_timeout: the connection was shut down
    assert not upload._thread.is_alive() and not thread.is_alive()
    assert writer_errors and 'aborted' in str(writer_errors[0])


def test_upload_non_2xx_answer_raises_with_the_destination_s_message(put_server):
    server = put_server(status=413)
    upload = _upload(server)
    with pytest.raises(HandoffDestinationError, match=r'refused by the stand-in \(HTTP 413\)') as caught:
        with upload:
            upload.write(b'a' * 1000)
    assert caught.value.refused


def test_upload_to_nowhere_fails_on_write_or_exit(put_server):
    with socket.socket() as unused:
        unused.bind(('127.0.0.1', 0))
        port = unused.getsockname()[1]
    upload = Upload('http://127.0.0.1:%d/v2/images/x/file' % port, {}, connect_timeout=2, stall_timeout=2,
                    policy=LOCAL)
    with pytest.raises(HandoffDestinationError) as caught:
        with upload:
            for _ in range(200):
                upload.write(b'b' * 65536)
    assert not caught.value.refused


@pytest.fixture(scope='module')
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert file, key file)."""
    import datetime
    import ipaddress

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'glance-stand-in')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp('tls')
    cert_file, key_file = directory / 'cert.pem', directory / 'key.pem'
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.mark.parametrize('verify', ['ca_file', 'insecure'])
def test_upload_over_https(put_server, certificate, verify):
    server = put_server(tls=certificate)
    upload = _upload(server, verify=certificate[0] if verify == 'ca_file' else False)
    with upload:
        upload.write(b'tls' * 100000)
    assert server.requests[0]['complete'] and len(server.requests[0]['data']) == 300000


def test_upload_over_https_refuses_an_unknown_certificate(put_server, certificate):
    server = put_server(tls=certificate)
    with pytest.raises(HandoffDestinationError, match='CERTIFICATE_VERIFY_FAILED') as caught:
        with _upload(server) as upload:
            upload.write(b'x' * 1000)
    assert not caught.value.refused


@pytest.mark.parametrize('kwargs, verify', [({}, True), ({'ca_file': '/etc/ca.pem'}, '/etc/ca.pem'),
                                            ({'insecure': True, 'ca_file': '/etc/ca.pem'}, False)])
def test_tls_verification_reaches_every_session(keystone, kwargs, verify):
    dest = DestinationClient(REGION_B, APP_CREDENTIAL, **kwargs).connect()
    assert dest._session.verify == verify
    assert dest.residue_upload(SERVER_ID, HANDOFF_ID)._verify == verify


def test_bandwidth_window(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(upload_mod, 'clock', lambda: now[0])
    upload = Upload('http://127.0.0.1:9/x', {})
    assert upload.bandwidth() is None
    upload._samples.append((100.0, 0, 0.0))
    now[0] = 100.2
    assert upload.bandwidth() is None              # less than BANDWIDTH_MIN_SPAN of history
    for t in range(1, 11):                         # 1 MB a second, the connection busy half of it
        now[0] = 100.0 + t
        upload.bytes_sent = t * 1000000
        upload._busy = t * 0.5
        upload._samples.append((now[0], upload.bytes_sent, upload._busy))
    assert upload.bandwidth() == pytest.approx(16e6)   # what the link takes: 1 MB per busy 0.5 s
    upload._busy += 0.25                           # a sender faster than the link: busy all the time
    assert upload.bandwidth() == pytest.approx(2e6 * 8 / 1.25)
    now[0] += 2                                    # nothing moved for 2 s: the rate falls
    assert upload.bandwidth() == pytest.approx(0.0)


# ---------------------------------------------------------------- Neutron: the server's floating IP

def test_add_floating_ip_on_the_server_s_port_from_the_external_network(dest, keystone):
    keystone.get(NEUTRON + '/v2.0/ports?device_id=' + SERVER_ID, json={'ports': [{'id': 'port-1'}]})
    keystone.get(NEUTRON + '/v2.0/networks?router:external=True', json={'networks': [{'id': 'public'}]})
    keystone.post(NEUTRON + '/v2.0/floatingips', status_code=201,
                  json={'floatingip': {'id': 'fip-1', 'floating_ip_address': '172.24.5.20'}})
    assert dest.add_floating_ip(SERVER_ID) == ('fip-1', '172.24.5.20')
    [created] = _requests(keystone, 'POST', NEUTRON + '/v2.0/floatingips')
    assert created.json() == {'floatingip': {'floating_network_id': 'public', 'port_id': 'port-1'}}


@pytest.mark.parametrize('ports,networks,message', [
    ([], [{'id': 'public'}], 'has no port for a floating IP'),
    ([{'id': 'port-1'}], [], '0 external networks'),
    ([{'id': 'port-1'}], [{'id': 'a'}, {'id': 'b'}], '2 external networks'),
])
def test_add_floating_ip_refused_when_it_cannot_choose(dest, keystone, ports, networks, message):
    keystone.get(NEUTRON + '/v2.0/ports?device_id=' + SERVER_ID, json={'ports': ports})
    keystone.get(NEUTRON + '/v2.0/networks?router:external=True', json={'networks': networks})
    with pytest.raises(HandoffDestinationError, match=message) as raised:
        dest.add_floating_ip(SERVER_ID)
    assert raised.value.refused
    assert not _requests(keystone, 'POST', NEUTRON + '/v2.0/floatingips')


def test_add_floating_ip_without_a_network_endpoint(keystone):
    destination = DestinationClient({'auth_url': KEYSTONE, 'region_name': 'RegionOne'}, APP_CREDENTIAL).connect()
    with pytest.raises(HandoffDestinationError, match='no network'):
        destination.add_floating_ip(SERVER_ID)


def test_add_floating_ip_on_a_given_port_lists_no_server_ports(dest, keystone):
    keystone.get(NEUTRON + '/v2.0/networks?router:external=True', json={'networks': [{'id': 'public'}]})
    keystone.post(NEUTRON + '/v2.0/floatingips', status_code=201,
                  json={'floatingip': {'id': 'fip-2', 'floating_ip_address': '172.24.5.21'}})
    assert dest.add_floating_ip(port_id='port-9') == ('fip-2', '172.24.5.21')
    assert not _requests(keystone, 'GET', NEUTRON + '/v2.0/ports')
    [created] = _requests(keystone, 'POST', NEUTRON + '/v2.0/floatingips')
    assert created.json() == {'floatingip': {'floating_network_id': 'public', 'port_id': 'port-9'}}


def test_add_floating_ip_with_a_description(dest, keystone):
    keystone.get(NEUTRON + '/v2.0/networks?router:external=True', json={'networks': [{'id': 'public'}]})
    keystone.post(NEUTRON + '/v2.0/floatingips', status_code=201,
                  json={'floatingip': {'id': 'fip-3', 'floating_ip_address': '172.24.5.22'}})
    dest.add_floating_ip(port_id='port-9', description='cloudlet-handoff-h1')
    [created] = _requests(keystone, 'POST', NEUTRON + '/v2.0/floatingips')
    assert created.json() == {'floatingip': {'floating_network_id': 'public', 'port_id': 'port-9',
                                             'description': 'cloudlet-handoff-h1'}}


# ---------------------------------------------------------------- Neutron: the ports the VM's NICs get

PROJECT_NETWORKS = NEUTRON + '/v2.0/networks?project_id=%s&router:external=False' % PROJECT


@pytest.mark.parametrize('networks,expected', [
    ([{'id': 'net-own'}], 'net-own'),
    ([], None),
    ([{'id': 'net-a'}, {'id': 'net-b'}], None),
])
def test_project_network(dest, keystone, networks, expected):
    keystone.get(PROJECT_NETWORKS, json={'networks': networks})
    assert dest.project_network() == expected
    [listed] = _requests(keystone, 'GET', NEUTRON + '/v2.0/networks')
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(listed.url).query)      # .qs lower-cases values
    assert query == {'project_id': [PROJECT], 'router:external': ['False']}
    assert listed.headers['X-Auth-Token'] == 'token-from-app-cred'


def test_project_network_refused(dest, keystone):
    keystone.get(PROJECT_NETWORKS, status_code=403, json={'NeutronError': {'message': 'policy says no'}})
    with pytest.raises(HandoffDestinationError) as caught:
        dest.project_network()
    assert caught.value.refused


def test_project_network_without_a_network_endpoint(keystone):
    destination = DestinationClient({'auth_url': KEYSTONE, 'region_name': 'RegionOne'}, APP_CREDENTIAL).connect()
    with pytest.raises(HandoffDestinationError, match='no network') as caught:
        destination.project_network()
    assert caught.value.refused


def test_create_port_with_the_vm_s_mac(dest, keystone):
    keystone.post(NEUTRON + '/v2.0/ports', status_code=201,
                  json={'port': {'id': 'port-7', 'mac_address': 'fa:16:3e:00:00:01'}})
    assert dest.create_port('net-own', 'fa:16:3e:00:00:01', 'cloudlet-handoff-' + HANDOFF_ID) == 'port-7'
    [created] = _requests(keystone, 'POST', NEUTRON + '/v2.0/ports')
    port = created.json()['port']
    assert port.pop('description')                         # some words for the operator
    assert port == {'network_id': 'net-own', 'mac_address': 'fa:16:3e:00:00:01',
                    'name': 'cloudlet-handoff-' + HANDOFF_ID}


@pytest.mark.parametrize('status', [400, 403, 409])
def test_create_port_refused_with_neutron_s_message(dest, keystone, status):
    keystone.post(NEUTRON + '/v2.0/ports', status_code=status,
                  json={'NeutronError': {'type': 'MacAddressInUse', 'detail': '',
                                         'message': 'Unable to complete operation for network net-own. '
                                                    'The mac address fa:16:3e:00:00:01 is in use.'}})
    with pytest.raises(HandoffDestinationError) as caught:
        dest.create_port('net-own', 'fa:16:3e:00:00:01', 'cloudlet-handoff-x')
    assert caught.value.refused
    assert 'creating a port with MAC fa:16:3e:00:00:01' in str(caught.value)
    assert '(HTTP %d)' % status in str(caught.value)


def test_create_port_failing_at_the_destination_is_not_a_refusal(dest, keystone):
    keystone.post(NEUTRON + '/v2.0/ports', status_code=503, text='busy')
    with pytest.raises(HandoffDestinationError) as caught:
        dest.create_port('net-own', 'fa:16:3e:00:00:01', 'cloudlet-handoff-x')
    assert not caught.value.refused
    keystone.post(NEUTRON + '/v2.0/ports', exc=requests.exceptions.ConnectTimeout('no route'))
    with pytest.raises(HandoffDestinationError) as caught:
        dest.create_port('net-own', 'fa:16:3e:00:00:01', 'cloudlet-handoff-x')
    assert not caught.value.refused


@pytest.mark.parametrize('method,path', [
    ('delete_port', '/v2.0/ports/'),
    ('delete_floating_ip', '/v2.0/floatingips/'),
])
def test_deleting_a_port_or_a_floating_ip_is_best_effort(dest, keystone, caplog, method, path):
    url = NEUTRON + path + 'thing-1'
    delete = getattr(dest, method)
    keystone.delete(url, status_code=204)
    delete('thing-1')
    keystone.delete(url, status_code=404, json={'NeutronError': {'message': 'not found'}})
    caplog.clear()
    delete('thing-1')                                        # already gone: success, not worth a warning
    assert not [r for r in caplog.records if r.levelname == 'WARNING']
    keystone.delete(url, status_code=409, json={'NeutronError': {'message': 'in use'}})
    delete('thing-1')
    assert 'HTTP 409' in caplog.text                          # logged, not raised
    keystone.delete(url, exc=requests.exceptions.ReadTimeout('slow'))
    delete('thing-1')
    assert 'thing-1 failed' in caplog.text and 'timed out' in caplog.text
    assert len(_requests(keystone, 'DELETE', url)) == 4


def test_deleting_a_port_or_a_floating_ip_never_raises_even_without_neutron(keystone):
    destination = DestinationClient({'auth_url': KEYSTONE, 'region_name': 'RegionOne'}, APP_CREDENTIAL).connect()
    destination.delete_port('port-1')
    destination.delete_floating_ip('fip-1')
    DestinationClient(REGION_B, APP_CREDENTIAL).delete_port('port-1')            # not even connected
    assert not [r for r in keystone.request_history if r.method == 'DELETE']


def test_deleting_quotes_the_id(dest, keystone):
    keystone.delete(NEUTRON + '/v2.0/ports/a%2Fb', status_code=204)
    dest.delete_port('a/b')
    assert keystone.last_request.path == '/v2.0/ports/a%2fb'


# ---------------------------------------------------------------- the residue's key (Barbican)

BARBICAN = 'https://barbican-b.test:9311'
KEY_ID = '33333333-0000-4000-8000-000000000001'


@pytest.fixture
def dest_with_barbican(keystone):
    token = _token()
    token.add_service('key-manager', name='barbican').add_standard_endpoints(public=BARBICAN + '/v1',
                                                                            region='RegionB')
    keystone.post(KEYSTONE + '/auth/tokens', status_code=201, json=token,
                  headers={'X-Subject-Token': 'token-from-app-cred'})
    _version_documents(keystone, BARBICAN + '/v1')
    return DestinationClient(REGION_B, APP_CREDENTIAL).connect()


def test_a_destination_without_a_key_manager_cannot_keep_a_key(dest):
    assert dest.key_manager_url is None
    with pytest.raises(HandoffDestinationError, match='has no key manager in its catalog') as caught:
        dest.store_key(bytes(32), 'cloudlet-handoff-x')
    assert caught.value.refused


def test_residue_key_is_stored_as_the_users_symmetric_key(keystone, dest_with_barbican):
    assert dest_with_barbican.key_manager_url == BARBICAN
    keystone.post(BARBICAN + '/v1/secrets', status_code=201,
                  json={'secret_ref': BARBICAN + '/v1/secrets/' + KEY_ID})
    key = bytes(range(32))
    assert dest_with_barbican.store_key(key, 'cloudlet-handoff-x') == KEY_ID
    request = keystone.last_request
    assert request.headers['X-Auth-Token'] == 'token-from-app-cred'
    body = request.json()
    assert base64.b64decode(body.pop('payload')) == key
    assert body == {'name': 'cloudlet-handoff-x', 'secret_type': 'symmetric', 'algorithm': 'aes',
                    'bit_length': 256, 'mode': 'gcm', 'payload_content_type': 'application/octet-stream',
                    'payload_content_encoding': 'base64'}


def test_a_refused_key_store_is_a_refusal_without_the_key(keystone, dest_with_barbican):
    keystone.post(BARBICAN + '/v1/secrets', status_code=403, json={'title': 'Forbidden', 'code': 403,
                                                                    'description': 'quota'})
    key = bytes(range(1, 33))
    with pytest.raises(HandoffDestinationError) as caught:
        dest_with_barbican.store_key(key, 'cloudlet-handoff-x')
    assert caught.value.refused and 'storing the residue key' in str(caught.value)
    assert base64.b64encode(key).decode() not in str(caught.value)


def test_deleting_the_key_is_best_effort(keystone, dest_with_barbican):
    keystone.delete(BARBICAN + '/v1/secrets/' + KEY_ID, status_code=204)
    assert dest_with_barbican.delete_key(KEY_ID) is True
    assert keystone.last_request.method == 'DELETE'
    keystone.delete(BARBICAN + '/v1/secrets/' + KEY_ID, status_code=404)
    assert dest_with_barbican.delete_key(KEY_ID) is True       # gone already
    keystone.delete(BARBICAN + '/v1/secrets/' + KEY_ID, status_code=500)
    assert dest_with_barbican.delete_key(KEY_ID) is False      # logged, not raised


# ---------------------------------------------------------------- the sdk's requests


def test_each_service_s_version_document_is_read_once_before_its_first_call(keystone, dest_with_barbican,
                                                                             companions):
    """openstacksdk reads the version document at the catalog's versioned endpoint of a service
    before its first call (one round trip per service; Barbican's /v1 points to /v1/), never again.
    """
    dest = dest_with_barbican
    keystone.get(GLANCE + '/v2/images', json={'images': [_disk()]})
    keystone.get(NOVA + '/flavors/detail', json={'flavors': FLAVORS})
    keystone.get(PROJECT_NETWORKS, json={'networks': [{'id': 'net-own'}]})
    keystone.post(BARBICAN + '/v1/secrets', status_code=201,
                  json={'secret_ref': BARBICAN + '/v1/secrets/' + KEY_ID})
    keystone.post(NOVA + '/servers', status_code=202, json={'server': {'id': SERVER_ID}})
    keystone.delete(NEUTRON + '/v2.0/ports/port-1', status_code=204)
    dest.find_base_image(BASE_ID)
    dest.pick_flavor(256, 1)
    dest.project_network()
    dest.store_key(bytes(32), 'cloudlet-handoff-x')
    dest.create_server('app-b', DISK_ID, 'fit', {})
    dest.delete_port('port-1')
    dest.pick_flavor(256, 1)
    dest.project_network()
    assert [(r.method, r.path) for r in keystone.request_history] == [
        ('POST', '/v3/auth/tokens'),
        ('GET', '/v2'), ('GET', '/v2/images')] + [
        ('GET', '/v2/images/' + i) for i in (MEMORY_ID, DISKHASH_ID, MEMHASH_ID)] + [
        ('GET', '/v2.1'), ('GET', '/v2.1/flavors/detail'),
        ('GET', '/v2.0'), ('GET', '/v2.0/networks'),
        ('GET', '/v1'), ('GET', '/v1/'), ('POST', '/v1/secrets'),
        ('POST', '/v2.1/servers'), ('DELETE', '/v2.0/ports/port-1'),
        ('GET', '/v2.1/flavors/detail'), ('GET', '/v2.0/networks')]


def test_the_sdk_calls_go_only_where_the_policy_allows(keystone, monkeypatch, no_connection):
    # The catalog names the endpoints by name; the names resolve to private addresses.
    _resolving(monkeypatch, {host: ['10.9.8.7'] for host in ('nova-b.test', 'glance-b.test', 'neutron-b.test')})
    dest = DestinationClient(REGION_B, APP_CREDENTIAL).connect()
    keystone.stop()
    for call, host in ((lambda: dest.create_server('app-b', DISK_ID, 'fit', {}), 'nova-b.test'),
                       (lambda: dest.find_base_image(BASE_ID), 'glance-b.test'),
                       (dest.project_network, 'neutron-b.test')):
        with pytest.raises(HandoffDestinationError) as caught:
            call()
        assert caught.value.refused and 'refused by policy: host %s' % host in str(caught.value)
    assert dest.delete_port('port-1') is False
    assert no_connection == []
