"""A remote box's (or a further compute host's) own libvirtd and virtlogd, in a private mount namespace.

nova-compute refuses to start as a new service on a libvirt that already holds
domains, and one cloud must never see the other's domains: so a remote box
(layout.Box.remote, e.g. box2) runs a second, privileged libvirtd. Both daemons
live in a mount namespace (`unshare -m --propagation private`) where the
box's own directories are bind-mounted over libvirt's fixed paths:

    /run/libvirt        <- /run/openstack-cloudlet/<box>/libvirt-run
    /var/lib/libvirt    <- /var/lib/openstack-cloudlet/<box>/libvirt/lib
    /etc/libvirt        <- /var/lib/openstack-cloudlet/<box>/libvirt/etc   (a copy of the host's)
    /var/cache/libvirt  <- /var/lib/openstack-cloudlet/<box>/libvirt/cache (seeded from the host's)
    /var/log/libvirt    <- /var/log/openstack-cloudlet/<box>/libvirt

The copy's libvirtd.conf puts the daemon's sockets in
/run/openstack-cloudlet/<box>/libvirt (outside the binds), so the box's
nova-compute, in the root namespace, connects with Box.libvirt_uri
(`qemu+unix:///system?socket=.../libvirt-sock`). The copy's qemu.conf sets
`cgroup_controllers = [ ]`: the two daemons never share /sys/fs/cgroup/*/machine.
Seeding the capability cache from the host's spares the ~45 s QEMU probe
(libvirt re-probes by itself if the copy does not fit).

A further compute host of the first box (layout.ComputeHost, compute_host.py)
gets the same, in the persistent mount namespace its nova-compute runs in
too (`unshare --mount=<file>`), where its instance directory and base store
are bound over the first host's paths as well.

QEMU processes started by this daemon live in the namespace too; only paths
outside the five binds (nova's instances, the cloudlet state) are the same
for them and for nova-compute. `stop` leaves guests running, as
tools/libvirtd.sh does: the next `start` (in the same namespace if a daemon
still runs, else a new one with the same binds) reconnects to them.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import time

from cloudlet_box import mounts
from cloudlet_box import processes

HOST_ETC = pathlib.Path('/etc/libvirt')
HOST_CACHE = pathlib.Path('/var/cache/libvirt')
DAEMONS = ('virtlogd', 'libvirtd')     # start order; stop goes the other way
SOCKET_WAIT = 30      # seconds
WARM_TIMEOUT = 300    # seconds: a cold QEMU probe takes ~45 s here
STOP_WAIT = 15        # seconds before SIGKILL
NOVA_METADATA = 'http://openstack.org/xmlns/libvirt/nova/'


def destroy_nova_domains(uri):
    """Destroy and undefine the domains nova made in the libvirtd at `uri`.

    For the first box, which shares the machine's libvirtd (tools/libvirtd.sh)
    with the integration tests: a box destroyed while it had servers (a
    session that ended, a machine restarted) would otherwise leave their
    definitions, and the next box's nova-compute refuses to start as a new
    service on a hypervisor with instances. nova marks its domains with its
    metadata namespace; nothing else here does.
    """
    listed = subprocess.run(['virsh', '-c', uri, 'list', '--all', '--name'],
                            capture_output=True, text=True)
    for name in listed.stdout.split() if listed.returncode == 0 else ():
        xml = subprocess.run(['virsh', '-c', uri, 'dumpxml', name], capture_output=True, text=True)
        if NOVA_METADATA in xml.stdout:
            remove_domain(uri, name)


def remove_domain(uri, name):
    """Destroy (if it runs) and undefine one domain of the libvirtd at `uri`."""
    subprocess.run(['virsh', '-c', uri, 'destroy', name], capture_output=True)
    subprocess.run(['virsh', '-c', uri, 'undefine', '--nvram', name], capture_output=True)
    print('[box] destroyed domain %s' % name)


class BoxLibvirt:
    """`owner`: a remote layout.Box, or a layout.ComputeHost."""

    def __init__(self, owner):
        if getattr(owner, 'remote', True) is False:
            raise ValueError('box %s uses the host libvirtd (tools/libvirtd.sh)' % owner.name)
        self.box = owner
        self.uri = owner.libvirt_uri
        self.socket_dir = owner.libvirt_socket_dir
        state = owner.root / 'libvirt'
        self.etc = state / 'etc'
        self.cache = state / 'cache'
        self.lib = state / 'lib'
        self.run_dir = owner.run / 'libvirt-run'
        self.logs = getattr(owner, 'logs') / 'libvirt'
        self.binds = ((self.run_dir, '/run/libvirt'), (self.lib, '/var/lib/libvirt'),
                      (self.etc, '/etc/libvirt'), (self.cache, '/var/cache/libvirt'),
                      (self.logs, '/var/log/libvirt')) + tuple(getattr(owner, 'binds', ()))
        # A compute host's namespace outlives its daemons (its nova-compute runs there too).
        self.namespace = getattr(owner, 'mount_namespace', None)
        # A compute host's libvirtd takes live migrations at its address (compute_host.py).
        self.netns = getattr(owner, 'netns_path', None)
        self.listen = getattr(owner, 'address', None) if self.netns else None

    # Files.

    def pidfile(self, daemon):
        return self.socket_dir / (daemon + '.pid')

    def log(self, daemon):
        return self.logs / (daemon + '.log')

    def _config_text(self, name, lines):
        """The host's file with our settings appended (later settings win)."""
        host = HOST_ETC / name
        text = host.read_text() if host.exists() else ''
        return text.rstrip('\n') + '\n\n# box %s (tools/cloudlet_box/box_libvirt.py)\n%s\n' % (
            self.box.name, '\n'.join(lines))

    def prepare(self):
        """Directories, the configuration copy and the seeded capability cache."""
        for path in (self.socket_dir, self.run_dir, self.logs, self.cache):
            path.mkdir(parents=True, exist_ok=True)
        self.lib.mkdir(parents=True, exist_ok=True)
        self.lib.chmod(0o755)
        if not self.etc.exists():
            # Not the host's domain definitions, nor anything it autostarts.
            def ignore(directory, names):
                directory = pathlib.Path(directory)
                skip = {n for n in names if n == 'autostart'}
                if directory == HOST_ETC / 'qemu':
                    skip |= {n for n in names if n.endswith('.xml')}
                return skip
            staging = self.etc.with_name('etc.new')
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(HOST_ETC, staging, symlinks=True, ignore=ignore)
            staging.rename(self.etc)
        settings = {
            'libvirtd.conf': ['unix_sock_dir = "%s"' % self.socket_dir,
                              'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"'],
            'virtlogd.conf': ['log_outputs = "3:file:/var/log/libvirt/virtlogd.log"'],
            'qemu.conf': ['cgroup_controllers = [ ]'],
        }
        if self.listen:
            # Plain TCP without authentication, on the host's own link only (test clouds).
            settings['libvirtd.conf'] += ['listen_tls = 0', 'listen_tcp = 1', 'auth_tcp = "none"',
                                          'listen_addr = "%s"' % self.listen]
        for name, lines in settings.items():
            path = self.etc / name
            text = self._config_text(name, lines)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
        # The host's probe results, for the same QEMU and libvirt binaries.
        host_caps = HOST_CACHE / 'qemu' / 'capabilities'
        box_caps = self.cache / 'qemu' / 'capabilities'
        if host_caps.is_dir():
            box_caps.mkdir(parents=True, exist_ok=True)
            for source in host_caps.glob('*.xml'):
                if not (box_caps / source.name).exists():
                    shutil.copy2(source, box_caps / source.name)

    # Processes.

    def pid(self, daemon):
        pid = processes.pid_of(self.pidfile(daemon))
        try:
            if pid and pathlib.Path('/proc/%d/comm' % pid).read_text().strip() == daemon:
                return pid
        except OSError:
            pass
        return None

    def running(self):
        return all(self.pid(daemon) for daemon in DAEMONS)

    def answers(self):
        if not (self.socket_dir / 'libvirt-sock').is_socket():
            return False
        return subprocess.run(['virsh', '-c', self.uri, 'uri'], capture_output=True).returncode == 0

    def _namespace_of(self, pid):
        return os.readlink('/proc/%d/ns/mnt' % pid)

    def start(self):
        """Start whichever daemon is not running, wait for the socket, warm; idempotent."""
        self.prepare()
        missing = [daemon for daemon in DAEMONS if not self.pid(daemon)]
        if missing:
            starts = []
            for daemon in missing:
                argv = ['/usr/sbin/' + daemon, '-d', '-p', str(self.pidfile(daemon))]
                if daemon == 'libvirtd':
                    argv += ['--config', str(self.etc / 'libvirtd.conf')] + (['--listen'] if self.listen else [])
                else:
                    argv += ['--config', str(self.etc / 'virtlogd.conf')]
                starts.append(' '.join(argv))
            print('[box] starting %s for %s in its own mount namespace' % (', '.join(missing),
                                                                            self.box.name), flush=True)
            result = subprocess.run(self._enter() + ['sh', '-ec', '\n'.join(starts)],
                                    capture_output=True, text=True)
            if result.returncode:
                raise processes.StartError('starting %s failed: %s%s' % (
                    ', '.join(missing), result.stdout[-1000:], result.stderr[-2000:]))
        processes.wait_for('libvirtd of %s' % self.box.name, self.answers, SOCKET_WAIT,
                           pid_check=lambda: self.pid('libvirtd'), log=self.log('libvirtd'))
        self.warm()

    def _mounts(self):
        return ['mkdir -p %s %s' % bind for bind in self.binds] + [
            'mount --bind %s %s' % (source, target) for source, target in self.binds]

    def _enter(self):
        """The argv prefix that runs a command where the daemons run (made, with its binds, if needed)."""
        if self.namespace is not None:
            mounts.ensure(self.namespace, self._mounts(), self.box.name, hostname=self.box.name, netns=self.netns)
            return list(mounts.enter(self.namespace, uts=True, netns=self.netns))
        alive = [(daemon, self.pid(daemon)) for daemon in DAEMONS if self.pid(daemon)]
        if alive:
            # Join the namespace the other daemon runs in (its binds are in place).
            daemon, pid = alive[0]
            if self._namespace_of(pid) == self._namespace_of(os.getpid()):
                raise processes.StartError('%s of box %s (pid %d) runs outside a private mount '
                                           'namespace: stop it' % (daemon, self.box.name, pid))
            return ['nsenter', '-t', str(pid), '-m', '--']
        # A new namespace: the binds, then the commands.
        return ['unshare', '-m', '--propagation', 'private', '--', 'sh', '-ec',
                '\n'.join(self._mounts()) + '\nexec "$@"', 'sh']

    def warm(self):
        """Make libvirt probe QEMU now (instant when the seeded cache fits)."""
        started = time.monotonic()
        result = subprocess.run(['timeout', str(WARM_TIMEOUT), 'virsh', '-c', self.uri,
                                 'domcapabilities', '--virttype', 'qemu'],
                                capture_output=True, text=True)
        if result.returncode:
            raise processes.StartError('libvirtd of %s: domcapabilities failed: %s'
                                       % (self.box.name, result.stderr[-1000:]))
        seconds = time.monotonic() - started
        if seconds > 2:
            print('[box] libvirt of %s warm (%.0f s)' % (self.box.name, seconds), flush=True)

    def stop(self):
        """SIGTERM, bounded wait, SIGKILL; guests keep running. Return the daemons stopped."""
        stopped = []
        for daemon in reversed(DAEMONS):
            pid = self.pid(daemon)
            if not pid:
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_WAIT
            while self.pid(daemon) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid(daemon):
                os.kill(pid, signal.SIGKILL)
                while self.pid(daemon):
                    time.sleep(0.1)
            self.pidfile(daemon).unlink(missing_ok=True)
            stopped.append(daemon)
        return stopped

    def domains(self):
        """Names of all domains this libvirtd knows (running or defined)."""
        result = subprocess.run(['virsh', '-c', self.uri, 'list', '--all', '--name'],
                                capture_output=True, text=True, check=True)
        return [name for name in result.stdout.split() if name]

    def destroy_domains(self):
        """Destroy and undefine every domain (the box is being destroyed)."""
        for name in self.domains():
            remove_domain(self.uri, name)

    def has_guests(self):
        """Whether QEMU guests of this daemon may still run (status files left)."""
        return any((self.run_dir / 'qemu').glob('*.xml'))

    def status_rows(self):
        return [(daemon, self.pid(daemon), self.log(daemon)) for daemon in DAEMONS]
