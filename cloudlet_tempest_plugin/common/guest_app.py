"""The cloudlet test guest's app (guest/www): HTTP on [cloudlet] app_port, answers
`key=value` lines (/cgi-bin/state: bootid, ram, disk, app, counter).

Also the box's way to the app (tools/cloudlet_box/guest_app.py).
"""

import http.client
import socket
import time


class Unreachable(Exception):
    pass


def get(address, port, path, timeout, connect_timeout=1.0, interval=0.5):
    """GET `path` until the app answers 200 or `timeout` s pass; the answer as a dict."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            # A slow answer (/cgi-bin/install takes ~15 s under TCG) gets all the time
            # left: a retry would start the work over.
            return get_once(address, port, path, connect_timeout, max(5.0, deadline - time.monotonic()))
        except OSError as exc:
            if time.monotonic() > deadline:
                raise Unreachable('http://%s:%d%s did not answer within %d s: %s'
                                  % (address, port, path, timeout, exc)) from exc
            time.sleep(interval)


def get_once(address, port, path, connect_timeout, read_timeout):
    """One GET: a short connect timeout (a SYN lost while the guest is not yet on the
    network is retried at once, not after TCP's backoff), a long read; OSError if no 200.
    """
    sock = socket.create_connection((address, port), timeout=connect_timeout)
    connection = http.client.HTTPConnection(address, port)
    connection.sock = sock
    try:
        sock.settimeout(read_timeout)
        connection.request('GET', path)
        reply = connection.getresponse()
        text = reply.read().decode()
        if reply.status != 200:
            raise OSError('HTTP %d from %s' % (reply.status, path))
        return dict(line.split('=', 1) for line in text.splitlines() if '=' in line)
    finally:
        connection.close()
