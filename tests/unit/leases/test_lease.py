"""cloudlet_nova.leases.lease: what may be asked for, and when a lease is over."""

import datetime

import pytest

from cloudlet_nova.leases import lease

T0 = datetime.datetime(2026, 12, 2, 12, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize('value, seconds', [('120', 120), (120, 120), (' 30 ', 30), ('86400', 86400)])
def test_lease_lengths_within_the_bounds(value, seconds):
    assert lease.parse_seconds(value, 30, 86400) == seconds


@pytest.mark.parametrize('value, why', [
    ('abc', 'whole number'), ('-1', 'whole number'), ('1e3', 'whole number'), ('', 'whole number'),
    (True, 'whole number'), (1.5, 'whole number'), (None, 'whole number'), ('9' * 12, 'whole number'),
    ('29', 'between 30 and 86400'), ('86401', 'between 30 and 86400'),
])
def test_bad_lease_lengths_name_the_rule(value, why):
    with pytest.raises(lease.BadLease, match=why):
        lease.parse_seconds(value, 30, 86400)


def test_expiry_round_trips_and_is_utc():
    text = lease.expires_at(90, start=T0)
    assert text == '2026-12-02T12:01:30Z'
    assert lease.parse_time(text) == T0 + datetime.timedelta(seconds=90)
    assert lease.parse_time('tomorrow') is None and lease.parse_time(None) is None


def meta(seconds='60', ends='2026-12-02T12:01:00Z'):
    data = {'cloudlet_lease_seconds': seconds}
    if ends is not None:
        data['cloudlet_lease_expires_at'] = ends
    return data


def test_overdue_counts_from_the_end_of_the_grace_period():
    at = T0 + datetime.timedelta(seconds=100)           # 40 s after the lease ran out
    assert lease.overdue(meta(), 30, at=at) == 10       # reap
    assert lease.overdue(meta(), 45, at=at) == -5       # not yet: grace
    assert lease.overdue(meta(), 0, at=T0) < 0          # still running


def test_what_has_no_readable_lease_is_never_due():
    at = T0 + datetime.timedelta(days=9)
    assert lease.overdue({}, 0, at=at) is None
    assert lease.overdue(None, 0, at=at) is None
    assert lease.overdue({'cloudlet_lease_expires_at': '2026-12-02T12:01:00Z'}, 0, at=at) is None
    assert lease.overdue(meta(ends=None), 0, at=at) is None
    assert lease.overdue(meta(ends='soon'), 0, at=at) is None


def test_lease_view():
    assert lease.lease_view(meta(), at=T0) == {'seconds': 60, 'expires_at': '2026-12-02T12:01:00Z',
                                                'remaining_seconds': 60}
    assert lease.lease_view(meta(), at=T0 + datetime.timedelta(hours=1))['remaining_seconds'] == 0
    assert lease.lease_view({}) is None
