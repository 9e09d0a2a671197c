"""The lease rules, on plain values: what may be asked for, when a lease runs out."""

import datetime

from cloudlet_glance import properties as props

TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'


class BadLease(ValueError):
    """A lease value a user may not ask for; the message names the bounds."""


def parse_seconds(value, min_seconds, max_seconds):
    """The lease length in `value` (metadata string or JSON integer), within the bounds; BadLease."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadLease('%s must be a whole number of seconds' % props.META_LEASE_SECONDS)
    text = str(value).strip()
    if not text.isdigit() or len(text) > 9:
        raise BadLease('%s must be a whole number of seconds, not %r'
                       % (props.META_LEASE_SECONDS, str(value)[:20]))
    seconds = int(text)
    if not min_seconds <= seconds <= max_seconds:
        raise BadLease('%s must be between %d and %d seconds on this cloud, not %d'
                       % (props.META_LEASE_SECONDS, min_seconds, max_seconds, seconds))
    return seconds


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def expires_at(seconds, start=None):
    """When a lease of `seconds` taken at `start` (default: now) runs out, as stored."""
    return ((start or now()) + datetime.timedelta(seconds=seconds)).strftime(TIME_FORMAT)


def parse_time(text):
    """A stored expiry as an aware datetime; None when it is not one."""
    try:
        return datetime.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def overdue(metadata, grace_seconds, at=None):
    """Seconds since the server's lease ran out beyond the grace period (> 0: reap it).

    None when the server has no lease this code can read: it is never reaped then.
    """
    if not metadata or props.META_LEASE_SECONDS not in metadata:
        return None
    ends = parse_time(metadata.get(props.META_LEASE_EXPIRES_AT))
    if ends is None:
        return None
    return ((at or now()) - ends).total_seconds() - grace_seconds


def lease_view(metadata, at=None):
    """{'seconds', 'expires_at', 'remaining_seconds'} of a leased server's metadata, or None."""
    if not metadata or props.META_LEASE_SECONDS not in metadata:
        return None
    ends = parse_time(metadata.get(props.META_LEASE_EXPIRES_AT))
    try:
        seconds = int(metadata[props.META_LEASE_SECONDS])
    except ValueError:
        return None
    remaining = None if ends is None else max(0, int((ends - (at or now())).total_seconds()))
    return {'seconds': seconds, 'expires_at': metadata.get(props.META_LEASE_EXPIRES_AT),
            'remaining_seconds': remaining}
