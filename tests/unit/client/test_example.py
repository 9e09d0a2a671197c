"""examples/mobile_backend.py runs the whole journey (on requests-mock, a fake link and a local listener)."""

import importlib.util
import os
import socket

import pytest

from cloudlet_client import discovery
from cloudlet_client import lease as lease_mod
from cloudlet_client import ranking
from cloudlet_engine import advert
from tests.unit.client.conftest import AUTH_URL
from tests.unit.client.conftest import BASE_ID
from tests.unit.client.conftest import negotiation
from tests.unit.client.conftest import NOVA
from tests.unit.client.conftest import SERVER_ID

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
URL = 'https://overlays.example/app.clo'


@pytest.fixture
def example():
    spec = importlib.util.spec_from_file_location('mobile_backend',
                                                  os.path.join(ROOT, 'examples', 'mobile_backend.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app_port():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_the_journey_from_discovery_to_release(example, http, app_port, monkeypatch, capsys):
    edge = discovery.Cloudlet('edge-1', ('192.0.2.1',), 80, advert.Advert(AUTH_URL, 'RegionOne', '1.1',
                                                                          (BASE_ID[:12],), False, 4096, 4))
    monkeypatch.setattr(discovery, 'browse', lambda timeout: [edge])
    monkeypatch.setattr(ranking, 'measure_rtt', lambda url: 0.0012)
    monkeypatch.setattr(lease_mod, 'MIN_INTERVAL', 0.01)
    monkeypatch.setenv('OS_APPLICATION_CREDENTIAL_ID', 'ac1')
    monkeypatch.setenv('OS_APPLICATION_CREDENTIAL_SECRET', 'shh')
    server = {'id': SERVER_ID, 'name': 'mobile-app', 'status': 'ACTIVE', 'OS-EXT-STS:task_state': None,
              'metadata': {'cloudlet_lease_seconds': '30', 'cloudlet_lease_expires_at': '2030-01-01T00:00:30Z'},
              'addresses': {'private': [{'addr': '127.0.0.1', 'OS-EXT-IPS:type': 'floating'}]}}
    http.post(NOVA + '/os-cloudlet/negotiate', json=negotiation())
    http.post(NOVA + '/servers', status_code=202, json={'server': {'id': SERVER_ID}})
    http.get(NOVA + '/servers/' + SERVER_ID, json={'server': server})
    http.post(NOVA + '/servers/%s/action' % SERVER_ID,
              json={'lease': {'seconds': 30, 'expires_at': '2030-01-01T00:00:30Z'}})
    http.delete(NOVA + '/servers/' + SERVER_ID, status_code=204)
    rc = example.main([URL, '--trust', 'keystone.test', '--app-port', str(app_port), '--lease', '30',
                       '--heartbeats', '2', '--heartbeat-interval', '0.02', '--discover-timeout', '0.1'])
    out = capsys.readouterr().out
    assert rc == 0, out
    steps = [line.split()[0] for line in out.splitlines()]
    assert steps == ['discover', 'rank', 'negotiate', 'synthesize', 'active', 'address', 'reachable',
                     'heartbeats', 'release', 'total']
    assert 'best: edge-1 (1.2 ms, base unknown)' in out
    assert '127.0.0.1:%d answers' % app_port in out
    beats = [r for r in http.request_history if r.url.endswith('/action')]
    assert len(beats) >= 2 and all(r.json() == {'cloudlet-heartbeat': {}} for r in beats)
    assert [r.method for r in http.request_history if r.url == NOVA + '/servers/' + SERVER_ID][-1] == 'DELETE'


def test_nowhere_to_run(example, monkeypatch, capsys):
    monkeypatch.setattr(discovery, 'browse', lambda timeout: [])
    assert example.main([URL, '--discover-timeout', '0.1']) == 1
    assert 'FAILED: nowhere to run url %s (no cloudlet answered and no fallback cloud)' % URL in \
        capsys.readouterr().out
