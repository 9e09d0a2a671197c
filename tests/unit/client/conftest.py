"""Fixtures of the client library's tests: a mocked Keystone + nova + Glance + Neutron, a fake zeroconf."""

from keystoneauth1 import fixture as ksa_fixture
from keystoneauth1.identity import v3
from keystoneauth1 import session as ksa_session
import pytest
import requests_mock

from cloudlet_client import cloud as cloud_mod
from cloudlet_client import reach
from cloudlet_client import session as session_mod
from cloudlet_engine import advert
from cloudlet_engine import format as overlay_format

AUTH_URL = 'http://keystone.test/v3'
NOVA = 'http://nova.test/compute/v2.1'
GLANCE = 'http://glance.test'
NEUTRON = 'http://neutron.test'
SERVER_ID = '6f1c5a8e-3b0e-4c1a-9d55-0e6a1f1b2c3d'
BASE_ID = 'ab' * 32
BASE_IMAGE_ID = '11111111-2222-3333-4444-555555555555'


def catalog_token():
    token = ksa_fixture.V3Token()
    token.add_service('compute', name='nova').add_standard_endpoints(public=NOVA, region='RegionOne')
    token.add_service('image', name='glance').add_standard_endpoints(public=GLANCE, region='RegionOne')
    token.add_service('network', name='neutron').add_standard_endpoints(public=NEUTRON, region='RegionOne')
    return token


@pytest.fixture
def http():
    """requests-mock with Keystone (its catalog: NOVA, GLANCE, NEUTRON in RegionOne)."""
    with requests_mock.Mocker() as mock:
        mock.post(AUTH_URL + '/auth/tokens', json=catalog_token(), headers={'X-Subject-Token': 'fake-token'})
        yield mock


def ksa(auth_url=AUTH_URL):
    auth = v3.Password(auth_url=auth_url, username='demo', password='secret', project_name='demo',
                       user_domain_id='default', project_domain_id='default')
    return ksa_session.Session(auth=auth)


@pytest.fixture
def cloud(http):
    return cloud_mod.Cloud(ksa(), 'RegionOne', 'public', name='edge-1', keystone_url=AUTH_URL)


@pytest.fixture(autouse=True)
def no_real_waiting(monkeypatch):
    """The library's polling loops run without sleeping; `naps` counts them."""
    naps = []
    monkeypatch.setattr(session_mod, 'sleep', naps.append)
    monkeypatch.setattr(reach, 'sleep', naps.append)
    return naps


def write_overlay(path, base_id=BASE_ID, codec='zstd', padding=0):
    """An overlay header + trailer against `base_id` (`codec=None`: a header that does not say it)."""
    meta = {'base_id': base_id, 'base_name': 'demo-base', 'disk_size': 1 << 20, 'memory_size': 4096}
    if codec:
        meta['codec'] = codec
    with open(path, 'wb') as f:
        overlay_format.OverlayWriter(f, meta).finish()
        f.write(b'\0' * padding)
    return str(path)


def txt(**changes):
    """TXT properties of a good advert (bytes, as zeroconf gives them), with `changes`."""
    record = advert.encode(advert.Advert('http://keystone.test/v3', 'RegionOne', '1.1', (BASE_ID[:12],),
                                         free_ram_mb=4096, free_vcpus=4))
    record.update(changes)
    return {k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in record.items()
            if v is not None}


def negotiation(acceptable=True, reason=None):
    return {'negotiation': {'acceptable': acceptable, 'reason': reason, 'base_id': BASE_ID,
                            'base_image_id': BASE_IMAGE_ID, 'flavor_id': 'c1.base', 'estimated_seconds': 4.5,
                            'format_version': 1, 'codec': 'zstd'}}
