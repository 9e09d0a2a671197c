"""CloudletSession against requests-mock: negotiate, synthesize (URL, image, local file), wait, lease,
handoff, release."""

import socket

import pytest

from cloudlet_client import cloud as cloud_mod
from cloudlet_client import errors
from cloudlet_client import lease as lease_mod
from cloudlet_client import overlays
from cloudlet_client import session as session_mod
from tests.unit.client.conftest import BASE_ID
from tests.unit.client.conftest import BASE_IMAGE_ID
from tests.unit.client.conftest import GLANCE
from tests.unit.client.conftest import ksa
from tests.unit.client.conftest import negotiation
from tests.unit.client.conftest import NEUTRON
from tests.unit.client.conftest import NOVA
from tests.unit.client.conftest import SERVER_ID
from tests.unit.client.conftest import write_overlay

NEGOTIATE = NOVA + '/os-cloudlet/negotiate'
ACTION = NOVA + '/servers/%s/action' % SERVER_ID
SERVER = NOVA + '/servers/' + SERVER_ID
IMAGE_ID = '0b5f2c1e-8d4a-4e0b-9c5e-2f7a1b3c4d5e'
URL = 'https://overlays.example/app.clo'


def bodies(http, method, url):
    return [r.json() for r in http.request_history if r.method == method and r.url.split('?')[0] == url]


def server(status='ACTIVE', **fields):
    body = {'id': SERVER_ID, 'name': 'app', 'status': status, 'OS-EXT-STS:task_state': None, 'metadata': {},
            'addresses': {}}
    body.update(fields)
    return body


@pytest.fixture
def session(cloud):
    return session_mod.CloudletSession(cloud)


def test_synthesize_from_a_url_with_a_lease(session, http):
    http.post(NEGOTIATE, json=negotiation())
    http.post(NOVA + '/servers', status_code=202, json={'server': {'id': SERVER_ID}})
    assert session.synthesize(overlays.Overlay.url(URL), 'app', lease_seconds=120) == SERVER_ID
    assert bodies(http, 'POST', NEGOTIATE) == [{'overlay_url': URL}]
    [create] = bodies(http, 'POST', NOVA + '/servers')
    assert create == {'server': {'name': 'app', 'imageRef': BASE_IMAGE_ID, 'flavorRef': 'c1.base',
                                 'networks': 'auto', 'metadata': {'overlay_url': URL,
                                                                  'cloudlet_lease_seconds': '120'}}}
    assert [r.headers['OpenStack-API-Version'] for r in http.request_history if r.url.startswith(NOVA)] == \
        ['compute 2.96'] * 2
    assert [step for step, _ in session.timings] == ['negotiate', 'create']


def test_synthesize_from_an_image(session, http):
    http.get(GLANCE + '/v2/images/' + IMAGE_ID, json={'id': IMAGE_ID, 'cloudlet_type': 'cloudlet_overlay',
                                                        'cloudlet_base_id': BASE_ID})
    http.post(NEGOTIATE, json=negotiation())
    http.post(NOVA + '/servers', status_code=202, json={'server': {'id': SERVER_ID}})
    session.synthesize(overlays.Overlay.image(IMAGE_ID), 'app')
    assert bodies(http, 'POST', NEGOTIATE) == [{'overlay': {'base_id': BASE_ID, 'codec': 'zstd',
                                                            'format_version': 1}}]
    assert bodies(http, 'POST', NOVA + '/servers')[0]['server']['metadata'] == {'cloudlet_overlay_id': IMAGE_ID}


def test_a_refusal_names_the_reason(session, http):
    http.post(NEGOTIATE, json=negotiation(False, 'base ababababab… is not on this cloudlet'))
    with pytest.raises(errors.NotAcceptable, match='edge-1 does not accept url %s: base ababababab' % URL) as c:
        session.synthesize(overlays.Overlay.url(URL), 'app')
    assert c.value.negotiation.acceptable is False
    assert not [r for r in http.request_history if r.url == NOVA + '/servers']


