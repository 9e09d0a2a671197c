"""cloudlet_nova.discovery.capacity: Placement, Glance and nova-api as requests-mock answers
behind a real keystoneauth session (a catalog with internal and public endpoints).
"""

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import fixture as ksa_fixture
from keystoneauth1.identity import v3
from keystoneauth1 import session as ksa_session
import pytest
import requests
import requests_mock

from cloudlet_glance import properties as props
from cloudlet_nova.discovery import capacity
from tests.unit.glance.test_glanceclient_images import IMAGE_SCHEMA

AUTH_URL = 'http://keystone.test:5000/v3'
PLACEMENT = 'http://placement.internal:8778'
GLANCE = 'http://glance.internal:9292'
NOVA = 'http://nova.internal:8774/v2.1'
RP1, RP2, RP3 = ('rp-%d-0000-4000-8000-000000000000' % i for i in (1, 2, 3))


def _token():
    token = ksa_fixture.V3Token()
    for service_type, internal, public in (
            ('placement', PLACEMENT, 'http://10.0.0.9:8778'),
            ('image', GLANCE, 'http://10.0.0.9:9292'),
            ('compute', NOVA, 'http://10.0.0.9:8774/v2.1'),
            ('identity', 'http://keystone.internal:5000/v3', 'http://10.0.0.9:5000/v3')):
        service = token.add_service(service_type)
        service.add_standard_endpoints(public=public, internal=internal, region='RegionOne')
        service.add_standard_endpoints(public='http://other.test/' + service_type, region='RegionTwo')
    return token


@pytest.fixture
def cloud():
    with requests_mock.Mocker() as mock:
        mock.post(AUTH_URL + '/auth/tokens', json=_token(), headers={'X-Subject-Token': 'service-token'})
        mock.get(GLANCE + '/v2/schemas/image', json=IMAGE_SCHEMA)
        yield mock


def _session():
    auth = v3.Password(auth_url=AUTH_URL, username='nova', password='secret', project_name='service',
                       user_domain_id='default', project_domain_id='default')
    return ksa_session.Session(auth=auth)


@pytest.fixture
def reader(cloud):
    return capacity.CloudReader(_session(), 'RegionOne')


def inventory(total, reserved=0, ratio=1.0, **extra):
    return dict({'total': total, 'reserved': reserved, 'allocation_ratio': ratio, 'min_unit': 1,
                 'max_unit': total, 'step_size': 1}, **extra)


def serve_placement(mock, providers, base=PLACEMENT):
    """providers: {uuid: (inventories, usages)}."""
    mock.get(base + '/resource_providers', json={'resource_providers': [
        {'uuid': uuid, 'name': 'host-' + uuid[:4], 'generation': 1} for uuid in providers]})
    for uuid, (inventories, usages) in providers.items():
        mock.get('%s/resource_providers/%s/inventories' % (base, uuid),
                 json={'inventories': inventories, 'resource_provider_generation': 1})
        mock.get('%s/resource_providers/%s/usages' % (base, uuid),
                 json={'usages': usages, 'resource_provider_generation': 1})


# ------------------------------------------------------------------------- arithmetic

@pytest.mark.parametrize('record, used, free', [
    (inventory(8192), 0, 8192),
    (inventory(8192, reserved=512), 1024, 6656),
    (inventory(4, ratio=16.0), 3, 61),                  # (4 - 0) * 16 - 3
    (inventory(4, reserved=1, ratio=4.0), 2, 10),        # Placement: (total - reserved) * ratio - used
    (inventory(7977, reserved=512, ratio=1.5), 0, 11197),  # int() of 11197.5
    (inventory(2), 5, 0),                                # over-allocated: nothing free, never negative
    (inventory(2, reserved=4), 0, 0),
    (None, 0, 0),                                        # the provider has no such inventory
    ({}, 7, 0),
])
def test_free_amount_is_placement_s_capacity_minus_usage(record, used, free):
    assert capacity.free_amount(record, used) == free


