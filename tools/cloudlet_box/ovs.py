"""Open vSwitch for the boxes: one ovsdb-server + ovs-vswitchd on the userspace datapath.

There is no kernel OVS module on this kind of machine, so every bridge uses
`datapath_type=netdev` (the kernel has no CONFIG_OPENVSWITCH). The netdev
datapath is one kernel tap (`ovs-netdev`) per network namespace: a second
ovs-vswitchd beside the first cannot open it. So, like MariaDB and RabbitMQ,
Open vSwitch is machine-wide and shared by the boxes; each box owns its own
bridges (layout.Box.bridges) and its own agents' OpenFlow port, so two boxes
are still two independent clouds. The database and sockets live in OVS's
default places (/etc/openvswitch, /run/openvswitch): libvirtd, os-vif and the
neutron agents then find them with no option, and ovsdb also listens on
127.0.0.1:6640, where ovsdbapp connects by default.
"""

import pathlib
import subprocess

from cloudlet_box import agent_mounts
from cloudlet_box import processes

RUN_DIR = pathlib.Path('/run/openvswitch')
DB = pathlib.Path('/etc/openvswitch/conf.db')
SCHEMA = pathlib.Path('/usr/share/openvswitch/vswitch.ovsschema')
LOGS = pathlib.Path('/var/log/openstack-cloudlet')
OVSDB_TCP = 'ptcp:6640:127.0.0.1'
DAEMONS = ('ovsdb-server', 'ovs-vswitchd')


def pid(daemon):
    return processes.pid_of(RUN_DIR / (daemon + '.pid'))


def vsctl(*args, check=True):
    result = subprocess.run(['ovs-vsctl', '--timeout=10', *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise processes.StartError('ovs-vsctl %s failed: %s' % (' '.join(args), result.stderr.strip()))
    return result.stdout


def start():
    """The machine's Open vSwitch (the first host's, and every box's bridges): both daemons unless they run."""
    start_daemons((), RUN_DIR, DB, LOGS, 'Open vSwitch',
                  remotes=(OVSDB_TCP, 'db:Open_vSwitch,Open_vSwitch,manager_options'),
                  before_vswitchd=forget_namespaced_ports)


def start_daemons(enter, run_dir, db, logs, what, remotes=(), before_vswitchd=None):
    """ovsdb-server and ovs-vswitchd on the userspace datapath, unless they run (their own
    --detach and pid files).

    `enter`: the argv prefix of the namespaces they run in, where their database and
    sockets are at OVS's default paths (DB, RUN_DIR); `run_dir` and `db`: those paths as
    seen from here; `logs`: where their logs go; `remotes`: ovsdb-server's other remotes.
    A further compute host runs its own (compute_host.py).
    """
    def run(*argv, check=True):
        result = subprocess.run([*enter, *map(str, argv)], capture_output=True, text=True)
        if check and result.returncode:
            raise processes.StartError('%s failed: %s' % (' '.join(map(str, argv)),
                                                          (result.stderr or result.stdout).strip()))
        return result

    def running(daemon):
        return processes.pid_of(run_dir / (daemon + '.pid'))

    run_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        run('ovsdb-tool', 'create', DB, SCHEMA)
    if not running('ovsdb-server'):
        run('ovsdb-server', DB, '--remote=punix:%s' % (RUN_DIR / 'db.sock'),
            *('--remote=' + remote for remote in remotes),
            '--pidfile', '--detach', '--log-file=%s' % (logs / 'ovsdb-server.log'))
        run('ovs-vsctl', '--timeout=10', '--no-wait', 'init')
    if not running('ovs-vswitchd'):
        # Guests hand their TCP packets to the tap with the checksum left to
        # the NIC (virtio offload). Without userspace TSO, OVS reads them
        # without the virtio-net header and forwards them with bad checksums:
        # the routers' conntrack drops them (ICMP works, TCP does not). With
        # it, OVS keeps the offload flags end to end. Read at start only.
        run('ovs-vsctl', '--timeout=10', '--no-wait', 'set', 'Open_vSwitch', '.',
            'other_config:userspace-tso-enable=true')
        if before_vswitchd is not None:
            before_vswitchd()
        # "Generic Netlink family 'ovs_datapath' does not exist" in its log is
        # expected: no kernel module, the netdev datapath carries on.
        run('ovs-vswitchd', 'unix:%s' % (RUN_DIR / 'db.sock'), '--pidfile', '--detach',
            '--log-file=%s' % (logs / 'ovs-vswitchd.log'))
    processes.wait_for(what, lambda: run('ovs-vsctl', '--timeout=10', 'show', check=False).returncode == 0, 30,
                       pid_check=lambda: running('ovs-vswitchd'), log=logs / 'ovs-vswitchd.log')


AGENT_NAMESPACES = ('qrouter-', 'qdhcp-')


def agent_namespaces(enter=()):
    """Network namespaces of the L3 and DHCP agents, as seen through `enter`
    (an argv prefix: agent_mounts.AgentMounts.enter(); the host's by default).
    """
    listed = subprocess.run([*enter, 'ip', 'netns', 'list'], capture_output=True, text=True).stdout
    names = (line.split()[0] for line in listed.splitlines() if line.strip())
    return [name for name in names if name.startswith(AGENT_NAMESPACES)]


def in_namespace(namespace, enter, *argv):
    return subprocess.run([*enter, 'ip', 'netns', 'exec', namespace, *argv], capture_output=True,
                          text=True)


def namespace_links(namespace, enter=()):
    """The network devices in `namespace`, but its loopback."""
    links = in_namespace(namespace, enter, 'ls', '/sys/class/net').stdout.split()
    return [link for link in links if link != 'lo']


def forget_namespaced_ports():
    """Before ovs-vswitchd (re)starts: delete the agents' ports inside their namespaces.

    Internal ports of the netdev datapath are taps that vswitchd opens by name
    in its own namespace. One the DHCP or L3 agent moved into a namespace is
    not found there after a restart: vswitchd makes a new, unconnected tap
    beside it, and the agent, finding its device in place, never plugs again.
    Deleted, the agents plug them anew when they start (the box starts them
    after Open vSwitch).
    """
    for enter in agent_mounts.entries():
        for namespace in agent_namespaces(enter):
            for link in namespace_links(namespace, enter):
                in_namespace(namespace, enter, 'ip', 'link', 'delete', link)


def stop(run_dir=RUN_DIR):
    """Stop the daemons whose pid files are in `run_dir` (a further compute host's: its own)."""
    for daemon in reversed(DAEMONS):
        processes.stop(daemon, run_dir)


def ensure_bridge(name):
    """A userspace bridge, its internal port up (the agents create the others)."""
    vsctl('--may-exist', 'add-br', name, '--', 'set', 'bridge', name, 'datapath_type=netdev')
    subprocess.run(['ip', 'link', 'set', name, 'up'], check=True, capture_output=True)


def ensure_address(device, cidr):
    """Give `device` the address `cidr` (e.g. the external network's gateway on br-ex)."""
    shown = subprocess.run(['ip', '-4', 'addr', 'show', 'dev', device], capture_output=True,
                           text=True).stdout
    if (' %s ' % cidr) not in shown:
        subprocess.run(['ip', 'addr', 'add', cidr, 'dev', device], check=True, capture_output=True)


def delete_bridges(names):
    for name in names:
        vsctl('--if-exists', 'del-br', name, check=False)


def status_rows():
    return [(daemon, pid(daemon), LOGS / (daemon + '.log')) for daemon in DAEMONS]
