"""BaseWeigher: hosts holding the requested base first, asked of Placement once per request."""

from unittest import mock

from oslo_config import fixture as config_fixture
import pytest

import nova.conf
from nova import objects
from nova.scheduler import weights
from nova.scheduler.weights import ram
from nova.tests.unit.scheduler import fakes as scheduler_fakes

from cloudlet_glance import properties as props
from cloudlet_nova.scheduler import weigher

CONF = nova.conf.CONF
IMAGE = '5c1d6f0e-8a4b-4f3e-9d2c-1b0a9e8d7c6b'


@pytest.fixture(autouse=True)
def conf():
    objects.register_all()
    fixture = config_fixture.Config(CONF)
    fixture.setUp()
    yield fixture
    fixture.cleanUp()


def _spec(image_id=IMAGE, base=True):
    properties = {props.TRAIT_PROPERTY: 'required'} if base else {}
    image = objects.ImageMeta.from_dict({'id': image_id, 'properties': properties})
    return objects.RequestSpec(image=image)


def _host(name, uuid, free_ram_mb):
    return scheduler_fakes.FakeHostState(name, name, {'uuid': uuid, 'free_ram_mb': free_ram_mb,
                                                      'aggregates': []})


def _placement(status=200, uuids=()):
    answer = mock.Mock(status_code=status)
    answer.json.return_value = {'resource_providers': [{'uuid': u} for u in uuids]}
    client = mock.Mock()
    client.get.return_value = answer
    return mock.patch.object(weigher.report, 'report_client_singleton', return_value=client)


def _order(hosts, spec):
    weighed = weights.HostWeightHandler().get_weighed_objects(
        [ram.RAMWeigher(), weigher.BaseWeigher()], hosts, spec)
    return [w.obj.host for w in weighed]


def test_the_host_holding_the_base_wins_over_more_free_ram():
    hosts = [_host('roomy', 'uuid-roomy', 8000), _host('holder', 'uuid-holder', 1000)]
    with _placement(uuids=['uuid-holder']) as singleton:
        assert _order(hosts, _spec()) == ['holder', 'roomy']
    # One question per request, for the requested image's trait.
    singleton.return_value.get.assert_called_once_with(
        '/resource_providers?required=%s' % props.cached_image_trait(IMAGE), version='1.18')


def test_when_no_host_holds_it_the_stock_weighers_choose():
    hosts = [_host('small', 'uuid-small', 1000), _host('roomy', 'uuid-roomy', 8000)]
    with _placement(status=400):            # "No such trait": never cached anywhere
        assert _order(hosts, _spec()) == ['roomy', 'small']
    with _placement(uuids=['uuid-elsewhere']):     # held by a host Placement found full
        assert _order(hosts, _spec()) == ['roomy', 'small']


def test_placement_down_means_no_preference_not_a_failed_boot():
    hosts = [_host('small', 'uuid-small', 1000), _host('roomy', 'uuid-roomy', 8000)]
    with mock.patch.object(weigher.report, 'report_client_singleton', side_effect=RuntimeError('down')):
        assert _order(hosts, _spec()) == ['roomy', 'small']


def test_other_requests_never_ask_placement():
    hosts = [_host('a', 'uuid-a', 1000), _host('b', 'uuid-b', 2000)]
    with _placement(uuids=['uuid-a']) as singleton:
        _order(hosts, _spec(base=False))
        _order(hosts, objects.RequestSpec(image=objects.ImageMeta.from_dict({'properties': {}})))
    singleton.return_value.get.assert_not_called()


def test_the_multiplier_comes_from_the_option_or_the_aggregate(conf):
    conf.config(base_weight_multiplier=0.0, group='cloudlet')
    hosts = [_host('roomy', 'uuid-roomy', 8000), _host('holder', 'uuid-holder', 1000)]
    with _placement(uuids=['uuid-holder']):
        assert _order(hosts, _spec()) == ['roomy', 'holder']
    aggregate = objects.Aggregate(metadata={weigher.AGGREGATE_KEY: '5'})
    assert weigher.BaseWeigher().weight_multiplier(
        scheduler_fakes.FakeHostState('h', 'h', {'aggregates': [aggregate]})) == 5.0