def test_a_local_file_is_uploaded_first_and_deleted_at_release(session, http, tmp_path):
    path = write_overlay(tmp_path / 'app.clo', padding=5000)
    data = open(path, 'rb').read()
    http.post(NEGOTIATE, json=negotiation())
    http.post(GLANCE + '/v2/images', status_code=201, json={'id': IMAGE_ID})
    http.put(GLANCE + '/v2/images/%s/file' % IMAGE_ID, status_code=204)
    http.post(NOVA + '/servers', status_code=202, json={'server': {'id': SERVER_ID}})
    http.delete(SERVER, status_code=204)
    http.delete(GLANCE + '/v2/images/' + IMAGE_ID, status_code=204)
    session.synthesize(overlays.Overlay.file(path), 'app')
    assert bodies(http, 'POST', NEGOTIATE)[0]['overlay']['size_bytes'] == len(data)
    assert bodies(http, 'POST', GLANCE + '/v2/images') == [{
        'name': 'app.clo', 'disk_format': 'raw', 'container_format': 'bare', 'visibility': 'private',
        'os_hidden': True, 'cloudlet_type': 'cloudlet_overlay', 'cloudlet_base_id': BASE_ID,
        'cloudlet_codec': 'zstd'}]
    [upload] = [r for r in http.request_history if r.method == 'PUT']
    assert upload.headers['Content-Type'] == 'application/octet-stream'
    assert bodies(http, 'POST', NOVA + '/servers')[0]['server']['metadata'] == {'cloudlet_overlay_id': IMAGE_ID}
    session.release()
    session.release()             # twice: nothing more
    assert [(r.method, r.url) for r in http.request_history if r.method == 'DELETE'] == \
        [('DELETE', SERVER), ('DELETE', GLANCE + '/v2/images/' + IMAGE_ID)]


def test_an_upload_nova_refuses_is_deleted_at_once(session, http, tmp_path):
    path = write_overlay(tmp_path / 'app.clo')
    http.post(NEGOTIATE, json=negotiation())
    http.post(GLANCE + '/v2/images', status_code=201, json={'id': IMAGE_ID})
    http.put(GLANCE + '/v2/images/%s/file' % IMAGE_ID, status_code=204)
    http.post(NOVA + '/servers', status_code=403, json={'forbidden': {'code': 403, 'message': 'Quota exceeded'}})
    http.delete(GLANCE + '/v2/images/' + IMAGE_ID, status_code=204)
    with pytest.raises(errors.HTTPError, match=r'^Quota exceeded \(HTTP 403\)$'):
        session.synthesize(overlays.Overlay.file(path), 'app')
    assert [r.url for r in http.request_history if r.method == 'DELETE'] == [GLANCE + '/v2/images/' + IMAGE_ID]
    session.release()
    assert len([r for r in http.request_history if r.method == 'DELETE']) == 1


def test_a_file_of_another_base_is_not_uploaded(session, http, tmp_path):
    path = write_overlay(tmp_path / 'app.clo', base_id='cd' * 32)
    http.post(NEGOTIATE, json=negotiation())
    with pytest.raises(errors.ClientError, match='was made against base cdcd.*not the negotiated abab'):
        session.synthesize(overlays.Overlay.file(path), 'app')
    assert not [r for r in http.request_history if r.url.startswith(GLANCE)]


def test_wait_active_and_error(session, http, no_real_waiting):
    session.server_id = SERVER_ID
    http.get(SERVER, [{'json': {'server': server('BUILD')}}, {'json': {'server': server('ACTIVE')}}])
    assert session.wait_active()['status'] == 'ACTIVE' and len(no_real_waiting) == 1
    http.get(SERVER, json={'server': server('ERROR', fault={'message': 'overlay made against another base'})})
    with pytest.raises(errors.ServerFailed, match='is in ERROR on edge-1: overlay made against another base'):
        session.wait_active()


