"""A further compute host's way to what listens in the first host's network namespace.

The host's nova-compute runs in the host's own network namespace
(compute_host.py says why), but what it talks to listens in the root
namespace: RabbitMQ and the box's APIs on loopback, the tests' overlay server
on 127.0.0.2, box2's public endpoints in box2's WAN namespace. This relay
listens at those same addresses inside the host's namespace and connects from
the root namespace: its listening sockets are made inside (setns), its
outgoing ones outside. So every URL in the catalog and the configuration is
the same on both hosts, as it would be with the APIs on a routed network.

    python -m cloudlet_box.host_relay --netns /run/netns/cl-box-c2 \
        --route 127.0.0.1:5672 --route 127.0.0.1:5000 ...

Standard library only (relay.py does the forwarding, without a WAN's delay or small buffers).
"""

import argparse
import ctypes
import os
import signal
import sys

from cloudlet_box import relay as relay_mod

CLONE_NEWNET = 0x40000000


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, 'setns: %s' % os.strerror(errno))


def relay_from(netns, addresses):
    """A relay.Relay listening at each (host, port) inside `netns`, forwarding to the same outside."""
    own = os.open('/proc/self/ns/net', os.O_RDONLY)
    inside = os.open(netns, os.O_RDONLY)
    try:
        _setns(inside)
        try:
            return relay_mod.Relay([(address, address) for address in addresses], small_buffers=False)
        finally:
            _setns(own)
    finally:
        os.close(inside)
        os.close(own)


def parse_route(text):
    host, _, port = text.rpartition(':')
    return host, int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--netns', required=True, help='the network namespace file to listen in')
    parser.add_argument('--route', type=parse_route, action='append', required=True,
                        help='HOST:PORT listened at inside and connected to outside; repeat')
    args = parser.parse_args(argv)
    relay = relay_from(args.netns, args.route)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: relay.stop())
    print('[host-relay] %s: %d routes' % (args.netns, len(args.route)), file=sys.stderr, flush=True)
    relay.serve_forever()
    return 0


if __name__ == '__main__':
    sys.exit(main())
