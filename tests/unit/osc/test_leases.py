"""openstack cloudlet server lease | heartbeat."""

import datetime
import json

from osc_lib import exceptions
import pytest

from cloudlet_osc.v1 import leases
from tests.unit.osc.conftest import bodies
from tests.unit.osc.conftest import NOVA
from tests.unit.osc.conftest import run
from tests.unit.osc.conftest import server
from tests.unit.osc.conftest import SERVER_ID
from tests.unit.osc.test_plugin import _keystone
from tests.unit.osc.test_plugin import AUTH_ENV

ACTION = NOVA + '/servers/%s/action' % SERVER_ID


def _in(seconds):
    moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def test_lease_shows_the_servers_metadata(app, nova):
    expires = _in(100)
    nova.get(NOVA + '/servers/detail', json={'servers': [server(metadata={
        'cloudlet_lease_seconds': '120', 'cloudlet_lease_expires_at': expires})]})
    shown = run(app, leases.ShowLease, 'app', '-f', 'json')
    assert (shown['server_id'], shown['name'], shown['seconds'], shown['expires_at']) == \
        (SERVER_ID, 'app', 120, expires)
    assert 95 <= shown['remaining_seconds'] <= 100


def test_a_run_out_lease_shows_negative_seconds(app, nova):
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server(metadata={
        'cloudlet_lease_seconds': '60', 'cloudlet_lease_expires_at': _in(-30)})})
    assert -35 <= run(app, leases.ShowLease, SERVER_ID, '-f', 'json')['remaining_seconds'] <= -30


def test_lease_of_a_server_without_one(app, nova):
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    with pytest.raises(exceptions.CommandError, match='^server %s has no lease \\(--seconds N starts one\\)$'
                       % SERVER_ID):
        run(app, leases.ShowLease, SERVER_ID)


def test_lease_seconds_sets_it_through_a_heartbeat(app, nova):
    expires = _in(300)
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, json={'lease': {'seconds': 300, 'expires_at': expires}})
    shown = run(app, leases.ShowLease, SERVER_ID, '--seconds', '300', '-f', 'json')
    assert bodies(nova, 'POST', ACTION) == [{'cloudlet-heartbeat': {'seconds': 300}}]
    assert (shown['seconds'], shown['expires_at']) == (300, expires)


def test_lease_seconds_must_be_positive(app):
    with pytest.raises(SystemExit):
        run(app, leases.ShowLease, SERVER_ID, '--seconds', '0')


def test_heartbeat_renews(app, nova):
    expires = _in(120)
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, json={'lease': {'seconds': 120, 'expires_at': expires}})
    shown = run(app, leases.HeartbeatServer, SERVER_ID, '-f', 'json')
    assert bodies(nova, 'POST', ACTION) == [{'cloudlet-heartbeat': {}}]
    assert (shown['seconds'], shown['expires_at']) == (120, expires)


def test_heartbeat_refused(app, nova):
    message = 'server %s has no lease: give "seconds" to start one' % SERVER_ID
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, status_code=409, json={'conflictingRequest': {'code': 409, 'message': message}})
    with pytest.raises(exceptions.CommandError) as caught:
        run(app, leases.HeartbeatServer, SERVER_ID)
    assert str(caught.value) == message + ' (HTTP 409)'


def test_openstack_server_lease_seconds(openstack):
    expires = _in(90)
    rc, out, err, seen = openstack(
        ['cloudlet', 'server', 'lease', SERVER_ID, '--seconds', '90', '-f', 'json'],
        answers=[_keystone(),
                 {'method': 'GET', 'url': NOVA + '/servers/' + SERVER_ID, 'json': {'server': server()}},
                 {'method': 'POST', 'url': ACTION, 'json': {'lease': {'seconds': 90, 'expires_at': expires}}}],
        env=AUTH_ENV)
    assert rc == 0, err
    shown = json.loads(out)
    assert (shown['server_id'], shown['seconds'], shown['expires_at']) == (SERVER_ID, 90, expires)
    [call] = [r for r in seen if r['method'] == 'POST' and r['url'] == ACTION]
    assert call['json'] == {'cloudlet-heartbeat': {'seconds': 90}}
    assert call['headers']['OpenStack-API-Version'] == 'compute 2.96'
