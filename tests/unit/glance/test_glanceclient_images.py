"""GlanceClientImages against Glance's HTTP API, mocked with requests-mock.

A real keystoneauth session authenticates (v3 password, mocked Keystone) and
picks the image endpoint from the token's catalog; glanceclient then talks to
that endpoint. The tests check the requests it makes.
"""

import hashlib
import io
import json

from keystoneauth1 import fixture as ksa_fixture
from keystoneauth1.identity import v3
from keystoneauth1 import session as ksa_session
import pytest
import requests_mock

from cloudlet_glance import errors
from cloudlet_glance import images
from cloudlet_glance import properties as props

AUTH_URL = 'http://keystone.test/v3'
GLANCE = 'http://glance-two.test:9292'
IMAGE_ID = '5f0e4f58-5d33-4c0a-8a43-3c4b3b0d5a10'

# The parts of Glance's image schema (GET /v2/schemas/image) glanceclient validates against.
IMAGE_SCHEMA = {
    'name': 'image',
    'properties': {
        'id': {'type': 'string'},
        'name': {'type': ['null', 'string'], 'maxLength': 255},
        'status': {'type': 'string', 'readOnly': True},
        'visibility': {'type': 'string', 'enum': ['community', 'public', 'private', 'shared']},
        'os_hidden': {'type': 'boolean'},
        'protected': {'type': 'boolean'},
        'owner': {'type': ['null', 'string'], 'readOnly': True},
        'checksum': {'type': ['null', 'string'], 'readOnly': True},
        'os_hash_algo': {'type': ['null', 'string'], 'readOnly': True},
        'os_hash_value': {'type': ['null', 'string'], 'readOnly': True},
        'size': {'type': ['null', 'integer'], 'readOnly': True},
        'virtual_size': {'type': ['null', 'integer'], 'readOnly': True},
        'min_ram': {'type': 'integer'},
        'min_disk': {'type': 'integer'},
        'disk_format': {'type': ['null', 'string'], 'enum': [None, 'raw', 'qcow2', 'iso']},
        'container_format': {'type': ['null', 'string'], 'enum': [None, 'bare', 'ovf']},
        'tags': {'type': 'array', 'items': {'type': 'string'}},
        'created_at': {'type': 'string', 'readOnly': True},
        'updated_at': {'type': 'string', 'readOnly': True},
        'self': {'type': 'string', 'readOnly': True},
        'file': {'type': 'string', 'readOnly': True},
        'schema': {'type': 'string', 'readOnly': True},
    },
    'additionalProperties': {'type': 'string'},
    'links': [{'rel': 'self', 'href': '{self}'}, {'rel': 'enclosure', 'href': '{file}'},
              {'rel': 'describedby', 'href': '{schema}'}],
}


def _image(**fields):
    image = {'id': IMAGE_ID, 'name': 'demo-base-memory', 'status': 'queued', 'visibility': 'public',
             'os_hidden': True, 'protected': False, 'owner': 'project-a', 'checksum': None,
             'os_hash_algo': None, 'os_hash_value': None, 'size': None, 'min_ram': 0, 'min_disk': 0,
             'disk_format': 'raw', 'container_format': 'bare', 'tags': [],
             'created_at': '2026-01-01T00:00:00Z', 'updated_at': '2026-01-01T00:00:00Z',
             'self': '/v2/images/' + IMAGE_ID, 'file': '/v2/images/%s/file' % IMAGE_ID,
             'schema': '/v2/schemas/image'}
    image.update(fields)
    return image


@pytest.fixture
def glance():
    """A requests mock with Keystone (two regions in the catalog) and Glance's schema."""
    token = ksa_fixture.V3Token()
    service = token.add_service('image', name='glance')
    service.add_standard_endpoints(public='http://glance-one.test:9292', region='RegionOne')
    service.add_standard_endpoints(public=GLANCE, internal='http://glance-two.internal:9292',
                                   region='RegionTwo')
    with requests_mock.Mocker() as mock:
        mock.post(AUTH_URL + '/auth/tokens', json=token, headers={'X-Subject-Token': 'fake-token'})
        mock.get(GLANCE + '/v2/schemas/image', json=IMAGE_SCHEMA)
        yield mock


@pytest.fixture
def service():
    auth = v3.Password(auth_url=AUTH_URL, username='demo', password='secret', project_name='demo',
                       user_domain_id='default', project_domain_id='default')
    return images.GlanceClientImages(ksa_session.Session(auth=auth), region_name='RegionTwo')


