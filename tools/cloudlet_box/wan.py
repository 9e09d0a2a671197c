"""The emulated WAN path in front of a remote box's public endpoints.

    root namespace                                   namespace clwan-<box>
    client ----> 10.254.88.2:<port> ==veth==> relay (relay.py, delay, cut, counters)
    APIs   <---- 10.254.88.1:<port> <==veth== relay
              clw-<box>-r  tbf              clw-<box>-n  tbf

The namespace, the veth pair and the tbf shaping are netns_link.NetnsLink's
(bench/linkemu.py builds the synthesis bench's link from it too).

The box's Keystone catalog names http://<address>:<port> as its public
endpoints (Box.public_url); its own services use the internal ones
(127.0.0.1), so shaping the WAN never slows the box itself. Every byte a
client exchanges through the public endpoints crosses the veth pair twice,
once in each direction, so both tbf qdiscs (the egress of each end) see it:
the rate limits the sum of both directions' traffic, like one shared link.
netem is not in this kernel: the delay is the relay's (one way, applied in
both directions).

    wan = WanPath(layout.named('box2'))
    wan.up()                        # idempotent: namespace, veth, addresses, relay
    with wan.shaped('5mbit', delay_ms=20):
        ...                         # afterwards: unshaped, no delay, not cut
    wan.cut(); wan.restore(); wan.cut_after(10 << 20); wan.stats()

    python -m cloudlet_box.wan status|up|down|set --rate 25mbit --delay 20|clear|cut|cut-after N|restore [--box box2]
"""

import argparse
import contextlib
import json
import sys

from cloudlet_box import layout
from cloudlet_box import netns_link
from cloudlet_box import processes
from cloudlet_box import relay as relay_mod
from cloudlet_box import services

RELAY = 'wan-relay'
# One error for the path and its link (namespace, veth, tc).
WanError = netns_link.LinkError
rate_bits = netns_link.rate_bits


