"""Persistent mount namespaces: a file that a namespace is bound to outlives its processes.

`unshare --mount=<file>` makes a mount namespace and keeps it alive by
binding it to the file; `nsenter --mount=<file>` runs a command in it. The box
uses them where a group of daemons must see their own directories at paths
shared with the rest of the machine (agent_mounts.py, box_libvirt.py).
"""

import subprocess

from cloudlet_box import processes


def ensure(path, commands, owner):
    """The namespace at `path`, made by running the shell `commands` (its binds) in it unless it exists."""
    if is_mount_point(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    result = subprocess.run(['unshare', '--mount=%s' % path, '--propagation', 'private', '--',
                             'sh', '-ec', '\n'.join(commands)], capture_output=True, text=True)
    if result.returncode:
        raise processes.StartError('could not make the mount namespace of %s: %s' % (owner, result.stderr.strip()))


def enter(path):
    """The argv prefix that runs a command in the namespace at `path`."""
    return ('nsenter', '--mount=%s' % path, '--')


def remove(path):
    if is_mount_point(path):
        subprocess.run(['umount', str(path)], capture_output=True)
    path.unlink(missing_ok=True)


def is_mount_point(path):
    target = str(path)
    with open('/proc/self/mountinfo') as mounts:
        return any(line.split()[4] == target for line in mounts)