def test_create_sends_properties_as_top_level_fields(glance, service):
    glance.post(GLANCE + '/v2/images', status_code=201, json=_image())
    properties = {props.CLOUDLET_TYPE: props.BASE_MEMORY, props.BASE_ID: 'ab' * 32,
                  props.MIN_RAM: 64, props.MIN_DISK: '2'}
    image_id = service.create('demo-base-memory', properties, visibility='public', hidden=True)
    assert image_id == IMAGE_ID
    request = glance.last_request
    assert request.url == GLANCE + '/v2/images'
    assert request.headers['X-Auth-Token'] == 'fake-token'
    assert request.json() == {
        'name': 'demo-base-memory', 'visibility': 'public', 'os_hidden': True,
        'disk_format': 'raw', 'container_format': 'bare',
        'cloudlet_type': 'cloudlet_base_memory', 'cloudlet_base_id': 'ab' * 32,
        'min_ram': 64, 'min_disk': 2,
    }


def test_upload_streams_the_file_with_its_size(glance, service):
    received = {}

    def put_file(request, context):
        received['body'] = b''.join(request.body)      # glanceclient sends it chunked
        context.status_code = 204
        return ''

    glance.put(GLANCE + '/v2/images/%s/file' % IMAGE_ID, text=put_file)
    data = bytes(range(256)) * 1000
    service.upload(IMAGE_ID, io.BytesIO(data), size=len(data))
    request = glance.last_request
    assert request.method == 'PUT'
    assert request.headers['Content-Type'] == 'application/octet-stream'
    assert request.headers['x-openstack-image-size'] == str(len(data))
    assert received['body'] == data


def test_update_adds_and_replaces_but_never_removes(glance, service):
    current = _image(status='active', **{props.BASE_NAME: 'old', 'unrelated': 'kept'})
    glance.get(GLANCE + '/v2/images/' + IMAGE_ID, json=current)
    glance.patch(GLANCE + '/v2/images/' + IMAGE_ID, json=current)
    service.update(IMAGE_ID, {props.BASE_NAME: 'new', props.MEMORY_BLOCKS: 'pc.ram'})
    patch = [r for r in glance.request_history if r.method == 'PATCH'][0]
    assert patch.headers['Content-Type'] == 'application/openstack-images-v2.1-json-patch'
    operations = sorted(json.loads(patch.text), key=lambda op: op['path'])
    assert operations == [
        {'op': 'replace', 'path': '/cloudlet_base_name', 'value': 'new'},
        {'op': 'add', 'path': '/cloudlet_memory_blocks', 'value': 'pc.ram'},
    ]


def test_get_and_list_return_flat_dicts(glance, service):
    hidden = _image(status='active', **{props.CLOUDLET_TYPE: props.OVERLAY})
    glance.get(GLANCE + '/v2/images/' + IMAGE_ID, json=hidden)
    glance.get(GLANCE + '/v2/images', json={'images': [hidden]})
    image = service.get(IMAGE_ID)
    assert image['os_hidden'] is True and image[props.CLOUDLET_TYPE] == props.OVERLAY
    listed = list(service.list({props.CLOUDLET_TYPE: props.OVERLAY, props.OS_HIDDEN: True}))
    assert [i['id'] for i in listed] == [IMAGE_ID]
    query = glance.last_request.qs
    assert query['cloudlet_type'] == ['cloudlet_overlay'] and query['os_hidden'] == ['true']


def test_errors_are_translated(glance, service):
    text = {'Content-Type': 'text/plain'}
    glance.get(GLANCE + '/v2/images/' + IMAGE_ID, status_code=404, text='no such image', headers=text)
    glance.delete(GLANCE + '/v2/images/' + IMAGE_ID, status_code=403, text='not yours', headers=text)
    with pytest.raises(errors.ImageNotFound, match=IMAGE_ID):
        service.get(IMAGE_ID)
    with pytest.raises(errors.ImageServiceError, match='delete') as caught:
        service.delete(IMAGE_ID)
    assert not isinstance(caught.value, errors.ImageNotFound)


def test_download_streams_and_checks_the_hash(glance, service):
    data = b'overlay bytes ' * 5000
    good = hashlib.sha512(data).hexdigest()
    glance.get(GLANCE + '/v2/images/' + IMAGE_ID,
               json=_image(status='active', size=len(data), os_hash_algo='sha512', os_hash_value=good))
    glance.get(GLANCE + '/v2/images/%s/file' % IMAGE_ID, content=data,
               headers={'Content-Type': 'application/octet-stream', 'Content-Length': str(len(data))})
    out = io.BytesIO()
    assert service.download(IMAGE_ID, out) == len(data)
    assert out.getvalue() == data

    glance.get(GLANCE + '/v2/images/' + IMAGE_ID,
               json=_image(status='active', size=len(data), os_hash_algo='sha512', os_hash_value='0' * 128))
    with pytest.raises(errors.ImageServiceError, match='download'):
        service.download(IMAGE_ID, io.BytesIO())
