"""A mobile back end's view: raw HTTP, stock POST /v2.1/servers with metadata."""

import requests

from cloudlet_box import cloud
from cloudlet_box import http_serve
from tests.e2e.conftest import app_get
from tests.e2e.conftest import DISK_STATE
from tests.e2e.conftest import RAM_STATE


def post_server(demo, body):
    """POST /v2.1/servers with a bare token, as a back end without an SDK would."""
    endpoint = demo.session.get_endpoint(service_type='compute', interface='public')
    return requests.post(endpoint + '/servers', json={'server': body}, timeout=60, headers={
        'X-Auth-Token': demo.session.get_token(),
        'OpenStack-API-Version': 'compute ' + cloud.MICROVERSION})


def test_post_servers_with_overlay_url(base, app_overlay, demo, servers):
    flavor = demo.compute.find_flavor('m1.tiny', ignore_missing=False)
    with http_serve.serve(app_overlay['path'].parent) as url:
        reply = post_server(demo, {
            'name': 'e2e-backend', 'imageRef': base['image_id'], 'flavorRef': flavor.id,
            'networks': 'auto', 'metadata': {'overlay_url': url + '/' + app_overlay['path'].name}})
        assert reply.status_code == 202, reply.text
        server_id = servers.track(reply.json()['server']['id'])
        server = cloud.wait_server(demo, server_id)
    assert server.status == 'ACTIVE', server.fault
    state = app_get(demo, server_id, '/cgi-bin/state')
    assert (state['ram'], state['disk'], state['bootid']) == (RAM_STATE, DISK_STATE, base['bootid'])


def test_bad_body_is_a_400(base, demo):
    reply = post_server(demo, {'name': 'e2e-bad', 'imageRef': base['image_id'], 'networks': 'none',
                               'metadata': {'overlay_url': 12}})
    assert reply.status_code == 400, reply.text
