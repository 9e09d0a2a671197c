"""choose(): the best cloudlet that accepts, skipping the silent, the untrusted and the refusing; the fallback
cloud (clouds.yaml) when none is left. Credentials: what may be sent where."""

import json

import pytest

from cloudlet_client import credentials as credentials_mod
from cloudlet_client import discovery
from cloudlet_client import errors
from cloudlet_client import journey
from cloudlet_client import overlays
from cloudlet_client import ranking
from cloudlet_engine import advert
from tests.unit.client.conftest import AUTH_URL
from tests.unit.client.conftest import BASE_ID
from tests.unit.client.conftest import catalog_token
from tests.unit.client.conftest import negotiation
from tests.unit.client.conftest import NOVA

URL = 'https://overlays.example/app.clo'
NEGOTIATE = NOVA + '/os-cloudlet/negotiate'
PASSWORD = {'username': 'demo', 'password': 'secret', 'project_name': 'demo', 'user_domain_id': 'default',
            'project_domain_id': 'default'}


def cloudlet(name, keystone=AUTH_URL, region='RegionOne'):
    return discovery.Cloudlet(name, ('192.0.2.1',), 80, advert.Advert(keystone, region, '1.1', (BASE_ID[:12],)))


def ranked(*entries):
    return [ranking.Ranked(c, rtt) for c, rtt in entries]


@pytest.fixture
def clouds_yaml(tmp_path, monkeypatch):
    """A clouds.yaml with the cloud `central` (RegionOne at AUTH_URL) and `edge-a` (another Keystone)."""
    path = tmp_path / 'clouds.yaml'
    path.write_text(json.dumps({'clouds': {
        'central': {'auth_type': 'v3password', 'region_name': 'RegionOne', 'auth': dict(PASSWORD, auth_url=AUTH_URL)},
        'edge-a': {'auth_type': 'v3password', 'region_name': 'RegionOne',
                   'auth': dict(PASSWORD, auth_url='http://keystone.elsewhere/v3')}}}))
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', str(path))
    for name in ('OS_CLOUD', 'OS_AUTH_URL', 'OS_USERNAME', 'OS_PASSWORD', 'OS_PROJECT_NAME', 'OS_REGION_NAME'):
        monkeypatch.delenv(name, raising=False)
    return path


def test_the_best_cloudlet_that_accepts(http):
    http.post(NEGOTIATE, [{'json': negotiation(False, 'no room')}, {'json': negotiation()}])
    credentials = credentials_mod.Credentials(auth=PASSWORD, auth_type='v3password',
                                              trusted_hosts=('keystone.test',))
    entries = ranked((cloudlet('silent'), None), (cloudlet('evil', keystone='http://evil.test/v3'), 0.001),
                     (cloudlet('full'), 0.002), (cloudlet('good'), 0.003), (cloudlet('later'), 0.004))
    session = journey.choose(overlays.Overlay.url(URL), entries, credentials)
    assert session.cloudlet.name == 'good' and session.negotiation.flavor_id == 'c1.base'
    assert not session.fallback
    assert not [r for r in http.request_history if 'evil' in r.url]     # nothing sent to an untrusted host
    assert len([r for r in http.request_history if r.url == NEGOTIATE]) == 2


def test_no_cloudlet_takes_it_and_the_fallback_does(http, clouds_yaml):
    http.post(NEGOTIATE, json=negotiation())
    session = journey.choose(overlays.Overlay.url(URL), [], credentials=None, fallback='central')
    assert session.fallback and session.cloud.name == 'central' and session.cloud.region_name == 'RegionOne'
    assert session.cloud.keystone_url == AUTH_URL
    assert http.request_history[-1].json() == {'overlay_url': URL}


def test_nowhere_to_run_lists_every_reason(http, clouds_yaml):
    http.post(NEGOTIATE, json=negotiation(False, 'base not here'))
    with pytest.raises(errors.NoCloudlet) as caught:
        journey.choose(overlays.Overlay.url(URL), ranked((cloudlet('lone'), 0.001)), credentials=None,
                       fallback='central')
    assert caught.value.tried == [('lone', 'no credentials given'),
                                  ('central', 'central does not accept url %s: base not here' % URL)]
    with pytest.raises(errors.NoCloudlet, match='no cloudlet answered and no fallback cloud'):
        journey.choose(overlays.Overlay.url(URL), [])


def test_discover_ranks_what_answered(monkeypatch, tmp_path):
    from tests.unit.client.conftest import write_overlay
    found = [cloudlet('a'), cloudlet('b')]
    monkeypatch.setattr(discovery, 'browse', lambda timeout: found)
    overlay = overlays.Overlay.file(write_overlay(tmp_path / 'app.clo'))
    result = journey.discover(overlay, probe=lambda url: 0.01)
    assert [(r.cloudlet.name, r.has_base) for r in result] == [('a', True), ('b', True)]


def test_credentials_per_region_must_match_the_advertised_keystone(http, clouds_yaml):
    credentials = credentials_mod.Credentials(clouds={'RegionOne': 'central'})
    cloud = credentials.cloud_for(cloudlet('edge', keystone='http://KEYSTONE.test:80/v3/'))
    assert (cloud.name, cloud.keystone_url) == ('edge', 'http://KEYSTONE.test:80/v3/')
    with pytest.raises(errors.Untrusted, match='advertises keystone http://evil.test/v3, but clouds.yaml cloud '
                                               'central for region RegionOne authenticates at ' + AUTH_URL):
        credentials.cloud_for(cloudlet('evil', keystone='http://evil.test/v3'))
    with pytest.raises(errors.Untrusted, match='no credentials for region Other'):
        credentials.cloud_for(cloudlet('x', region='Other'))


def test_trusted_hosts():
    trusted = ('*.edge.example', '10.20.0.0/16')
    assert credentials_mod.host_trusted('https://ks.edge.example:5000/v3', trusted)
    assert credentials_mod.host_trusted('http://10.20.3.4:5000/v3', trusted)
    assert not credentials_mod.host_trusted('http://10.21.3.4:5000/v3', trusted)
    assert not credentials_mod.host_trusted('http://edge.example.evil/v3', trusted)
    assert credentials_mod.host_trusted('http://anything/v3', ('*',))
    assert not credentials_mod.host_trusted('http://anything/v3', ())
    with pytest.raises(ValueError, match='leave out auth_url'):
        credentials_mod.Credentials(auth={'auth_url': AUTH_URL})
    with pytest.raises(errors.Untrusted, match='is not a trusted host'):
        credentials_mod.Credentials(auth=PASSWORD).cloud_for(cloudlet('x'))


def test_the_application_credential_session_authenticates_at_the_advertised_keystone(http):
    token = catalog_token()
    http.post(AUTH_URL + '/auth/tokens', json=token, headers={'X-Subject-Token': 'app-token'})
    credentials = credentials_mod.Credentials(
        auth={'application_credential_id': 'ac1', 'application_credential_secret': 'shh'},
        trusted_hosts=('keystone.test',))
    cloud = credentials.cloud_for(cloudlet('edge'))
    assert cloud.token() == 'app-token'
    assert http.request_history[-1].json()['auth']['identity'] == {
        'methods': ['application_credential'],
        'application_credential': {'id': 'ac1', 'secret': 'shh'}}
