"""The cloudlet test guest's app (guest/www): HTTP on [cloudlet] app_port, answers
`key=value` lines (/cgi-bin/state: bootid, ram, disk, app, counter).
"""

import http.client
import socket
import time


class Unreachable(Exception):
    pass


def get(address, port, path, timeout):
    """GET `path` until the app answers 200 or `timeout` s pass; the answer as a dict."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _get_once(address, port, path, read_timeout=max(5.0, deadline - time.monotonic()))
        except OSError as exc:
            if time.monotonic() > deadline:
                raise Unreachable('http://%s:%d%s did not answer within %d s: %s'
                                  % (address, port, path, timeout, exc)) from exc
            time.sleep(0.5)


def _get_once(address, port, path, read_timeout):
    # A short connect timeout: a SYN lost while the guest's NIC comes up is
    # retried at once; the read may take long (the app's install runs ~15 s under TCG).
    sock = socket.create_connection((address, port), timeout=1.0)
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
