"""An emulated WAN link for benchmarks: a network namespace behind a veth pair.

    root namespace  10.254.77.1/30  <== veth ==>  10.254.77.2/30  namespace clbench-<pid>
                                         tbf on the namespace side: server -> client shaped

(the first /30 of 10.254.77.0/24 whose addresses are free, so that two runs
do not collide; normally the one above).

`EmulatedLink` creates the namespace and the veth pair, shapes the namespace
side's egress with `tc tbf` (netem is not available here), and can run a
static HTTP server inside the namespace. Everything it made (server process,
namespace, veth) is removed by `close()`, also after a partial setup. Traffic
only flows between the root namespace and the namespace this object created.
"""

import ipaddress
import os
import socket
import subprocess
import sys
import time


def _run(*cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError('%s failed: %s' % (' '.join(cmd), proc.stderr.strip()))
    return proc.stdout


class EmulatedLink:
    """Namespace + veth pair + tbf shaping; a context manager."""

    def __init__(self, rate='25mbit', network='10.254.77.0', burst='32kbit', latency='400ms', tag=None):
        tag = tag or str(os.getpid())
        self.namespace = 'clbench-%s' % tag
        # Interface names are limited to 15 characters.
        self.host_if = ('clb%sh' % tag)[-15:]
        self.peer_if = ('clb%sn' % tag)[-15:]
        self.rate, self.burst, self.latency = rate, burst, latency
        self.network = ipaddress.ip_network(network + '/24')
        self.host_addr = self.peer_addr = None
        self.prefix = 30
        self._made_namespace = False
        self._servers = []

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
        taken = _run('ip', '-4', '-o', 'addr', 'show') + _run('ip', '-4', 'route', 'show')
        for subnet in self.network.subnets(new_prefix=self.prefix):
            host, peer = list(subnet.hosts())
            if str(subnet) not in taken and not any(' %s/' % a in taken for a in (host, peer)):
                self.host_addr, self.peer_addr = str(host), str(peer)
                break
        else:
            raise RuntimeError('no free /30 left in %s (stale bench namespaces? see `ip netns list`)'
                               % self.network)
        _run('ip', 'netns', 'add', self.namespace)
        self._made_namespace = True
        _run('ip', 'link', 'add', self.host_if, 'type', 'veth', 'peer', 'name', self.peer_if,
             'netns', self.namespace)
        _run('ip', 'addr', 'add', '%s/%d' % (self.host_addr, self.prefix), 'dev', self.host_if)
        _run('ip', 'link', 'set', self.host_if, 'up')
        ns = ('ip', '-n', self.namespace)
        _run(*ns, 'addr', 'add', '%s/%d' % (self.peer_addr, self.prefix), 'dev', self.peer_if)
        _run(*ns, 'link', 'set', 'lo', 'up')
        _run(*ns, 'link', 'set', self.peer_if, 'up')
        # Egress of the namespace side = the direction server -> client.
        _run('ip', 'netns', 'exec', self.namespace, 'tc', 'qdisc', 'add', 'dev', self.peer_if, 'root',
             'tbf', 'rate', self.rate, 'burst', self.burst, 'latency', self.latency)

    def qdisc(self):
        return _run('ip', 'netns', 'exec', self.namespace, 'tc', 'qdisc', 'show', 'dev', self.peer_if).strip()

    def serve_directory(self, directory, port=8080, log_path=os.devnull, timeout=15.0):
        """Start `python -m http.server` in the namespace; return its base URL."""
        log = open(log_path, 'ab')
        try:
            proc = subprocess.Popen(
                ['ip', 'netns', 'exec', self.namespace, sys.executable, '-m', 'http.server',
                 '--bind', self.peer_addr, str(port), '--directory', directory],
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
        if self._made_namespace:
            # Deleting the namespace destroys the peer, and with it the whole pair.
            subprocess.run(['ip', 'netns', 'delete', self.namespace], capture_output=True)
            self._made_namespace = False
        if os.path.exists('/sys/class/net/%s' % self.host_if):
            subprocess.run(['ip', 'link', 'delete', self.host_if], capture_output=True)
