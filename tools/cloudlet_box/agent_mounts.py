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

from cloudlet_box import mounts

RUN = pathlib.Path('/run/openstack-cloudlet')
FILE = 'agents-mnt'


class AgentMounts:
    def __init__(self, box):
        self.box = box
        self.path = box.run / FILE
        self.netns_dir = box.run / 'netns'

    def exists(self):
        return mounts.is_mount_point(self.path)

    def ensure(self):
        """Create the mount namespace unless it exists (it outlives the agents)."""
        self.netns_dir.mkdir(parents=True, exist_ok=True)
        if not self.exists():
            # Names of namespaces bound in a mount namespace that is gone (a reboot):
            # nothing is behind them, and the agents would take them for their namespaces.
            for stale in self.netns_dir.glob('*'):
                stale.unlink()
        mounts.ensure(self.path, ['mkdir -p /run/netns', 'mount --bind %s /run/netns' % self.netns_dir],
                      'the agents of box %s' % self.box.name)

    def enter(self):
        """The argv prefix that runs a command in it."""
        return mounts.enter(self.path)

    def remove(self):
        mounts.remove(self.path)


def entries():
    """The argv prefixes of every agents' view of /run/netns on this host: the
    host's own (an empty prefix) and each remote box's mount namespace.
    """
    found = [()]
    for path in sorted(RUN.glob('*/' + FILE)) if RUN.exists() else ():
        if mounts.is_mount_point(path):
            found.append(mounts.enter(path))
    return found
