"""What the benches that run the test guest under libvirt share: the host, the guest, its domains.

bench/synthesis_bench.py and bench/restore_bench.py both start libvirtd,
boot the test guest (tools/build-guest.sh) on a fresh qcow2 layer, reach its
app (/cgi-bin/...) through forwarded host ports, destroy every domain they
started when they end (also on an error or SIGTERM), and print the host's
conditions above Markdown tables. Where the two differ (the log's tag, the
domain-name prefix, how long the app may take, the echo port) the caller
says.

Importing this module puts tools/ on sys.path (the synthesis bench's link is
made of cloudlet_box.netns_link, like the box's WAN path); a bench run as a
script puts the repository there first, to find this module.
"""

import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
import uuid as uuidlib

import libvirt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(REPO, 'tools'), REPO):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from cloudlet_engine import domainxml       # noqa: E402
from cloudlet_engine import hypervisor      # noqa: E402

GUEST_HTTP_PORT = 8080
ECHO_PORT = 7
# The call -> app figures are taken when the app first answers: poll it this often (s).
APP_POLL = 0.05


class Log:
    """Progress lines on stderr, each tagged and stamped with the seconds since the bench started."""

    def __init__(self, tag, width):
        # width: of the seconds field, as each bench has always printed it.
        self.tag, self.width = tag, width
        self.started = time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.started

    def __call__(self, message):
        print('[%s %*.1fs] %s' % (self.tag, self.width, self.elapsed(), message), file=sys.stderr, flush=True)


def run(*argv):
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError('%s failed: %s' % (' '.join(argv), proc.stderr.strip()))
    return proc.stdout


# -- the host ---------------------------------------------------------------------------

def _terminate(signum, _frame):
    raise KeyboardInterrupt('signal %d' % signum)


def interrupt_on_sigterm():
    """SIGTERM unwinds like Ctrl-C, so that the bench's cleanup (finally) runs."""
    signal.signal(signal.SIGTERM, _terminate)


def start_libvirtd():
    """libvirtd and virtlogd, started if they are not (tools/libvirtd.sh: idempotent, warms QEMU's probe)."""
    run(os.path.join(REPO, 'tools', 'libvirtd.sh'), 'start')


def load_average():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg has them."""
    with open('/proc/loadavg') as f:
        return ' '.join(f.read().split()[:3])


def conditions_head(load_at_start, host_more=''):
    """The first lines of a bench's conditions: date, host (then `host_more`), hypervisor."""
    model = platform.processor() or 'unknown'
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    qemu = run('qemu-system-x86_64', '--version').splitlines()[0]
    v = libvirt.getVersion()
    libvirt_version = '%d.%d.%d' % (v // 1000000, v // 1000 % 1000, v % 1000)
    return [
        'date        %s' % time.strftime('%Y-%m-%d %H:%M:%S %Z'),
        'host        CPU %s, %d cores, %s; load avg at start %s%s'
        % (model, os.cpu_count(), platform.platform(), load_at_start, host_more),
        'hypervisor  %s, libvirt %s, TCG (no KVM), 1 vCPU' % (qemu, libvirt_version),
    ]


# -- the test guest ---------------------------------------------------------------------

def guest_image():
    """Build the test guest if needed (tools/build-guest.sh); its kernel, initrd and raw disk."""
    out = run(os.path.join(REPO, 'tools', 'build-guest.sh'))
    paths = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
    return {key: paths[key] for key in ('vmlinuz', 'initrd', 'disk')}


def forwards(echo=False):
    """Fresh host ports for the guest's app (and, with `echo`, its echo service), one set per domain."""
    ports = {GUEST_HTTP_PORT: hypervisor.free_tcp_port()}
    if echo:
        ports[ECHO_PORT] = hypervisor.free_tcp_port()
    return ports


def boot_guest(conn, image, workdir, name, port_forwards, memory_mib):
    """Start the test guest from a fresh qcow2 layer over its disk; return the layer's path."""
    disk = os.path.join(workdir, '%s.qcow2' % name)
    run('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', image['disk'], disk)
    xml = domainxml.guest_domain_xml(
        name, str(uuidlib.uuid4()), image['vmlinuz'], image['initrd'], disk, 'qcow2',
        memory_mib=memory_mib, port_forwards=port_forwards,
        console_log=os.path.join(workdir, '%s.console.log' % name), virt_type=hypervisor.virt_type())
    hypervisor.start_domain(conn, xml)
    return disk


def app_url(port_forwards, path='/cgi-bin/state'):
    return 'http://127.0.0.1:%d%s' % (port_forwards[GUEST_HTTP_PORT], path)


def wait_for_state(port_forwards, timeout):
    """Poll the app's /cgi-bin/state until it answers; its state (ram, disk, app, bootid, ...)."""
    return hypervisor.parse_state(hypervisor.wait_for_http(app_url(port_forwards), timeout, interval=APP_POLL))


def app_call(port_forwards, path, timeout):
    """One GET (never repeated: install and fill are not idempotent while running)."""
    with urllib.request.urlopen(app_url(port_forwards, path), timeout=timeout) as response:
        state = hypervisor.parse_state(response.read().decode())
    if 'error' in state:
        raise RuntimeError('guest app %s: %s' % (path, state['error']))
    return state


class Guests:
    """Every domain this run starts, so that all of them are destroyed at the end.

    Names are `prefix`-`role`. With `check_free`, a name a domain already has
    is refused: a fixed prefix can meet the domains of a run that was killed.
    """

    def __init__(self, conn, prefix, log, check_free=False):
        self.conn, self.prefix, self.log, self.check_free = conn, prefix, log, check_free
        self.names = []

    def name(self, role):
        name = '%s-%s' % (self.prefix, role)
        if self.check_free and hypervisor.lookup(self.conn, name) is not None:
            raise RuntimeError('a domain named %s exists already (a run left over?)' % name)
        self.names.append(name)
        return name

    def destroy(self, name):
        hypervisor.destroy_domain(self.conn, name)

    def destroy_all(self):
        for name in self.names:
            try:
                hypervisor.destroy_domain(self.conn, name)
            except Exception as exc:   # noqa: BLE001 - cleanup goes on
                self.log('could not destroy %s: %s' % (name, exc))


# -- the report -------------------------------------------------------------------------

def verdict(ok):
    return 'ok' if ok else 'MISSED'


def table(header, rows):
    """A Markdown table, each column as wide as its widest cell."""
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    line = lambda cells: '| ' + ' | '.join(str(c).ljust(w) for c, w in zip(cells, widths)) + ' |'
    sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
    return '\n'.join([line(header), sep] + [line(row) for row in rows])
