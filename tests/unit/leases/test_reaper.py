"""cloudlet_nova.leases.reaper against a fake compute API (requests-mock)."""

import datetime
import logging

from keystoneauth1 import adapter
from keystoneauth1 import session
import pytest
import requests_mock

from cloudlet_nova.leases import reaper

NOVA = 'http://nova.test/v2.1'
T0 = datetime.datetime(2026, 12, 2, 12, 0, 0, tzinfo=datetime.timezone.utc)


def server(sid, ends='2026-12-02T11:58:00Z', seconds='60', task=None, status='ACTIVE', lease=True):
    metadata = {'cloudlet_lease_seconds': seconds, 'cloudlet_lease_expires_at': ends} if lease else {}
    return {'id': sid, 'name': 'vm-' + sid, 'tenant_id': 'p1', 'status': status, 'metadata': metadata,
            'OS-EXT-STS:task_state': task}


@pytest.fixture
def nova():
    with requests_mock.Mocker() as mock:
        yield mock


def make_reaper(grace=30):
    compute = adapter.Adapter(session.Session(), endpoint_override=NOVA)
    return reaper.Reaper(compute, grace, clock=lambda: T0)


def serve(nova, *servers):
    nova.get(NOVA + '/servers/detail', json={'servers': list(servers)})
    for s in servers:
        nova.get(NOVA + '/servers/%s' % s['id'], json={'server': s})
        nova.delete(NOVA + '/servers/%s' % s['id'], status_code=204)


def deleted(nova):
    return sorted(r.path.rsplit('/', 1)[1] for r in nova.request_history if r.method == 'DELETE')


def test_only_leases_past_their_grace_period_are_reaped(nova, caplog):
    caplog.set_level(logging.INFO)
    serve(nova,
          server('a'),                                        # ran out 120 s ago: reap
          server('b', ends='2026-12-02T11:59:40Z'),           # 20 s ago: in the grace period
          server('c', ends='2026-12-02T12:05:00Z'),           # still running
          server('d', lease=False),                           # no lease
          server('e', task='migrating'),                      # a handoff holds it
          server('f', ends='garbage'))                        # unreadable: not attributable
    assert make_reaper(grace=30).pass_once() == ['a']
    assert deleted(nova) == ['a']
    assert 'deleted server a (vm-a) of project p1: its lease of 60 s ran out at 2026-12-02T11:58:00Z' \
        in caplog.text
    listing = nova.request_history[0]
    assert listing.qs['all_tenants'] == ['1']


def test_a_heartbeat_between_listing_and_delete_saves_the_server(nova):
    serve(nova, server('a'))
    nova.get(NOVA + '/servers/a', json={'server': server('a', ends='2026-12-02T12:10:00Z')})
    assert make_reaper().pass_once() == []
    assert deleted(nova) == []


def test_a_server_gone_meanwhile_is_not_an_error(nova):
    serve(nova, server('a'))
    nova.get(NOVA + '/servers/a', status_code=404)
    assert make_reaper().pass_once() == []


@pytest.mark.parametrize('status', [500, 503, 401])
def test_nova_unreachable_or_failing_deletes_nothing(nova, status, caplog):
    nova.get(NOVA + '/servers/detail', status_code=status)
    assert make_reaper().pass_once() == []
    assert deleted(nova) == []
    assert 'nothing reaped, trying again next pass' in caplog.text


def test_connection_refused_deletes_nothing(nova, caplog):
    import requests
    nova.get(NOVA + '/servers/detail', exc=requests.exceptions.ConnectionError('refused'))
    assert make_reaper().pass_once() == []
    assert 'cannot list the servers' in caplog.text


def test_a_failed_delete_is_retried_next_pass(nova, caplog):
    serve(nova, server('a'), server('b'))
    nova.delete(NOVA + '/servers/a', status_code=409)
    assert make_reaper().pass_once() == ['b']
    assert 'server a not reaped this pass' in caplog.text


def test_pages_of_servers_are_all_read(nova, monkeypatch):
    monkeypatch.setattr(reaper, 'PAGE', 2)
    first = [server('a'), server('b', lease=False)]
    second = [server('c')]
    nova.get(NOVA + '/servers/detail', [{'json': {'servers': first}}, {'json': {'servers': second}}])
    for s in first + second:
        nova.get(NOVA + '/servers/%s' % s['id'], json={'server': s})
        nova.delete(NOVA + '/servers/%s' % s['id'], status_code=204)
    assert make_reaper().pass_once() == ['a', 'c']
    assert nova.request_history[1].qs['marker'] == ['b']
