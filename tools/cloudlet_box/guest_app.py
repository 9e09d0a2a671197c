"""Reach the test guest's app (HTTP on port 8080, guest/www) the way a phone would:
at the server's floating IP, through the box's Neutron (router, NAT, security group).

This host sits on every box's external network (its br-ex has the gateway
address: network.py), so it stands in for the nearby device. The guest gets
its address from Neutron's DHCP on every NIC, including those nova hot-plugs
after a restore.
"""

import time

from cloudlet_box import cloud
from cloudlet_box import network
from cloudlet_tempest_plugin.common import guest_app as app_http

APP_PORT = network.APP_PORT
Unreachable = app_http.Unreachable


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


def get(address, path, timeout=120):
    """GET `path` from the app at `address`, retrying until it answers; return {key: value}."""
    return app_http.get(address, APP_PORT, path, timeout, connect_timeout=0.5, interval=0.05)


def answers(address, timeout=0.5):
    """True if the app at `address` answers one GET within `timeout` s (no retry): a probe."""
    try:
        app_http.get_once(address, APP_PORT, '/cgi-bin/state', timeout, timeout)
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