class WanPath:
    """A remote box's WAN path (layout.Box.wan)."""

    def __init__(self, box):
        if box.wan is None:
            raise WanError('box %s has no WAN path (only remote boxes, port offset > 0)' % box.name)
        self.box = box
        self.layout = box.wan
        lay = self.layout
        self.link = netns_link.NetnsLink(lay.namespace, lay.host_if, lay.peer_if, lay.host_address,
                                         lay.address, lay.prefix)
        self.control_path = box.run / 'wan-relay.sock'
        self.ports = sorted(box.port(service) for service in layout.BASE_PORTS)
        self.changed = False

    @property
    def address(self):
        """The namespace side: what the box's public endpoints name."""
        return self.layout.address

    @property
    def namespace(self):
        return self.layout.namespace

    def url(self, service):
        return self.box.public_url(service)

    # The path.

    def relay_pid(self):
        return processes.pid_of(self.box.run / (RELAY + '.pid'))

    def is_up(self):
        return bool(self.link.namespace_exists() and self.link.link_exists() and self.relay_pid()
                    and self._relay_answers())

    def _relay_answers(self):
        try:
            self.control('stats', timeout=2)
            return True
        except (OSError, ValueError, WanError):
            return False

    def up(self, timeout=15):
        """Create what is missing: namespace, veth pair, addresses, relay. Idempotent;
        an existing path keeps its shaping.
        """
        lay = self.layout
        self.link.up()
        # A relay started before an API was added to the box lacks its port: start it anew.
        if not (self.relay_pid() and self._relay_answers()
                and all(processes.tcp_open(port, lay.address) for port in self.ports)):
            processes.stop(RELAY, self.box.run, grace=5)
            argv = self.link.exec_argv(layout.VENV / 'bin' / 'python', '-m', 'cloudlet_box.relay',
                                       '--listen', lay.address, '--target', lay.host_address,
                                       '--control', self.control_path)
            for port in self.ports:
                argv += ['--port', str(port)]
            processes.start(RELAY, argv, self.box.run, self.box.logs,
                            env={'PYTHONPATH': str(layout.REPO / 'tools')})
            processes.wait_for('the WAN relay of %s' % self.box.name, self._relay_answers, timeout,
                               pid_check=self.relay_pid, log=self.box.logs / (RELAY + '.log'))
        return self

    def down(self):
        """Stop the relay and the box's daemons inside the namespace (its advertiser), delete the
        namespace and the veth pair. Idempotent. A daemon left in a deleted namespace would run on,
        cut off: `tools/box.sh up` starts them again in the new one.
        """
        stopped = processes.stop(RELAY, self.box.run, grace=5)
        inside = self.link.exec_argv()
        for name, service in services.all_services(self.box).items():
            if list(service.argv[:len(inside)]) == inside:
                processes.stop(name, self.box.run, grace=5)
        self.link.down()
        self.control_path.unlink(missing_ok=True)
        return stopped

    # Bandwidth: tc tbf on the egress of both ends.

    def set_rate(self, rate, burst=None, latency=netns_link.LATENCY):
        """Shape both directions to `rate` (tc units, e.g. '25mbit')."""
        self.link.shape(rate, netns_link.BOTH_ENDS, burst, latency)
        self.changed = True

    def clear_rate(self):
        self.link.unshape(netns_link.BOTH_ENDS)

    def rate(self):
        """The shaped rate as tc shows it (e.g. '5Mbit'), or None."""
        return self.link.rate('host')

    # The relay.

    def control(self, cmd, timeout=5.0, **arguments):
        try:
            answer = relay_mod.control(self.control_path, cmd, timeout=timeout, **arguments)
        except (OSError, ValueError) as exc:
            raise WanError('the WAN relay of %s does not answer on %s (%s): `tools/box.sh up` '
                           'with CLOUDLET_BOX=%s' % (self.box.name, self.control_path, exc,
                                                     self.box.name)) from exc
        if not answer.get('ok'):
            raise WanError('relay %s: %s' % (cmd, answer.get('error')))
        return answer

    def set_delay(self, ms):
        """One-way delay in ms, applied to data in both directions (round trip + 2 x ms)."""
        self.changed = True
        return self.control('set_delay', ms=ms)

    def cut(self):
        """Pull the cable: nothing moves, connections stay open."""
        self.changed = True
        return self.control('cut')

    def cut_after(self, up_bytes):
        """Cut once `up_bytes` more bytes went up (client -> box)."""
        self.changed = True
        return self.control('cut_after', up_bytes=int(up_bytes))

    def restore(self):
        return self.control('restore')

    def stats(self):
        """{'up', 'down' (bytes; also as 'up_bytes', 'down_bytes'), 'connections',
        'open_connections', 'delay_ms', 'cut', 'cut_after_remaining', ...}
        """
        return self.control('stats')

    def reset_counters(self):
        return self.control('reset_counters')

    # Together.

    def reset(self):
        """Unshaped, no delay, not cut."""
        self.clear_rate()
        self.control('set_delay', ms=0)
        self.control('restore')
        self.changed = False

    @contextlib.contextmanager
    def shaped(self, rate=None, delay_ms=0):
        """Shape for the block; afterwards unshaped, no delay, not cut."""
        try:
            if rate:
                self.set_rate(rate)
            if delay_ms:
                self.set_delay(delay_ms)
            yield self
        finally:
            self.reset()

    def status(self):
        state = {'box': self.box.name, 'namespace': self.namespace, 'address': self.address,
                 'host_address': self.layout.host_address,
                 'veth': '%s <-> %s' % (self.layout.host_if, self.layout.peer_if),
                 'ports': self.ports, 'relay_pid': self.relay_pid(), 'path_up': self.is_up()}
        if state['path_up']:
            state['rate'] = self.rate() or 'unshaped'
            state.update(self.stats())
            state.pop('ok', None)
        return state


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m cloudlet_box.wan',
                                     description='A remote box\'s emulated WAN path.')
    parser.add_argument('--box', default=None, help='box name (default $CLOUDLET_BOX if that is a '
                        'remote box, else box2)')
    # --box also after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--box', default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest='command', required=True)

    def command(name, help_text):
        return sub.add_parser(name, help=help_text, parents=[common])
    command('status', 'the path, its shaping and the relay counters (JSON)')
    command('up', 'create the path (idempotent)')
    command('down', 'remove the path')
    set_parser = command('set', 'shape: rate and/or one-way delay')
    set_parser.add_argument('--rate', help='tc rate, e.g. 25mbit')
    set_parser.add_argument('--delay', type=float, help='one-way delay, ms')
    command('clear', 'unshaped, no delay, not cut')
    command('cut', 'pull the cable')
    command('cut-after', 'cut after N more bytes went up').add_argument('up_bytes', type=int)
    command('restore', 'plug the cable back')
    command('reset-counters', 'zero the byte and connection counters')
    args = parser.parse_args(argv)
    if args.box:
        box = layout.named(args.box)
    else:
        box = layout.current()
        if not box.remote:
            box = layout.named(layout.BOX2.name)
    try:
        wan = WanPath(box)
    except WanError as exc:
        print('wan: %s' % exc, file=sys.stderr)
        return 2
    try:
        if args.command == 'up':
            wan.up()
        elif args.command == 'down':
            wan.down()
        elif args.command == 'set':
            if args.rate is None and args.delay is None:
                parser.error('set needs --rate and/or --delay')
            if args.rate:
                wan.set_rate(args.rate)
            if args.delay is not None:
                wan.set_delay(args.delay)
        elif args.command == 'clear':
            wan.reset()
        elif args.command == 'cut':
            wan.cut()
        elif args.command == 'cut-after':
            wan.cut_after(args.up_bytes)
        elif args.command == 'restore':
            wan.restore()
        elif args.command == 'reset-counters':
            wan.reset_counters()
    except WanError as exc:
        print('wan: %s' % exc, file=sys.stderr)
        return 1
    print(json.dumps(wan.status(), indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
