"""A remote box's DHCP and L3 agents see only their own network namespaces.

Both boxes' agents run on this host, in its network namespace, on the shared
Open vSwitch. Their qdhcp-* and qrouter-* namespaces would all live in
/run/netns, and an L3 agent that starts deletes every qrouter-* namespace
that is not one of its routers: box's agent would tear down box2's routers.
So a remote box runs those agents in a persistent mount namespace of its own
(`unshare --mount=<run>/agents-mnt`), where /run/netns is the box's own
directory. dnsmasq, haproxy and the agents' privsep daemons, their
children, live there too. The first box's agents keep the host's /run/netns.
"""

import pathlib
import subprocess

from cloudlet_box import processes

RUN = pathlib.Path('/run/openstack-cloudlet')
FILE = 'agents-mnt'


class AgentMounts:
    def __init__(self, box):
        self.box = box
        self.path = box.run / FILE
        self.netns_dir = box.run / 'netns'

    def exists(self):
        return _is_mount_point(self.path)

    def ensure(self):
        """Create the mount namespace unless it exists (it outlives the agents)."""
        if self.exists():
            return
        self.netns_dir.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        result = subprocess.run(['unshare', '--mount=%s' % self.path, '--propagation', 'private', '--',
                                 'sh', '-ec', 'mkdir -p /run/netns; mount --bind %s /run/netns'
                                 % self.netns_dir], capture_output=True, text=True)
        if result.returncode:
            raise processes.StartError('could not make the agents\' mount namespace of box %s: %s'
                                       % (self.box.name, result.stderr.strip()))

    def enter(self):
        """The argv prefix that runs a command in it."""
        return ('nsenter', '--mount=%s' % self.path, '--')

    def remove(self):
        if self.exists():
            subprocess.run(['umount', str(self.path)], capture_output=True)
        self.path.unlink(missing_ok=True)


def entries():
    """The argv prefixes of every agents' view of /run/netns on this host: the
    host's own (an empty prefix) and each remote box's mount namespace.
    """
    found = [()]
    for path in sorted(RUN.glob('*/' + FILE)) if RUN.exists() else ():
        if _is_mount_point(path):
            found.append(('nsenter', '--mount=%s' % path, '--'))
    return found


def _is_mount_point(path):
    target = str(path)
    with open('/proc/self/mountinfo') as mounts:
        return any(line.split()[4] == target for line in mounts)
