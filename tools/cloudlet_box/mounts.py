"""Persistent mount namespaces: a file that a namespace is bound to outlives its processes.

`unshare --mount=<file>` makes a mount namespace and keeps it alive by
binding it to the file; `nsenter --mount=<file>` runs a command in it. The box
uses them where a group of daemons must see their own directories at paths
shared with the rest of the machine (agent_mounts.py, box_libvirt.py). With a
`hostname`, the namespace gets a UTS namespace of its own too (`<file>-uts`),
where that is the host name: a further compute host's libvirtd then names its
node (nova's hypervisor_hostname, Placement's provider) apart from the first's.
With a `netns` (a network namespace's file), the namespace is made from inside
that network namespace and mounts its own sysfs: /sys/class/net then lists that
namespace's devices, for every process in the mount namespace (OVS, libvirt,
os-vif look there).
"""

import subprocess

from cloudlet_box import processes


def ensure(path, commands, owner, hostname=None, netns=None):
    """The namespace at `path`, made by running the shell `commands` (its binds) in it unless it exists."""
    if is_mount_point(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    # From the root mount namespace (not `ip netns exec`'s own), or the file binds nowhere lasting.
    argv = ['nsenter', '--net=%s' % netns, '--'] if netns else []
    argv += ['unshare', '--mount=%s' % path, '--propagation', 'private']
    if netns:
        commands = ['mount -t sysfs sysfs /sys'] + list(commands)
    if hostname:
        uts_path(path).touch()
        argv.append('--uts=%s' % uts_path(path))
        commands = ['hostname %s' % hostname] + list(commands)
    result = subprocess.run(argv + ['--', 'sh', '-ec', '\n'.join(commands)], capture_output=True, text=True)
    if result.returncode:
        raise processes.StartError('could not make the mount namespace of %s: %s' % (owner, result.stderr.strip()))


def enter(path, uts=False, netns=None):
    """The argv prefix that runs a command in the namespace at `path` (its UTS namespace, a network namespace)."""
    return (('nsenter', '--mount=%s' % path) + (('--uts=%s' % uts_path(path),) if uts else ())
            + (('--net=%s' % netns,) if netns else ()) + ('--',))


def uts_path(path):
    return path.with_name(path.name + '-uts')


def remove(path):
    for each in (path, uts_path(path)):
        if is_mount_point(each):
            subprocess.run(['umount', str(each)], capture_output=True)
        each.unlink(missing_ok=True)


def is_mount_point(path):
    target = str(path)
    with open('/proc/self/mountinfo') as mounts:
        return any(line.split()[4] == target for line in mounts)
