"""openstack cloudlet base precache (mocked nova and Placement, fake Glance)."""

from keystoneauth1 import adapter
from osc_lib import exceptions
import pytest

from cloudlet_glance import properties as props
from cloudlet_osc.v1 import precache
from tests.unit.osc.conftest import NOVA
from tests.unit.osc.conftest import run

PLACEMENT = 'http://placement.test'
AGGREGATE = {'id': 7, 'name': 'cloudlet', 'hosts': ['host-b', 'host-a']}
PROVIDERS = {'host-a': 'b1c6a0a4-0000-4000-8000-00000000000a', 'host-b': 'b1c6a0a4-0000-4000-8000-00000000000b'}


@pytest.fixture
def cloud(nova, cloudlet, base):
    """nova: the aggregate, both hosts' services and hypervisors; Placement: each host's traits."""
    _, images = base
    nova.get(NOVA + '/os-aggregates', json={'aggregates': [AGGREGATE]})
    nova.post(NOVA + '/os-aggregates/7/images', status_code=202)
    services = {'host-a': 'up', 'host-b': 'up'}
    nova.get(NOVA + '/os-services', json=lambda request, context: {'services': [
        {'host': host, 'state': state, 'status': 'enabled'} for host, state in services.items()]})
    nova.get(NOVA + '/os-hypervisors/detail', json={'hypervisors': [
        {'id': uuid, 'service': {'host': host}} for host, uuid in PROVIDERS.items()]})
    traits = {host: ['COMPUTE_NODE'] for host in PROVIDERS}
    for host, uuid in PROVIDERS.items():
        nova.get(PLACEMENT + '/resource_providers/%s/traits' % uuid,
                 json=lambda request, context, host=host: {'traits': traits[host]})
    cloudlet.placement = adapter.Adapter(cloudlet.session, endpoint_override=PLACEMENT, raise_exc=False)
    return images, traits, services


def test_precache_asks_nova_for_the_aggregate_and_shows_each_host(app, nova, cloud):
    images, traits, _ = cloud
    traits['host-a'].append(props.cached_image_trait(images.disk_id))
    shown = run(app, precache.PrecacheBase, 'demo-base', '--aggregate', 'cloudlet', '-f', 'json')
    [post] = [r for r in nova.request_history if r.method == 'POST' and 'os-aggregates' in r.url]
    assert post.url == NOVA + '/os-aggregates/7/images'
    assert post.json() == {'cache': [{'id': images.disk_id}]}
    assert post.headers['OpenStack-API-Version'] == 'compute 2.81'
    assert shown == [{'host': 'host-a', 'base': 'demo-base', 'image_id': images.disk_id, 'status': 'cached'},
                     {'host': 'host-b', 'base': 'demo-base', 'image_id': images.disk_id, 'status': 'pending'}]


def test_wait_polls_until_every_host_that_is_up_holds_the_base(app, nova, cloud, monkeypatch):
    images, traits, services = cloud
    services['host-b'] = 'down'
    polls = []

    def sleep(_seconds):
        polls.append(_seconds)
        if len(polls) == 2:          # host-a reports the base at the third look
            traits['host-a'].append(props.cached_image_trait(images.disk_id))
    monkeypatch.setattr(precache.wait, 'sleep', sleep)
    shown = run(app, precache.PrecacheBase, images.base_id[:12], '--aggregate', '7', '--wait', '-f', 'json')
    assert [(row['host'], row['status']) for row in shown] == [('host-a', 'cached'), ('host-b', precache.SKIPPED)]
    assert len(polls) == 2


def test_wait_names_the_hosts_that_did_not_get_it(app, cloud):
    with pytest.raises(exceptions.CommandError, match='host-a, host-b do.es. not hold every base'):
        run(app, precache.PrecacheBase, 'demo-base', '--aggregate', 'cloudlet', '--wait', '--timeout', '1')


def test_only_bases_are_pre_cached(app, nova, cloud):
    images, _, _ = cloud
    with pytest.raises(Exception, match='not a cloudlet base disk'):
        run(app, precache.PrecacheBase, images.memory_id, '--aggregate', 'cloudlet')
    assert not [r for r in nova.request_history if r.method == 'POST' and 'os-aggregates' in r.url]


def test_an_unknown_aggregate_is_a_clear_error(app, nova, cloud):
    with pytest.raises(exceptions.CommandError, match="no aggregate with a name or ID of 'nowhere'"):
        run(app, precache.PrecacheBase, 'demo-base', '--aggregate', 'nowhere')
