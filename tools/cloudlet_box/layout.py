"""Where a box keeps its files, which ports it uses, and its generated secrets.

One box per name (`CLOUDLET_BOX`, default `box`): configuration and data under
/var/lib/openstack-cloudlet/<name>, logs under /var/log/openstack-cloudlet/<name>,
pid files under /run/openstack-cloudlet/<name>. MariaDB and RabbitMQ are
machine-wide and shared by boxes (a database set and a vhost per box).

The first box (port offset 0) uses the host's libvirtd (tools/libvirtd.sh) and
only loopback endpoints. Any other box (a port offset N > 0, e.g. `box2` with
100) is a *remote* cloud: it runs its own libvirtd in a private mount namespace
(tools/cloudlet_box/box_libvirt.py), and its public Keystone endpoints lead
through an emulated WAN path (tools/cloudlet_box/wan.py): a network namespace
`clwan-<name>` behind a veth pair with the /30 number N // 100 of
10.254.88.0/24 (box2: 10.254.88.1 here, 10.254.88.2 in the namespace).

Networking: every box has real Neutron (ML2/OVS agents) on the machine-wide
Open vSwitch (ovs.py); its bridges, patch ports and OpenFlow port carry the
box's index so that boxes never share one (Box.network: box `br-int`, box2
`br-int2`), and its external network, whose gateway address is on its br-ex
here, is 172.24.(4 + index).0/24: this host stands in for the phone and
reaches floating IPs directly. Tenant networks are VLANs of the physical
network `tenant` (the box's `br-vlan`).

Compute hosts: the first box has two (Box.compute_hosts). The first is the
box's own nova-compute (host name: this machine's). The second,
`<box>-compute2` (ComputeHost), has its own nova-compute, libvirtd and OVS
agent, in a mount namespace of its own (compute_host.py) where its instance
directory and base store are bound over the first host's paths: nova wants
the same instances_path on every host, and each host keeps its own files
there, as two machines would. It has its own network namespace and Open vSwitch
too, whose `br-vlan` a veth pair trunks to the first host's: the tenant networks
span both hosts.
"""

import base64
import dataclasses
import ipaddress
import json
import os
import pathlib
import secrets

from cloudlet_engine import atomic

VENV = pathlib.Path(os.environ.get('CLOUDLET_VENV', '/opt/openstack-cloudlet/venv'))
REPO = pathlib.Path(__file__).resolve().parents[2]

# Service -> port for the first box; another box adds its `port_offset`.
# The APIs in the catalog (a remote box publishes them through its WAN path):
BASE_PORTS = {
    'keystone': 5000,
    'glance': 9292,
    'placement': 8778,
    'nova-api': 8774,
    'neutron': 9696,
    'barbican-api': 9311,
}
# Services only the box itself reaches, on loopback (nova's metadata API: the
# routers' metadata proxies ask it through Neutron's metadata agent).
INTERNAL_PORTS = {'nova-metadata': 8775}
# The dashboard (Horizon, at /dashboard/): for browsers, not in the catalog.
DASHBOARD_PORTS = {'horizon': 8000}
MARIADB_SOCKET = '/run/mysqld/mysqld.sock'
RABBIT_PORT = 5672
HOST_LIBVIRT_URI = 'qemu:///system'
# Remote boxes' WAN paths: one /30 each, apart from bench/linkemu.py's 10.254.77.0/24.
WAN_NETWORK = '10.254.88.0/24'


@dataclasses.dataclass(frozen=True)
class WanLayout:
    """Names and addresses of a remote box's WAN path (see wan.py)."""
    namespace: str
    host_if: str          # root-namespace end of the veth pair
    peer_if: str          # namespace end
    host_address: str     # the box's APIs listen here too (the relay's target)
    address: str          # in the namespace: the relay, and the box's public endpoints
    prefix: int = 30


# Generated passwords (Box.secrets); `metadata` is the shared secret of nova's
# metadata API and Neutron's metadata agent.
SECRET_NAMES = ('db', 'rabbit', 'admin', 'demo', 'alt', 'glance', 'placement', 'nova', 'neutron',
                'metadata', 'barbican', 'horizon')
# Generated keys (Box.secrets): Barbican's simple_crypto key-encryption key,
# 32 random bytes in base64, made once per box; a new one would leave every
# stored secret unreadable.
KEY_NAMES = ('barbican_kek',)


