"""openstack cloudlet base create: the cloudlet-create-base action, and --wait until the base is complete."""

import io

from osc_lib import exceptions
import pytest

from cloudlet_glance import properties as props
from cloudlet_osc.v1 import bases
from cloudlet_osc import wait
from tests.unit.osc.conftest import bodies
from tests.unit.osc.conftest import NOVA
from tests.unit.osc.conftest import run
from tests.unit.osc.conftest import server
from tests.unit.osc.conftest import SERVER_ID
from tests.unit.osc.test_plugin import _keystone
from tests.unit.osc.test_plugin import AUTH_ENV

ACTION = NOVA + '/servers/%s/action' % SERVER_ID


def _target(fake_images):
    """The base disk image nova-api's snapshot creates for the action (queued, filled by the compute host)."""
    return fake_images.create('my-base', {props.CLOUDLET_TYPE: props.BASE_DISK})


def test_create_asks_nova_for_the_action(app, nova, fake_images):
    image_id = _target(fake_images)
    nova.get(NOVA + '/servers/detail', json={'servers': [server()]})
    nova.post(ACTION, status_code=202, json={'image_id': image_id})
    shown = run(app, bases.CreateBase, 'app', '--name', 'my-base', '--property', 'owner=demo', '-f', 'json')
    assert bodies(nova, 'POST', ACTION) == [{'cloudlet-create-base': {'name': 'my-base',
                                                                      'metadata': {'owner': 'demo'}}}]
    assert (shown['id'], shown['name'], shown['status']) == (image_id, 'my-base', 'queued')


def test_create_wait_until_the_disk_image_is_active(app, nova, fake_images, monkeypatch):
    image_id = _target(fake_images)
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, status_code=202, json={'image_id': image_id})
    polls = []

    def compute_host_uploads(seconds):
        polls.append(seconds)
        if len(polls) == 2:
            fake_images.update(image_id, {props.BASE_ID: 'ab' * 32, props.MEMORY_MB: '64', props.VCPUS: '2'})
            fake_images.upload(image_id, io.BytesIO(b'disk' * 1024))
    monkeypatch.setattr(wait, 'sleep', compute_host_uploads)
    shown = run(app, bases.CreateBase, SERVER_ID, '--name', 'my-base', '--wait', '-f', 'json')
    assert (shown['status'], shown['base_id'], shown['memory_mb'], shown['vcpus']) == \
        ('active', 'ab' * 32, 64, 2)
    assert len(polls) == 2


def test_create_wait_when_the_capture_failed(app, nova, fake_images, monkeypatch):
    image_id = _target(fake_images)
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, status_code=202, json={'image_id': image_id})
    monkeypatch.setattr(wait, 'sleep', lambda s: fake_images.images.pop(image_id))
    with pytest.raises(exceptions.CommandError,
                       match='^base disk image %s is gone: capturing server %s failed' % (image_id, SERVER_ID)):
        run(app, bases.CreateBase, SERVER_ID, '--name', 'my-base', '--wait')


def test_openstack_base_create_shows_novas_refusal(openstack):
    message = 'Cannot create a base of server %s while it is in vm_state stopped' % SERVER_ID
    rc, out, err, seen = openstack(
        ['cloudlet', 'base', 'create', SERVER_ID, '--name', 'my-base'],
        answers=[_keystone(),
                 {'method': 'GET', 'url': NOVA + '/servers/' + SERVER_ID, 'json': {'server': server()}},
                 {'method': 'POST', 'url': NOVA + '/servers/%s/action' % SERVER_ID, 'status': 409,
                  'json': {'conflictingRequest': {'code': 409, 'message': message}}}],
        env=AUTH_ENV)
    assert (rc, out, err) == (1, '', message + ' (HTTP 409)\n')
    assert [r['json'] for r in seen if r['method'] == 'POST' and r['url'].startswith(NOVA)] == \
        [{'cloudlet-create-base': {'name': 'my-base'}}]
