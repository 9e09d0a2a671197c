"""Two Keystone projects: a user of `alt` cannot see or act on `demo`'s server and images."""

import pytest

from cloudlet_box import cloud


@pytest.fixture(scope='module')
def demo_server(base, demo):
    server_id = cloud.create_server(demo, 'e2e-owned-by-demo', base['image_id'])
    assert cloud.wait_server(demo, server_id).status == 'ACTIVE'
    yield server_id
    cloud.delete_server(demo, server_id)


def test_other_project_cannot_see_the_server(alt, demo_server):
    assert alt.compute.get('/servers/%s' % demo_server).status_code == 404


@pytest.mark.parametrize('action', ['cloudlet-create-overlay', 'cloudlet-create-base'])
def test_other_project_cannot_capture_it(alt, demo, demo_server, action):
    reply = alt.compute.post('/servers/%s/action' % demo_server, json={action: {'name': 'stolen'}},
                             microversion=cloud.MICROVERSION)
    assert reply.status_code == 404, reply.text
    assert not list(demo.image.images(name='stolen')) and not list(alt.image.images(name='stolen'))


def test_other_project_cannot_delete_it(alt, demo, demo_server):
    assert alt.compute.delete('/servers/%s' % demo_server).status_code == 404
    assert demo.compute.get_server(demo_server).status == 'ACTIVE'


def test_other_project_cannot_use_the_private_base_or_overlay(alt_cli, base, app_overlay):
    for args in (('base', 'show', base['image_id']), ('overlay', 'show', app_overlay['image_id'])):
        result = alt_cli.run('cloudlet', *args)
        assert result.returncode != 0 and 'Traceback' not in result.stderr, result.stderr
