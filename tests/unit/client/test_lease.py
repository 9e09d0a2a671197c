"""The lease as metadata says, and the keeper thread: every third of the lease, lost on 404, clean stop."""

import datetime
import threading

import pytest

from cloudlet_client import errors
from cloudlet_client import lease as lease_mod


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """Intervals of 50 ms: the keeper's floor is 1 s for real leases."""
    monkeypatch.setattr(lease_mod, 'MIN_INTERVAL', 0.01)


def test_lease_from_metadata_and_remaining():
    lease = lease_mod.Lease.from_metadata({'cloudlet_lease_seconds': '120',
                                           'cloudlet_lease_expires_at': '2030-01-01T00:02:00Z'})
    assert lease == lease_mod.Lease(120, '2030-01-01T00:02:00Z')
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert lease.remaining(now) == 120.0
    assert lease_mod.Lease(1, 'soon').remaining(now) is None
    assert lease_mod.Lease.from_metadata({}) is None
    assert lease_mod.Lease.from_metadata({'cloudlet_lease_seconds': 'x'}) is None


class Beats:
    """A heartbeat that records its calls; the `fail`-th call raises `error`; `calls` wakes a waiter."""

    def __init__(self, errors_at=None):
        self.seen, self.errors_at = [], dict(errors_at or {})
        self.called = threading.Condition()

    def __call__(self, seconds):
        with self.called:
            self.seen.append(seconds)
            self.called.notify_all()
        error = self.errors_at.get(len(self.seen))
        if error:
            raise error
        return lease_mod.Lease(seconds or 30, '2030-01-01T00:00:30Z')

    def wait_for(self, count, timeout=10):
        with self.called:
            assert self.called.wait_for(lambda: len(self.seen) >= count, timeout)


def test_the_keeper_beats_every_interval_and_stops_cleanly():
    beats = Beats()
    keeper = lease_mod.LeaseKeeper(beats, 30, interval=0.05).start()
    assert keeper.interval == 0.05
    beats.wait_for(2)
    keeper.stop()
    assert not keeper.alive and keeper.error is None
    assert beats.seen[:2] == [None, None] and keeper.beats >= 2
    count = len(beats.seen)
    assert len(beats.seen) == count          # nothing after stop()


def test_the_default_interval_is_a_third_of_the_lease_and_a_new_length_goes_first():
    beats = Beats()
    with lease_mod.LeaseKeeper(beats, 90, set_seconds=True) as keeper:
        assert keeper.interval == 30.0
        beats.wait_for(1)
    assert beats.seen == [90] and keeper.lease == lease_mod.Lease(90, '2030-01-01T00:00:30Z')


def test_a_failed_heartbeat_is_tried_again_and_a_lost_lease_stops_the_keeper(caplog):
    beats = Beats({1: errors.HTTPError(503, 'nova is busy'), 3: errors.LeaseLost('server gone')})
    keeper = lease_mod.LeaseKeeper(beats, 3, interval=0.05, set_seconds=True).start()
    beats.wait_for(3)
    keeper.stop()
    assert beats.seen == [3, 3, None]           # the new length is sent until it was taken once
    assert (keeper.beats, keeper.failures, str(keeper.error)) == (1, 1, 'server gone')
    assert any('heartbeat failed (1 so far)' in r.getMessage() for r in caplog.records)


def test_a_lease_of_zero_is_refused():
    with pytest.raises(ValueError):
        lease_mod.LeaseKeeper(lambda s: None, 0)
