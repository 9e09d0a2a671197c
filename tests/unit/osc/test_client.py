"""CloudletClient against nova's HTTP API (requests-mock): endpoints, microversion, bodies, errors."""

from osc_lib import exceptions
import pytest

from tests.unit.osc.conftest import bodies
from tests.unit.osc.conftest import flavor
from tests.unit.osc.conftest import NOVA
from tests.unit.osc.conftest import server
from tests.unit.osc.conftest import SERVER_ID

IMAGE_ID = 'a1b2c3d4-0000-4000-8000-000000000001'


def test_calls_go_to_the_region_and_interface_endpoint_with_the_microversion(nova, cloudlet):
    nova.get(NOVA + '/os-cloudlet', json={'cloudlet': {'version': '1.0'}})
    assert cloudlet.discover() == {'version': '1.0'}
    request = nova.last_request
    assert request.url == NOVA + '/os-cloudlet'
    assert request.headers['X-Auth-Token'] == 'fake-token'
    assert request.headers['OpenStack-API-Version'] == 'compute 2.96'


def test_create_server_body(nova, cloudlet):
    nova.post(NOVA + '/servers', status_code=202, json={'server': {'id': SERVER_ID}})
    created = cloudlet.create_server('app', IMAGE_ID, '42', networks='none',
                                     metadata={'overlay_url': 'https://o.example/a.clo'})
    assert created['id'] == SERVER_ID
    assert bodies(nova, 'POST', NOVA + '/servers') == [{'server': {
        'name': 'app', 'imageRef': IMAGE_ID, 'flavorRef': '42', 'networks': 'none',
        'metadata': {'overlay_url': 'https://o.example/a.clo'}}}]


def test_create_overlay_action_body(nova, cloudlet):
    nova.post(NOVA + '/servers/%s/action' % SERVER_ID, status_code=202, json={'image_id': IMAGE_ID})
    assert cloudlet.create_overlay(SERVER_ID, 'app-overlay', {'app': 'demo'}, 'xz') == IMAGE_ID
    assert bodies(nova, 'POST', NOVA + '/servers/%s/action' % SERVER_ID) == [{
        'cloudlet-create-overlay': {'name': 'app-overlay', 'metadata': {'app': 'demo'},
                                    'options': {'codec': 'xz'}}}]


def test_nova_fault_message_becomes_the_exception_message(nova, cloudlet):
    message = ("Cannot 'cloudlet-create-overlay' instance %s while it is in vm_state stopped" % SERVER_ID)
    nova.post(NOVA + '/servers/%s/action' % SERVER_ID, status_code=409,
              json={'conflictingRequest': {'code': 409, 'message': message}})
    with pytest.raises(exceptions.Conflict) as caught:
        cloudlet.create_overlay(SERVER_ID, 'x')
    assert str(caught.value) == message + ' (HTTP 409)'


def test_error_without_a_json_body_keeps_its_text(nova, cloudlet):
    nova.get(NOVA + '/os-cloudlet', status_code=502, text='<html>\n Bad   gateway </html>')
    with pytest.raises(exceptions.ClientException) as caught:
        cloudlet.discover()
    assert caught.value.code == 502
    assert caught.value.message == '<html> Bad gateway </html>'


def test_find_server_by_id(nova, cloudlet):
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    assert cloudlet.find_server(SERVER_ID)['id'] == SERVER_ID


def test_find_server_by_exact_name_among_regex_matches(nova, cloudlet):
    # nova's name filter is a regex: "app" also matches "app-2".
    nova.get(NOVA + '/servers/detail', json={'servers': [server(name='app-2', id='other'), server()]})
    assert cloudlet.find_server('app')['id'] == SERVER_ID
    assert nova.last_request.qs == {'name': ['app']}


def test_find_server_ambiguous_and_missing(nova, cloudlet):
    nova.get(NOVA + '/servers/detail', json={'servers': [server(id='one'), server(id='two')]})
    with pytest.raises(exceptions.CommandError, match="more than one server is named 'app' \\(one, two\\)"):
        cloudlet.find_server('app')
    nova.get(NOVA + '/servers/detail', json={'servers': []})
    with pytest.raises(exceptions.NotFound, match="no server with a name or ID of 'app' exists"):
        cloudlet.find_server('app')


def test_find_flavor_by_id_then_by_name(nova, cloudlet):
    nova.get(NOVA + '/flavors/c1.base', status_code=404,
             json={'itemNotFound': {'code': 404, 'message': 'Flavor c1.base could not be found.'}})
    nova.get(NOVA + '/flavors/detail', json={'flavors': [flavor('7', 'c1.base', 64, 2, 1)]})
    assert cloudlet.find_flavor('c1.base')['id'] == '7'
    assert nova.last_request.qs == {'is_public': ['none']}


def test_list_flavors_follows_pages(nova, cloudlet):
    nova.get(NOVA + '/flavors/detail', [
        {'json': {'flavors': [flavor('1', 'a', 64, 1, 1)],
                  'flavors_links': [{'rel': 'next', 'href': NOVA + '/flavors/detail?marker=1'}]}},
        {'json': {'flavors': [flavor('2', 'b', 64, 2, 1)]}},
    ])
    assert [f['id'] for f in cloudlet.list_flavors()] == ['1', '2']
    assert nova.last_request.qs == {'marker': ['1']}


def test_base_import_calls(nova, cloudlet):
    record = {'id': IMAGE_ID, 'status': 'queued'}
    nova.post(NOVA + '/os-cloudlet/bases', status_code=202, json={'base': record})
    nova.get(NOVA + '/os-cloudlet/bases', json={'bases': [record]})
    nova.get(NOVA + '/os-cloudlet/bases/' + IMAGE_ID, json={'base': record})
    nova.delete(NOVA + '/os-cloudlet/bases/' + IMAGE_ID, status_code=204)
    assert cloudlet.import_base('https://h.example/b.zip', name='demo') == record
    assert bodies(nova, 'POST', NOVA + '/os-cloudlet/bases') == [
        {'base': {'url': 'https://h.example/b.zip', 'name': 'demo', 'visibility': 'private'}}]
    assert cloudlet.list_base_imports() == [record]
    assert cloudlet.get_base_import(IMAGE_ID) == record
    assert cloudlet.delete_base_import(IMAGE_ID) is None
    assert nova.last_request.method == 'DELETE'


def test_images_is_glance_through_the_same_session(nova):
    from keystoneauth1 import session as ksa_session

    from cloudlet_glance import images
    from cloudlet_osc import client as client_mod
    session = ksa_session.Session()
    client = client_mod.CloudletClient(session, region_name='RegionTwo', interface='internal')
    assert isinstance(client.images, images.GlanceClientImages)
    assert client.images is client.images
    http = client.images._client.http_client
    assert http.session is session
    assert (http.region_name, http.interface) == ('RegionTwo', 'internal')
