"""An emulated link: a network namespace behind a veth pair, shaped with `tc tbf`.

    root namespace  host_if  host_address/prefix  <== veth ==>  peer_if  peer_address/prefix  namespace
                    tbf 'host': root -> namespace                 tbf 'peer': namespace -> root

Both emulated links use it: a remote box's WAN path (wan.py: both ends shaped,
a delaying relay inside) and the synthesis bench's link (bench/linkemu.py: the
namespace end shaped, an HTTP server inside). netem is not in this kernel, so
tbf on the egress of an end is all the shaping there is.

    link = NetnsLink('clwan-box2', 'clw-box2-r', 'clw-box2-n', '10.254.88.1', '10.254.88.2')
    link.up()                          # idempotent: namespace, veth pair, addresses
    link.shape('25mbit')               # both ends; ends=('peer',) for one direction
    link.unshape(); link.down()        # down removes the namespace and the pair
"""

import pathlib
import re
import subprocess
import time

from cloudlet_box import mounts

LATENCY = '400ms'
# The burst grows with the rate (2 ms worth) so that fast rates are not
# limited by timer resolution; never below 32kbit.
MIN_BURST_BYTES = 4000
BOTH_ENDS = ('host', 'peer')
_UNITS = {'bit': 1, 'kbit': 1e3, 'mbit': 1e6, 'gbit': 1e9, 'tbit': 1e12,
          'bps': 8, 'kbps': 8e3, 'mbps': 8e6, 'gbps': 8e9}
IFNAME_MAX = 15


class LinkError(RuntimeError):
    pass


def rate_bits(rate):
    """'25mbit' -> 25e6 (tc's units; a bare number is bits per second)."""
    match = re.fullmatch(r'\s*([0-9.]+)\s*([a-zA-Z]*)\s*', str(rate))
    unit = match.group(2).lower() if match else None
    if not match or (unit and unit not in _UNITS):
        raise LinkError('bad rate %r: use tc units, e.g. 25mbit, 500kbit, 1gbit' % (rate,))
    return float(match.group(1)) * _UNITS[unit or 'bit']


def default_burst(rate):
    return '%db' % max(MIN_BURST_BYTES, int(rate_bits(rate) * 0.002 / 8))


# Where `ip netns` binds each named network namespace.
NETNS_DIR = pathlib.Path('/run/netns')

# `ip netns add` makes the name's file, then binds the namespace on it: a file
# younger than this may be one being made, not one a reboot left.
STALE_AFTER = 60.0


def namespace_bound(name):
    """True if a network namespace is bound at /run/netns/<name>: not just a file a reboot left."""
    return mounts.is_mount_point(NETNS_DIR / name)


def remove_stale_namespaces():
    """Delete the names in /run/netns that no namespace is bound to any more; return them.

    /run is on disk here, so a reboot leaves the names without their
    namespaces: `ip netns list`, and Neutron's agents, take them for
    namespaces, and `ip netns add` refuses them.
    """
    stale = []
    for path in sorted(NETNS_DIR.glob('*')):
        try:
            old = time.time() - path.lstat().st_mtime > STALE_AFTER
        except FileNotFoundError:
            continue
        if old and not namespace_bound(path.name):
            path.unlink(missing_ok=True)
            stale.append(path.name)
    return stale


def run(*argv, check=True):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if check and result.returncode:
        raise LinkError('%s failed: %s' % (' '.join(map(str, argv)), result.stderr.strip()))
    return result


class NetnsLink:
    """One namespace and the veth pair into it; names are the caller's (unique per user)."""

    def __init__(self, namespace, host_if, peer_if, host_address, peer_address, prefix=30):
        for name in (host_if, peer_if):
            if len(name) > IFNAME_MAX:
                raise LinkError('interface name %r is longer than %d characters' % (name, IFNAME_MAX))
        self.namespace, self.host_if, self.peer_if = namespace, host_if, peer_if
        self.host_address, self.peer_address, self.prefix = host_address, peer_address, prefix

    def namespace_exists(self):
        return namespace_bound(self.namespace)

    def link_exists(self):
        return run('ip', 'link', 'show', 'dev', self.host_if, check=False).returncode == 0

    def exec_argv(self, *argv):
        """`argv` run inside the namespace (`ip netns exec` execs it: same pid)."""
        return ['ip', 'netns', 'exec', self.namespace] + [str(a) for a in argv]

    def up(self):
        """Create what is missing: namespace, veth pair, addresses, links up. Idempotent;
        an existing link keeps its shaping.
        """
        ns = ('ip', '-n', self.namespace)
        if not self.namespace_exists():
            (NETNS_DIR / self.namespace).unlink(missing_ok=True)    # a name a reboot left
            run('ip', 'netns', 'add', self.namespace)
        if not self.link_exists():
            # A stale peer (left by an interrupted run) would block the name.
            run(*ns, 'link', 'delete', self.peer_if, check=False)
            run('ip', 'link', 'add', self.host_if, 'type', 'veth', 'peer', 'name', self.peer_if,
                'netns', self.namespace)
        run('ip', 'addr', 'replace', '%s/%d' % (self.host_address, self.prefix), 'dev', self.host_if)
        run('ip', 'link', 'set', self.host_if, 'up')
        run(*ns, 'addr', 'replace', '%s/%d' % (self.peer_address, self.prefix), 'dev', self.peer_if)
        run(*ns, 'link', 'set', 'lo', 'up')
        run(*ns, 'link', 'set', self.peer_if, 'up')
        return self

    def down(self, timeout=5.0):
        """Remove the veth pair and the namespace, whatever of them exists. Idempotent."""
        if self.link_exists():
            # Deleting one end deletes the pair, at once.
            run('ip', 'link', 'delete', self.host_if, check=False)
        if self.namespace_exists():
            run('ip', 'netns', 'delete', self.namespace, check=False)
        # A peer inside the namespace goes with it, a little later.
        deadline = time.monotonic() + timeout
        while self.link_exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.link_exists():
            run('ip', 'link', 'delete', self.host_if, check=False)

    # Shaping: tbf on the egress of an end ('host': towards the namespace, 'peer': out of it).

    def _tc(self, end, *args, check=True):
        if end == 'host':
            return run('tc', 'qdisc', *args[:1], 'dev', self.host_if, *args[1:], check=check)
        if end == 'peer':
            return run(*self.exec_argv('tc', 'qdisc', *args[:1], 'dev', self.peer_if, *args[1:]),
                       check=check)
        raise ValueError('end %r: host or peer' % (end,))

    def shape(self, rate, ends=BOTH_ENDS, burst=None, latency=LATENCY):
        """Limit the egress of `ends` to `rate` (tc units, e.g. '25mbit')."""
        burst = burst or default_burst(rate)
        for end in ends:
            self._tc(end, 'replace', 'root', 'tbf', 'rate', rate, 'burst', burst, 'latency', latency)

    def unshape(self, ends=BOTH_ENDS):
        for end in ends:
            if 'tbf' in self._tc(end, 'show').stdout:
                self._tc(end, 'del', 'root')

    def qdisc(self, end='peer'):
        return self._tc(end, 'show').stdout.strip()

    def rate(self, end='host'):
        """The shaped rate of `end` as tc shows it (e.g. '5Mbit'), or None."""
        match = re.search(r'qdisc tbf .*?rate (\S+)', self.qdisc(end))
        return match.group(1) if match else None
