"""Reach the test guest's app (HTTP on port 8080, guest/www) the way a phone would:
at the server's floating IP, through the box's Neutron (router, NAT, security group).

This host sits on every box's external network (its br-ex has the gateway
address: network.py), so it stands in for the nearby device. The guest gets
its address from Neutron's DHCP on every NIC, including those nova hot-plugs
after a restore.
"""

import http.client
import socket
import time

from cloudlet_box import cloud
from cloudlet_box import network

APP_PORT = network.APP_PORT


class Unreachable(RuntimeError):
    pass


def floating_ip(conn, server_id, timeout=60):
    """The floating IP of the server's first port: the one it has, else a new one from `public`."""
    deadline = time.monotonic() + timeout
    while True:
        ports = cloud.server_ports(conn, server_id)
        if ports:
            break
        if time.monotonic() > deadline:
            raise Unreachable('server %s has no port' % server_id)
        time.sleep(0.5)
    port = ports[0]
    for address in conn.network.ips(port_id=port.id):
        return address.floating_ip_address
    public = conn.network.find_network(network.PUBLIC, ignore_missing=False)
    return conn.network.create_ip(floating_network_id=public.id,
                                  port_id=port.id).floating_ip_address


def _get_once(address, path, connect_timeout, read_timeout):
    """One GET: a short connect timeout (a SYN lost while the guest is not yet
    on the network is retried at once, not after TCP's backoff), a long read.
    """
    sock = socket.create_connection((address, APP_PORT), timeout=connect_timeout)
    connection = http.client.HTTPConnection(address, APP_PORT)
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


def get(address, path, timeout=120):
    """GET `path` from the app at `address`, retrying until it answers; return {key: value}."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            # A slow answer (/cgi-bin/install takes ~15 s under TCG) gets all
            # the time left: a retry would start the work over.
            return _get_once(address, path, 0.5, max(5.0, deadline - time.monotonic()))
        except OSError as exc:
            if time.monotonic() > deadline:
                raise Unreachable('http://%s:%d%s did not answer within %d s: %s'
                                  % (address, APP_PORT, path, timeout, exc)) from exc
            time.sleep(0.05)


def answers(address, timeout=0.5):
    """True if the app at `address` answers one GET within `timeout` s (no retry): a probe."""
    try:
        _get_once(address, '/cgi-bin/state', timeout, timeout)
        return True
    except OSError:
        return False


def reachable(address, timeout=3.0):
    """True if the app answers at `address` within `timeout`."""
    try:
        get(address, '/cgi-bin/state', timeout=timeout)
        return True
    except Unreachable:
        return False


def app_answers(conn, server_id, *paths, timeout=300):
    """GET each path from the app at the server's floating IP; return the last answer."""
    address = floating_ip(conn, server_id)
    state = None
    for path in paths:
        state = get(address, path, timeout=timeout)
    return state