def test_free_capacity_sums_every_provider(cloud, reader):
    serve_placement(cloud, {
        RP1: ({'MEMORY_MB': inventory(16384, reserved=512), 'VCPU': inventory(8, ratio=4.0),
               'DISK_GB': inventory(100)}, {'MEMORY_MB': 4096, 'VCPU': 3, 'DISK_GB': 20}),
        RP2: ({'MEMORY_MB': inventory(2048, ratio=1.5)}, {}),          # no VCPU, nothing used
        RP3: ({'CUSTOM_GPU': inventory(1)}, {'CUSTOM_GPU': 1}),         # a nested provider
    })
    room = reader.free_capacity()
    assert room == capacity.Capacity(free_ram_mb=(16384 - 512 - 4096) + 3072, free_vcpus=32 - 3)
    # The internal endpoint of the region (valid_interfaces' first choice), with the service token.
    urls = [r.url for r in cloud.request_history if 'resource_providers' in r.url]
    assert urls[0] == PLACEMENT + '/resource_providers'
    assert all(url.startswith(PLACEMENT) for url in urls)
    assert all(r.headers['X-Auth-Token'] == 'service-token' for r in cloud.request_history[1:])


def test_no_providers_no_capacity(cloud, reader):
    serve_placement(cloud, {})
    assert reader.free_capacity() == capacity.Capacity(0, 0)


def test_interfaces_and_endpoint_overrides(cloud):
    serve_placement(cloud, {RP1: ({'VCPU': inventory(2)}, {})}, base='http://10.0.0.9:8778')
    public = capacity.CloudReader(_session(), 'RegionOne', interfaces=['public'])
    assert public.free_capacity() == capacity.Capacity(0, 2)
    serve_placement(cloud, {RP1: ({'VCPU': inventory(3)}, {})}, base='http://10.254.88.1:8878')
    direct = capacity.CloudReader(_session(), 'RegionOne',
                                  overrides={'placement': 'http://10.254.88.1:8878'})
    assert direct.free_capacity() == capacity.Capacity(0, 3)


@pytest.mark.parametrize('failure, message', [
    (dict(status_code=503, text='placement is down'), 'Service Unavailable'),
    (dict(status_code=403, json={'errors': [{'title': 'Forbidden'}]}), 'Forbidden'),
    (dict(exc=requests.exceptions.ConnectionError('connection refused')), 'connection refused'),
    (dict(exc=requests.exceptions.ConnectTimeout('timed out')), 'timed out'),
    (dict(text='<html>not json</html>'), 'not JSON'),
    (dict(json={'usages': {'VCPU': 'many'}}), 'unexpected inventories or usages'),
    (dict(json={'something': 'else'}), 'unexpected inventories or usages'),
    (dict(json=['a', 'list']), 'unexpected inventories or usages'),
])
def test_a_placement_failure_is_a_read_error(cloud, reader, failure, message):
    serve_placement(cloud, {RP1: ({'VCPU': inventory(2)}, {})})
    cloud.get('%s/resource_providers/%s/usages' % (PLACEMENT, RP1), **failure)
    with pytest.raises(capacity.ReadError) as caught:
        reader.free_capacity()
    assert message in str(caught.value) and 'Placement resource provider' in str(caught.value)


@pytest.mark.parametrize('answer', [{'resource_providers': [{'name': 'no uuid'}]}, {'providers': []}, []])
def test_a_strange_provider_list_is_a_read_error(cloud, reader, answer):
    cloud.get(PLACEMENT + '/resource_providers', json=answer)
    with pytest.raises(capacity.ReadError, match='unexpected answer'):
        reader.free_capacity()


def test_no_placement_in_the_catalog_is_a_read_error(cloud):
    reader = capacity.CloudReader(_session(), 'RegionThree')
    with pytest.raises(capacity.ReadError, match='Placement resource providers'):
        reader.free_capacity()