def test_app_address_prefers_a_floating_ip_and_makes_one(session, http):
    session.server_id = SERVER_ID
    fixed = {'private': [{'addr': '10.10.0.5', 'OS-EXT-IPS:type': 'fixed'}]}
    http.get(SERVER, json={'server': server(addresses=dict(fixed, public=[
        {'addr': '172.24.4.9', 'OS-EXT-IPS:type': 'floating'}]))})
    assert session.app_address() == '172.24.4.9'
    http.get(SERVER, json={'server': server(addresses=fixed)})
    assert session.app_address(floating=False) == '10.10.0.5'
    http.get(NEUTRON + '/v2.0/ports', json={'ports': [{'id': 'port-1'}]})
    http.get(NEUTRON + '/v2.0/floatingips', json={'floatingips': []})
    http.get(NEUTRON + '/v2.0/networks', json={'networks': [{'id': 'ext-b', 'name': 'public'},
                                                            {'id': 'ext-a', 'name': 'internet'}]})
    http.post(NEUTRON + '/v2.0/floatingips', status_code=201,
              json={'floatingip': {'id': 'fip-1', 'floating_ip_address': '172.24.4.10'}})
    http.delete(SERVER, status_code=204)
    http.delete(NEUTRON + '/v2.0/floatingips/fip-1', status_code=204)
    assert session.app_address() == '172.24.4.10'
    assert bodies(http, 'POST', NEUTRON + '/v2.0/floatingips') == [
        {'floatingip': {'floating_network_id': 'ext-a', 'port_id': 'port-1'}}]
    session.release()
    assert [r.url for r in http.request_history if r.method == 'DELETE'] == [
        SERVER, NEUTRON + '/v2.0/floatingips/fip-1']


def test_wait_reachable(session):
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(4)
    try:
        seconds = session.wait_reachable(listener.getsockname()[1], timeout=5, host='127.0.0.1')
        assert 0 <= seconds < 5
    finally:
        listener.close()
    with pytest.raises(errors.Unreachable, match='127.0.0.1 port 9 did not answer within 0 s'):
        session.wait_reachable(9, timeout=0, host='127.0.0.1')


def test_heartbeat_and_a_lost_lease(session, http):
    session.server_id = SERVER_ID
    http.post(ACTION, json={'lease': {'seconds': 300, 'expires_at': '2030-01-01T00:05:00Z'}})
    assert session.heartbeat(300) == lease_mod.Lease(300, '2030-01-01T00:05:00Z')
    assert session.heartbeat() == lease_mod.Lease(300, '2030-01-01T00:05:00Z')
    assert bodies(http, 'POST', ACTION) == [{'cloudlet-heartbeat': {'seconds': 300}}, {'cloudlet-heartbeat': {}}]
    http.post(ACTION, status_code=404, json={'itemNotFound': {'code': 404, 'message': 'Instance could not be found'}})
    with pytest.raises(errors.LeaseLost, match='is gone from edge-1: Instance could not be found'):
        session.heartbeat()


def test_keep_alive_uses_the_servers_lease(session, http, monkeypatch):
    monkeypatch.setattr(lease_mod, 'MIN_INTERVAL', 0.01)
    session.server_id = SERVER_ID
    http.get(SERVER, json={'server': server(metadata={'cloudlet_lease_seconds': '60',
                                                      'cloudlet_lease_expires_at': '2030-01-01T00:01:00Z'})})
    keeper = session.keep_alive(interval=0.01)
    assert keeper.seconds == 60 and keeper.alive
    assert session.keep_alive() is keeper
    http.delete(SERVER, status_code=204)
    session.release()
    assert not keeper.alive


def test_keep_alive_without_a_lease_needs_seconds(session, http):
    session.server_id = SERVER_ID
    http.get(SERVER, json={'server': server()})
    with pytest.raises(errors.ClientError, match='has no lease: give seconds'):
        session.keep_alive()


DEST_NOVA = 'http://nova.dest.test/compute/v2.1'
DEST_AUTH = 'http://keystone.dest.test/v3'
NEW_ID = '9d0a7c11-5b6e-4f3a-8a2b-1c2d3e4f5a6b'


@pytest.fixture
def destination(http):
    from keystoneauth1 import fixture as ksa_fixture
    token = ksa_fixture.V3Token()
    token.add_service('compute').add_standard_endpoints(public=DEST_NOVA, region='Edge2')
    http.post(DEST_AUTH + '/auth/tokens', json=token, headers={'X-Subject-Token': 'dest-token'})
    return cloud_mod.Cloud(ksa(DEST_AUTH), 'Edge2', 'public', name='edge-2', keystone_url=DEST_AUTH)


