"""openstack cloudlet discover: a ranked table of what answered; no credentials."""

import json

from osc_lib import exceptions
import pytest

from cloudlet_client import discovery
from cloudlet_client import ranking
from cloudlet_engine import advert
from cloudlet_osc.v1 import discover
from tests.unit.osc.conftest import run

BASE_ID = 'ab' * 32


def cloudlet(name, bases=(), more=False):
    return discovery.Cloudlet(name, ('192.0.2.1',), 5000, advert.Advert(
        'http://%s.test:5000/v3' % name, 'RegionOne', '1.1', tuple(bases), more, 2048, 3))


@pytest.fixture
def link(monkeypatch):
    """browse() answers `found` (set by the test); the RTT of cloudlet X is rtts[X]."""
    state = {'found': [], 'rtts': {}, 'timeouts': []}

    def browse(timeout):
        state['timeouts'].append(timeout)
        return state['found']
    monkeypatch.setattr(discovery, 'browse', browse)
    monkeypatch.setattr(ranking, 'measure_rtt', lambda url: state['rtts'][url.split('//')[1].split('.')[0]])
    return state


def test_discover_lists_the_cloudlets_best_first(app, link):
    link['found'] = [cloudlet('far', [BASE_ID[:12]]), cloudlet('near', ['cd' * 6], more=True),
                     cloudlet('silent')]
    link['rtts'] = {'far': 0.0123, 'near': 0.0011, 'silent': None}
    rows = run(app, discover.DiscoverCloudlets, '--timeout', '0.5', '-f', 'json')
    assert link['timeouts'] == [0.5]
    assert rows == [
        {'Name': 'near', 'Region': 'RegionOne', 'Keystone': 'http://near.test:5000/v3', 'API': '1.1',
         'Bases': 'cdcdcdcdcdcd,…', 'Free RAM (MB)': 2048, 'vCPUs': 3, 'RTT (ms)': 1.1},
        {'Name': 'far', 'Region': 'RegionOne', 'Keystone': 'http://far.test:5000/v3', 'API': '1.1',
         'Bases': BASE_ID[:12], 'Free RAM (MB)': 2048, 'vCPUs': 3, 'RTT (ms)': 12.3},
        {'Name': 'silent', 'Region': 'RegionOne', 'Keystone': 'http://silent.test:5000/v3', 'API': '1.1',
         'Bases': '', 'Free RAM (MB)': 2048, 'vCPUs': 3, 'RTT (ms)': None}]
    # With a base: the one that advertises it first.
    rows = run(app, discover.DiscoverCloudlets, '--base', BASE_ID, '-f', 'json')
    assert [r['Name'] for r in rows] == ['far', 'near', 'silent']


def test_discover_checks_its_options(app, link):
    with pytest.raises(exceptions.CommandError, match="--base takes a base ID .*not 'xyz'"):
        run(app, discover.DiscoverCloudlets, '--base', 'xyz')
    with pytest.raises(SystemExit):
        run(app, discover.DiscoverCloudlets, '--timeout', '0')


def test_openstack_cloudlet_discover_needs_no_credentials(openstack):
    # The real shell, no OS_* variables and an empty clouds.yaml: browsing the link asks for no auth.
    rc, out, err, seen = openstack(['cloudlet', 'discover', '--timeout', '0.3', '-f', 'json'])
    assert rc == 0, err
    assert isinstance(json.loads(out), list)
    assert seen == []