@dataclasses.dataclass(frozen=True)
class NetworkLayout:
    """A box's Neutron data plane on the shared Open vSwitch (configs.neutron, network.py)."""
    integration_bridge: str
    tunnel_bridge: str
    external_bridge: str
    int_peer_patch_port: str     # on the integration bridge, towards the tunnel bridge
    tun_peer_patch_port: str     # on the tunnel bridge, towards the integration bridge
    of_listen_port: int          # the OVS agent's OpenFlow controller
    external_cidr: str           # the `public` network; .1 is this host, on external_bridge
    tenant_cidr: str             # each user project's `private` network
    tenant_bridge: str           # physical network `tenant`: the VLANs of tenant networks
    physnet: str = 'public'
    tenant_physnet: str = 'tenant'
    vlan_range: str = '100:199'
    # A flat physical network no agent has a bridge for: ports on it cannot
    # bind (the e2e tests' failing binding).
    unbound_physnet: str = 'nowhere'

    @property
    def gateway_cidr(self):
        """This host's address on the external network (e.g. 172.24.4.1/24)."""
        network = ipaddress.ip_network(self.external_cidr)
        return '%s/%d' % (network.network_address + 1, network.prefixlen)

    @property
    def floating_range(self):
        """(first, last) floating and router gateway addresses."""
        network = ipaddress.ip_network(self.external_cidr)
        return str(network.network_address + 10), str(network.broadcast_address - 1)

    @property
    def bridges(self):
        return tuple(bridge for bridge in (self.integration_bridge, self.tunnel_bridge, self.external_bridge,
                                           self.tenant_bridge) if bridge)


