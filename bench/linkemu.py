"""The synthesis bench's emulated link: files served from a namespace, shaped server -> client.

    root namespace  10.254.77.1/30  <== veth ==>  10.254.77.2/30  namespace clbench-<pid>
                                         tbf on the namespace side: server -> client shaped

(the first /30 of 10.254.77.0/24 whose addresses are free, so that two runs
do not collide; normally the one above; the box's WAN paths use 10.254.88.0/24).

The namespace, the veth pair and the shaping are cloudlet_box.netns_link's,
the same the box's WAN path is made of (tools/ must be on sys.path). This
adds the choice of a free /30 and a static HTTP server inside the namespace.
Everything it made (server process, namespace, veth) is removed by
`close()`, also after a partial setup.
"""

import ipaddress
import os
import socket
import subprocess
import sys
import time

from cloudlet_box import netns_link


def free_pair(network, prefix, taken):
    """(host, peer) addresses of the first /prefix of `network` that `taken`
    (`ip addr` and `ip route` output) does not mention, or None.
    """
    for subnet in network.subnets(new_prefix=prefix):
        host, peer = list(subnet.hosts())[:2]
        if str(subnet) not in taken and not any(' %s/' % a in taken for a in (host, peer)):
            return str(host), str(peer)
    return None


class EmulatedLink:
    """A NetnsLink on a free /30, its namespace end shaped; a context manager."""

    def __init__(self, rate='25mbit', network='10.254.77.0', burst='32kbit', latency='400ms', tag=None):
        tag = tag or str(os.getpid())
        self.namespace = 'clbench-%s' % tag
        # Interface names are limited to 15 characters.
        self.host_if = ('clb%sh' % tag)[-netns_link.IFNAME_MAX:]
        self.peer_if = ('clb%sn' % tag)[-netns_link.IFNAME_MAX:]
        self.rate, self.burst, self.latency = rate, burst, latency
        self.network = ipaddress.ip_network(network + '/24')
        self.prefix = 30
        self.link = None
        self._servers = []

    @property
    def host_addr(self):
        return self.link.host_address if self.link else None

    @property
    def peer_addr(self):
        return self.link.peer_address if self.link else None

    def __enter__(self):
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self):
        taken = (netns_link.run('ip', '-4', '-o', 'addr', 'show').stdout
                 + netns_link.run('ip', '-4', 'route', 'show').stdout)
        pair = free_pair(self.network, self.prefix, taken)
        if pair is None:
            raise RuntimeError('no free /%d left in %s (stale bench namespaces? see `ip netns list`)'
                               % (self.prefix, self.network))
        self.link = netns_link.NetnsLink(self.namespace, self.host_if, self.peer_if, *pair, self.prefix)
        self.link.up()
        # Egress of the namespace side = the direction server -> client.
        self.link.shape(self.rate, ends=('peer',), burst=self.burst, latency=self.latency)

    def qdisc(self):
        return self.link.qdisc('peer')

    def serve_directory(self, directory, port=8080, log_path=os.devnull, timeout=15.0):
        """Start `python -m http.server` in the namespace; return its base URL."""
        log = open(log_path, 'ab')
        try:
            proc = subprocess.Popen(
                self.link.exec_argv(sys.executable, '-m', 'http.server', '--bind', self.peer_addr, port,
                                    '--directory', directory),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        self._servers.append(proc)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError('the HTTP server in %s exited with %s (log: %s)'
                                   % (self.namespace, proc.returncode, log_path))
            try:
                with socket.create_connection((self.peer_addr, port), timeout=1.0):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError('the HTTP server in %s did not listen within %s s'
                                       % (self.namespace, timeout))
                time.sleep(0.1)
        return 'http://%s:%d' % (self.peer_addr, port)

    def close(self):
        for proc in self._servers:
            # `ip netns exec` execs the command: this pid is the server itself.
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._servers = []
        if self.link is not None:
            # Whatever of the namespace and the pair a partial setup made.
            self.link.down()