def test_keystone_refusing_the_service_user_is_a_read_error(cloud, reader):
    cloud.post(AUTH_URL + '/auth/tokens', status_code=401, json={'error': {'message': 'bad password'}})
    with pytest.raises(capacity.ReadError, match='Placement'):
        reader.free_capacity()


# ------------------------------------------------------------------------- base VMs

def _disk(base_id, name, status='active', **extra):
    image = {'id': 'img-' + name, 'name': name, 'status': status, 'visibility': 'public', 'os_hidden': False,
             'protected': False, 'owner': 'p', 'disk_format': 'raw', 'container_format': 'bare',
             'min_ram': 0, 'min_disk': 0, 'tags': [], 'self': '/v2/images/img-' + name,
             'file': '/v2/images/img-%s/file' % name, 'schema': '/v2/schemas/image',
             props.CLOUDLET_TYPE: props.BASE_DISK, props.BASE_ID: base_id}
    image.update(extra)
    return image


def test_base_short_ids_of_the_active_base_disks(cloud, reader):
    cloud.get(GLANCE + '/v2/images', json={'images': [
        _disk('ab' * 32, 'b-ubuntu'),
        _disk('0123456789' + 'ef' * 27, 'a-debian'),
        _disk('ab' * 32, 'c-ubuntu-again'),                 # the same base imported twice: once
        _disk('cd' * 32, 'd-uploading', status='queued'),    # not held yet
        _disk('not-hex', 'e-broken'),                       # not a base id a host accepts
    ]})
    assert reader.base_short_ids() == ('0123456789ef', 'abababababab')   # by image name
    [listing] = [r for r in cloud.request_history if r.path == '/v2/images']
    assert listing.qs[props.CLOUDLET_TYPE] == [props.BASE_DISK]


def test_no_bases(cloud, reader):
    cloud.get(GLANCE + '/v2/images', json={'images': []})
    assert reader.base_short_ids() == ()


@pytest.mark.parametrize('failure', [dict(status_code=500, text='glance broke',
                                          headers={'Content-Type': 'text/plain'}),
                                     dict(exc=requests.exceptions.ConnectionError('refused'))])
def test_a_glance_failure_is_a_read_error(cloud, reader, failure):
    cloud.get(GLANCE + '/v2/images', **failure)
    with pytest.raises(capacity.ReadError, match='Glance base disk images'):
        reader.base_short_ids()


# ------------------------------------------------------------------------- API version, Keystone

def test_api_version_from_the_discovery_document(cloud, reader):
    cloud.get(NOVA + '/os-cloudlet', json={'cloudlet': {'version': '1.2', 'min_version': '1.0'}})
    assert reader.api_version() == '1.2'


@pytest.mark.parametrize('answer, status', [({'cloudlet': {'version': 'two'}}, 200), ({'cloudlet': {}}, 200),
                                            ({'itemNotFound': {'code': 404}}, 404), ('1.2', 200)])
def test_a_missing_or_odd_api_version_is_a_read_error(cloud, reader, answer, status):
    cloud.get(NOVA + '/os-cloudlet', json=answer, status_code=status)
    with pytest.raises(capacity.ReadError, match='GET /os-cloudlet'):
        reader.api_version()


def test_public_keystone_url_from_the_catalog(cloud, reader):
    assert reader.public_keystone_url() == 'http://10.0.0.9:5000/v3'
    with pytest.raises(capacity.ReadError, match='public'):
        capacity.CloudReader(_session(), 'RegionNine').public_keystone_url()


def test_plain_adapters_work_too():
    with requests_mock.Mocker() as mock:
        serve_placement(mock, {RP1: ({'MEMORY_MB': inventory(1024)}, {'MEMORY_MB': 24})}, base='http://p.test')
        placement = ks_adapter.Adapter(ksa_session.Session(), endpoint_override='http://p.test')
        assert capacity.free_capacity(placement) == capacity.Capacity(1000, 0)