@dataclasses.dataclass(frozen=True)
class Box:
    name: str
    port_offset: int = 0
    hosts: int = 1          # compute hosts: 2 gives the first box `<box>-compute2` ($CLOUDLET_BOX_HOSTS)

    @property
    def root(self):
        return pathlib.Path('/var/lib/openstack-cloudlet') / self.name

    @property
    def state_dir(self):
        """The compute host's [cloudlet] state_dir: base store, handoff records."""
        return self.root / 'cloudlet'

    @property
    def etc(self):
        return self.root / 'etc'

    @property
    def logs(self):
        return pathlib.Path('/var/log/openstack-cloudlet') / self.name

    @property
    def run(self):
        return pathlib.Path('/run/openstack-cloudlet') / self.name

    def port(self, service):
        return {**BASE_PORTS, **INTERNAL_PORTS, **DASHBOARD_PORTS}[service] + self.port_offset

    @property
    def remote(self):
        """A box other than the first: own libvirtd, public endpoints through a WAN path."""
        return self.port_offset != 0

    @property
    def index(self):
        """0 for the first box, 1 for box2 (offset 100), ...: names its network pieces."""
        return self.port_offset // 100

    @property
    def network(self):
        suffix = str(self.index + 1) if self.index else ''
        return NetworkLayout(
            integration_bridge='br-int' + suffix, tunnel_bridge='br-tun' + suffix,
            external_bridge='br-ex' + suffix, int_peer_patch_port='patch-tun' + suffix,
            tun_peer_patch_port='patch-int' + suffix, of_listen_port=6633 + self.port_offset,
            external_cidr='172.24.%d.0/24' % (4 + self.index),
            tenant_cidr='10.%d.0.0/24' % (10 + self.index), tenant_bridge='br-vlan' + suffix)

    @property
    def compute_hosts(self):
        """The further compute hosts of this box (`<box>-compute2`, ...; only the first box has any)."""
        return () if self.remote else tuple(ComputeHost(self, n) for n in range(2, self.hosts + 1))

    @property
    def instances_path(self):
        return self.root / 'nova' / 'instances'

    @property
    def state_dirs(self):
        """Every compute host's [cloudlet] state_dir, as seen from outside the hosts' namespaces."""
        return (self.state_dir,) + tuple(host.state_dir for host in self.compute_hosts)

    def host_files(self, host_name):
        """Where compute host `host_name` (nova's name) keeps its files, as seen from outside
        the hosts' namespaces: the first host's unless it is a further one.
        """
        host = next((h for h in self.compute_hosts if h.name == host_name), None)
        if host is None:
            return HostFiles(self.instances_path, self.state_dir, self.libvirt_uri, 'nova-compute')
        return HostFiles(host.instances, host.state_dir, host.libvirt_uri, host.service('nova-compute'))

    @property
    def wan(self):
        """The WAN path's layout (a remote box), else None."""
        if not self.remote:
            return None
        slot = (max(self.port_offset // 100, 1) - 1) % 64
        network = ipaddress.ip_network(WAN_NETWORK)
        base = network.network_address + 4 * slot
        # Interface names: at most 15 characters.
        stem = 'clw-%s' % self.name[:9]
        return WanLayout(namespace='clwan-%s' % self.name, host_if=stem + '-r', peer_if=stem + '-n',
                         host_address=str(base + 1), address=str(base + 2))

    @property
    def libvirt_uri(self):
        """The libvirt this box's nova-compute uses: the host's, or the box's own daemon."""
        if not self.remote:
            return HOST_LIBVIRT_URI
        return 'qemu+unix:///system?socket=%s' % (self.libvirt_socket_dir / 'libvirt-sock')

    @property
    def libvirt_socket_dir(self):
        """A remote box's libvirtd sockets and pid files (outside its mount namespace's binds)."""
        return self.run / 'libvirt'

    def url(self, service):
        """The internal endpoint: loopback, what the box's own services use."""
        return 'http://127.0.0.1:%d' % self.port(service)

    def public_url(self, service):
        """The public endpoint: through the WAN path for a remote box."""
        wan = self.wan
        if wan is None:
            return self.url(service)
        return 'http://%s:%d' % (wan.address, self.port(service))

    @property
    def listen_addresses(self):
        """Where the box's APIs listen: loopback, and the WAN path's root end."""
        wan = self.wan
        return ('127.0.0.1',) + ((wan.host_address,) if wan else ())

    @property
    def keystone_url(self):
        return self.url('keystone') + '/v3'

    @property
    def public_keystone_url(self):
        return self.public_url('keystone') + '/v3'

    @property
    def region(self):
        return 'RegionOne'

    @property
    def db_prefix(self):
        # Database names must be identifiers: box "box-2" -> "box_2_nova".
        return self.name.replace('-', '_')

    def db_url(self, database):
        secret = self.secrets()['db']
        return 'mysql+pymysql://%s:%s@127.0.0.1/%s_%s?charset=utf8' % (
            self.db_prefix, secret, self.db_prefix, database)

    def transport_url(self):
        return 'rabbit://%s:%s@127.0.0.1:%d/%s' % (
            self.db_prefix, self.secrets()['rabbit'], RABBIT_PORT, self.db_prefix)

    def secrets(self):
        """Passwords generated on first use, kept in a root-only file."""
        path = self.root / 'secrets.json'
        values = json.loads(path.read_text()) if path.exists() else {}
        missing = [name for name in SECRET_NAMES + KEY_NAMES if name not in values]
        if not missing:
            return values
        # A new box, or one made before a secret was added: keep the old ones.
        values.update({name: base64.b64encode(secrets.token_bytes(32)).decode() if name in KEY_NAMES
                       else secrets.token_hex(12) for name in missing})
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.write_json(str(path), values, indent=1, mode=0o600)
        return values


@dataclasses.dataclass(frozen=True)
class HostFiles:
    """A compute host's instance directories, base store, libvirt and nova-compute service name."""
    instances: pathlib.Path
    state_dir: pathlib.Path
    libvirt_uri: str
    compute_service: str


@dataclasses.dataclass(frozen=True)
class ComputeHost:
    """A further compute host of `box`: nova's host `<box>-compute<number>` (compute_host.py)."""
    box: Box
    number: int
    # Derived from the two above (__post_init__):
    name: str = dataclasses.field(init=False)           # nova's [DEFAULT] host, and its OVS agent's
    tag: str = dataclasses.field(init=False)            # in its services' and bridges' names: c2
    root: pathlib.Path = dataclasses.field(init=False)  # its own files
    instances: pathlib.Path = dataclasses.field(init=False)    # bound over box.instances_path
    state_dir: pathlib.Path = dataclasses.field(init=False)    # [cloudlet] state_dir, bound over box.state_dir
    nova_state: pathlib.Path = dataclasses.field(init=False)   # [DEFAULT] state_path: its compute_id
    run: pathlib.Path = dataclasses.field(init=False)
    logs: pathlib.Path = dataclasses.field(init=False)  # its libvirt's (nova's and the agent's: box.logs)
    address: str = dataclasses.field(init=False)        # [DEFAULT] my_ip: its end of the management link
    gateway: str = dataclasses.field(init=False)        # the first host's end of that link
    netns: str = dataclasses.field(init=False)          # its network namespace (compute_host.py)
    netns_path: str = dataclasses.field(init=False)     # ... and its file
    ovs_run: pathlib.Path = dataclasses.field(init=False)   # its Open vSwitch's sockets, bound over /run/openvswitch
    ovs_etc: pathlib.Path = dataclasses.field(init=False)   # its Open vSwitch's database, bound over /etc/openvswitch

    def __post_init__(self):
        own = 'compute%d' % self.number
        root, run = self.box.root / own, self.box.run / own
        netns = 'cl-%s-c%d' % (self.box.name, self.number)
        derived = {'name': '%s-%s' % (self.box.name, own), 'tag': 'c%d' % self.number,
                   'root': root, 'instances': root / 'instances', 'state_dir': root / 'cloudlet',
                   'nova_state': root / 'nova', 'run': run, 'logs': self.box.logs / own,
                   'address': '10.253.%d.2' % self.number, 'gateway': '10.253.%d.1' % self.number,
                   'netns': netns, 'netns_path': '/run/netns/' + netns,
                   'ovs_run': run / 'openvswitch', 'ovs_etc': root / 'openvswitch'}
        for field, value in derived.items():
            object.__setattr__(self, field, value)

    @property
    def mount_namespace(self):
        """The persistent mount namespace its libvirtd, QEMU and nova-compute run in."""
        return self.run / 'mnt'

    @property
    def binds(self):
        """(own directory, the first host's path it is bound over) in the mount namespace."""
        return ((self.instances, self.box.instances_path), (self.state_dir, self.box.state_dir),
                (self.ovs_run, '/run/openvswitch'), (self.ovs_etc, '/etc/openvswitch'))

    def link_names(self, kind):
        """(first host's end, this host's end) of its veth pair `kind`: m (management) or t (tenant VLANs)."""
        stem = 'cl%s-%s-%s' % (kind, self.box.name, self.tag)
        return stem + 'r', stem + 'n'

    @property
    def libvirt_socket_dir(self):
        return self.run / 'libvirt'

    @property
    def libvirt_uri(self):
        return 'qemu+unix:///system?socket=%s' % (self.libvirt_socket_dir / 'libvirt-sock')

    @property
    def network(self):
        """Its OVS agent's bridges, on its own Open vSwitch (compute_host.py): named as the
        first host's, as on every host of a cloud (nova keeps the source's bridge name for a
        live migration's destination port); no external bridge.
        """
        net = self.box.network
        return dataclasses.replace(net, external_bridge=None, of_listen_port=net.of_listen_port + self.number - 1)

    def service(self, name):
        """This host's instance of a per-host service: `nova-compute` -> `nova-compute-c2`."""
        return '%s-%s' % (name, self.tag)


def current():
    """The box named by $CLOUDLET_BOX (default `box`, ports as in BASE_PORTS), with
    $CLOUDLET_BOX_HOSTS compute hosts (default: as its last `up` recorded, else 1).
    """
    name = os.environ.get('CLOUDLET_BOX', 'box')
    offset = int(os.environ.get('CLOUDLET_BOX_PORT_OFFSET', '0'))
    hosts = os.environ.get('CLOUDLET_BOX_HOSTS')
    return Box(name, offset, int(hosts) if hosts else _recorded(name).get('hosts', 1))


def recorded_hosts(name):
    """The compute hosts box `name` had at its last `up` (0: never brought up here)."""
    recorded = _recorded(name)
    return recorded.get('hosts', 1) if recorded else 0


def _recorded(name):
    path = Box(name).root / 'box.json'
    return json.loads(path.read_text()) if path.exists() else {}


# The second test cloud (doc/handoff.md, "Test clouds").
BOX2 = Box('box2', 100)


def record(box):
    """Remember the box's port offset and compute hosts (layout.named reads them back)."""
    path = box.root / 'box.json'
    text = json.dumps({'name': box.name, 'port_offset': box.port_offset, 'hosts': box.hosts}) + '\n'
    box.root.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def named(name):
    """The box called `name`: $CLOUDLET_BOX's, else as its last `up` recorded it,
    else `box` (offset 0) or `box2` (offset 100).
    """
    env = current()
    if env.name == name:
        return env
    recorded = _recorded(name)
    if recorded:
        return Box(name, int(recorded['port_offset']), int(recorded.get('hosts', 1)))
    defaults = {'box': Box('box'), BOX2.name: BOX2}
    if name in defaults:
        return defaults[name]
    raise ValueError('unknown box %r: set CLOUDLET_BOX=%s and CLOUDLET_BOX_PORT_OFFSET' % (name, name))
