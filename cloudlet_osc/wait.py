"""--wait: fetch a resource again and again until it is finished, or give up."""

import time

from osc_lib import exceptions

POLL_INTERVAL = 2.0
# Module attributes, so that tests can run the loop without real time passing.
sleep = time.sleep
clock = time.monotonic


def _seconds(text):
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def add_arguments(parser, what, default_timeout):
    parser.add_argument('--wait', action='store_true', help='Wait until %s' % what)
    parser.add_argument('--timeout', metavar='<seconds>', type=_seconds, default=default_timeout,
                        help='With --wait: give up after this many seconds (default: %d)'
                             % default_timeout)


def until(fetch, finished, timeout, what, interval=POLL_INTERVAL):
    """The first fetch() result for which finished(result) is true; CommandError after `timeout` s."""
    deadline = clock() + timeout
    while True:
        resource = fetch()
        if finished(resource):
            return resource
        if clock() >= deadline:
            raise exceptions.CommandError('gave up waiting for %s after %d s' % (what, timeout))
        sleep(interval)
