"""A leased server, and the thread that keeps its lease alive.

A server created with the metadata ``cloudlet_lease_seconds`` (a whole
number of seconds, as a string) is leased: the cloud deletes it once its
lease has run out (``cloudlet_lease_expires_at``, set by the API, ISO 8601
UTC). The ``cloudlet-heartbeat`` action renews it (and, with ``seconds``,
changes its length). LeaseKeeper sends it every third of the lease, so two
heartbeats may be lost before the lease runs out.
"""

import dataclasses
import datetime
import logging
import threading

from cloudlet_glance import properties as props

from cloudlet_client import errors

LOG = logging.getLogger(__name__)
TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'
MIN_INTERVAL = 1.0


def parse_time(text):
    """An expiry as an aware UTC datetime; None when it is not one."""
    try:
        return datetime.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Lease:
    seconds: int
    expires_at: str            # "YYYY-MM-DDTHH:MM:SSZ"

    @classmethod
    def from_metadata(cls, metadata):
        """The lease in a server's metadata, or None when it has none (or one that does not parse)."""
        metadata = metadata or {}
        text = str(metadata.get(props.META_LEASE_SECONDS, '')).strip()
        if not text.isdigit():
            return None
        return cls(int(text), metadata.get(props.META_LEASE_EXPIRES_AT))

    @classmethod
    def from_answer(cls, answer):
        """From the heartbeat's {"seconds": N, "expires_at": "..."}."""
        return cls(int(answer['seconds']), answer['expires_at'])

    def remaining(self, now=None):
        """Seconds until it runs out (negative once it has), or None without a readable expiry."""
        ends = parse_time(self.expires_at)
        if ends is None:
            return None
        return (ends - (now or utcnow())).total_seconds()


class LeaseKeeper:
    """Heartbeats `beat()` every `interval` seconds (default: a third of the lease) on a daemon thread.

    `beat(seconds)` renews the lease and returns a Lease; `seconds` is None
    except for the first beat when `set_seconds` asks for a new length. A
    failed heartbeat is logged and tried again sooner; errors.LeaseLost (the
    server is gone, or not the caller's) stops the keeper, which then holds
    it in `error`. stop() ends it at once and waits for the thread.
    """

    def __init__(self, beat, seconds, interval=None, set_seconds=False, name='cloudlet-lease'):
        if seconds < 1:
            raise ValueError('a lease lasts at least 1 s')
        self.beat = beat
        self.seconds = int(seconds)
        self.interval = max(MIN_INTERVAL, interval if interval is not None else self.seconds / 3.0)
        self.lease = None          # the last Lease the cloud answered
        self.beats = 0
        self.failures = 0
        self.error = None          # LeaseLost once the cloud no longer knows the server
        self._set_seconds = set_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    @property
    def alive(self):
        return self._thread.is_alive()

    def stop(self, timeout=10.0):
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def resend_seconds(self):
        """Send the lease length with the next heartbeat again (a server that may not have it: a handoff's)."""
        self._set_seconds = True

    def beat_once(self):
        """One heartbeat now; the Lease."""
        seconds = self.seconds if self._set_seconds else None
        lease = self.beat(seconds)
        self._set_seconds = False
        self.lease = lease
        self.beats += 1
        return lease

    def _run(self):
        delay = 0.0 if self._set_seconds else self.interval
        while not self._stop.wait(delay):
            try:
                lease = self.beat_once()
            except errors.LeaseLost as exc:
                self.error = exc
                LOG.warning('lease lost: %s', exc)
                return
            except Exception as exc:          # the network, the cloud: try again sooner
                self.failures += 1
                delay = max(MIN_INTERVAL, self.interval / 3.0)
                LOG.warning('heartbeat failed (%d so far), again in %.0f s: %s', self.failures, delay, exc)
                continue
            LOG.debug('lease renewed: %s s, until %s', lease.seconds, lease.expires_at)
            delay = self.interval
