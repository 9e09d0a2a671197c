"""Wait until an app answers: a TCP connect to its address and port, tried again and again."""

import socket
import time

from cloudlet_client import errors

CONNECT_TIMEOUT = 0.5       # short: a SYN lost while the guest joins the network is retried at once
RETRY_DELAY = 0.05
# Module attributes, so that tests run the loop without real time passing.
clock = time.monotonic
sleep = time.sleep


def wait_reachable(host, port, timeout=120.0, connect_timeout=CONNECT_TIMEOUT):
    """Seconds until a TCP connect to (host, port) succeeded; errors.Unreachable after `timeout`."""
    started = clock()
    deadline = started + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=connect_timeout):
                return clock() - started
        except OSError as exc:
            if clock() >= deadline:
                raise errors.Unreachable('%s port %s did not answer within %d s: %s'
                                         % (host, port, timeout, exc)) from exc
        sleep(RETRY_DELAY)