def test_handoff_moves_the_session_to_the_new_server(session, http, destination):
    session.server_id, session.server = SERVER_ID, server()
    http.post(ACTION, status_code=202, json={'handoff_id': 'h-1'}, headers={'x-openstack-request-id': 'req-1'})
    http.get(NOVA + '/servers/%s/os-instance-actions/req-1' % SERVER_ID,
             json={'instanceAction': {'events': [{'event': 'cloudlet_handoff', 'result': None}]}})
    moved = {'id': NEW_ID, 'name': 'app', 'status': 'ACTIVE', 'metadata': {'cloudlet_handoff_id': 'h-1'}}
    http.get(DEST_NOVA + '/servers/detail', [
        {'json': {'servers': []}}, {'json': {'servers': [dict(moved, status='BUILD')]}},
        {'json': {'servers': [moved, {'id': 'other', 'status': 'ACTIVE', 'metadata': {}}]}}])
    http.get(SERVER, [{'json': {'server': server()}},
                      {'status_code': 404, 'json': {'itemNotFound': {'code': 404, 'message': 'gone'}}}])
    assert session.handoff(destination)['id'] == NEW_ID
    [request] = [r for r in http.request_history if r.method == 'POST' and r.url == ACTION]
    assert request.json() == {'cloudlet-handoff': {'destination': {'auth_url': DEST_AUTH, 'region_name': 'Edge2'},
                                                   'credential': {'token': 'dest-token'}, 'name': 'app'}}
    assert (session.cloud, session.server_id) == (destination, NEW_ID)
    assert 'handoff' in dict(session.timings)


def test_a_failed_handoff_says_why_and_stays(session, http, destination):
    session.server_id = SERVER_ID
    http.post(ACTION, status_code=202, json={'handoff_id': 'h-2'})
    http.get(NOVA + '/servers/%s/os-instance-actions' % SERVER_ID, json={'instanceActions': [
        {'action': 'cloudlet-handoff', 'request_id': 'req-2', 'start_time': '2030-01-01T00:00:00'}]})
    http.get(NOVA + '/servers/%s/os-instance-actions/req-2' % SERVER_ID, json={'instanceAction': {'events': [
        {'event': 'cloudlet_handoff', 'result': 'Error', 'details': 'destination refused the credential'}]}})
    with pytest.raises(errors.HandoffFailed, match='handoff h-2 of server .* failed: destination refused'):
        session.handoff(destination, credential={'application_credential': {'id': 'a', 'secret': 's'}})
    assert session.server_id == SERVER_ID


def test_a_404_during_a_handoff_is_no_lost_lease(session, http):
    session.server_id = SERVER_ID
    http.post(ACTION, status_code=404, json={'itemNotFound': {'code': 404, 'message': 'gone'}})
    session._moving = True
    with pytest.raises(errors.HTTPError) as caught:
        session.heartbeat()
    assert not isinstance(caught.value, errors.LeaseLost)


def test_the_lease_keeper_follows_a_handoff(session, http, destination, monkeypatch):
    monkeypatch.setattr(lease_mod, 'MIN_INTERVAL', 0.01)
    session.server_id, session.server = SERVER_ID, server()
    http.get(SERVER, [{'json': {'server': server(metadata={'cloudlet_lease_seconds': '60'})}},
                      {'status_code': 404, 'json': {'itemNotFound': {'code': 404, 'message': 'gone'}}}])
    # The keeper's first beats go to the source (renewed), then the source is gone (404).
    http.post(ACTION, [{'json': {'lease': {'seconds': 60, 'expires_at': '2030-01-01T00:01:00Z'}}},
                       {'status_code': 202, 'json': {'handoff_id': 'h-3'}},
                       {'status_code': 404, 'json': {'itemNotFound': {'code': 404, 'message': 'gone'}}}])
    keeper = session.keep_alive(interval=3600)          # no beat of its own during the test
    moved = {'id': NEW_ID, 'name': 'app', 'status': 'ACTIVE', 'metadata': {'cloudlet_handoff_id': 'h-3'}}
    http.get(NOVA + '/servers/%s/os-instance-actions' % SERVER_ID, json={'instanceActions': []})
    http.get(DEST_NOVA + '/servers/detail', json={'servers': [moved]})
    http.post(DEST_NOVA + '/servers/%s/action' % NEW_ID,
              json={'lease': {'seconds': 60, 'expires_at': '2030-01-01T00:02:00Z'}})
    keeper.beat_once()                                  # a heartbeat on the source, before the move
    session.handoff(destination)
    assert keeper.alive and keeper.error is None
    assert bodies(http, 'POST', DEST_NOVA + '/servers/%s/action' % NEW_ID) == [
        {'cloudlet-heartbeat': {'seconds': 60}}]
    assert keeper.lease == lease_mod.Lease(60, '2030-01-01T00:02:00Z')
    keeper.stop()
