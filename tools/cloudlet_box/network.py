"""The box's Neutron data plane and the networks its users get.

Bring-up (bringup.up): the box's external bridge on the shared Open vSwitch
with this host's gateway address, then - once Neutron's agents report alive -
what a user of a small cloud expects to find:

- `public`: the external network (flat, physical network `public` on the
  box's br-ex), its subnet without DHCP; floating IPs come from it, and this
  host (standing in for the phone) reaches them directly;
- in each user project (demo, alt): a VXLAN network `private` with a DHCP
  subnet, a router `router` with its gateway on `public` and an interface on
  `private`, so `networks: auto` on a server create picks `private`;
- the project's `default` security group also lets in ICMP and the test
  guest's app (TCP 8080): the app a mobile back end synthesizes must answer.

Destroy removes the box's bridges and the namespaces of its agents.
"""

import subprocess

import openstack.connection

from cloudlet_box import agent_mounts
from cloudlet_box import compute_host
from cloudlet_box import identity
from cloudlet_box import ovs
from cloudlet_box import processes

PUBLIC, PRIVATE, ROUTER = 'public', 'private', 'router'
APP_PORT = 8080
AGENT_TYPES = ('Open vSwitch agent', 'DHCP agent', 'L3 agent', 'Metadata agent')


def plumb(box):
    """Before the agents start: the external bridge (the OVS agent wants it
    to exist) with this host's gateway address on its internal port; the
    tenant bridge of every compute host, the further hosts' (on their own
    Open vSwitch) trunked to the first's (one physical network: the tenant
    VLANs reach every host; compute_host.py).
    """
    net = box.network
    if box.remote:
        agent_mounts.AgentMounts(box).ensure()
    ovs.start()
    ovs.ensure_bridge(net.external_bridge)
    ovs.ensure_address(net.external_bridge, net.gateway_cidr)
    if box.compute_hosts:
        ovs.ensure_bridge(net.tenant_bridge)
    for host in box.compute_hosts:
        compute_host.plumb(host, net.tenant_bridge)


def admin_connection(box):
    return openstack.connection.Connection(session=identity.admin_session(box),
                                           region_name=box.region,
                                           network_interface=identity.client_interface(box))


def wait_for_agents(box, timeout=120):
    conn = admin_connection(box)

    hosts = {host.name for host in box.compute_hosts}

    def all_alive():
        agents = [agent for agent in conn.network.agents() if agent.is_alive]
        ovs_hosts = {agent.host for agent in agents if agent.agent_type == AGENT_TYPES[0]}
        return {agent.agent_type for agent in agents}.issuperset(AGENT_TYPES) and hosts <= ovs_hosts
    processes.wait_for('neutron agents (%s)' % ', '.join(AGENT_TYPES), all_alive, timeout,
                       log=box.logs / 'neutron-openvswitch-agent.log')


def _one(found):
    found = list(found)
    return found[0] if found else None


def ensure_public(conn, box):
    net = box.network
    network = _one(conn.network.networks(name=PUBLIC, is_router_external=True)) or \
        conn.network.create_network(name=PUBLIC, is_router_external=True,
                                    provider_network_type='flat',
                                    provider_physical_network=net.physnet)
    if not _one(conn.network.subnets(network_id=network.id)):
        first, last = net.floating_range
        conn.network.create_subnet(name=PUBLIC + '-subnet', network_id=network.id, ip_version=4,
                                   cidr=net.external_cidr, gateway_ip=net.gateway_cidr.split('/')[0],
                                   is_dhcp_enabled=False,
                                   allocation_pools=[{'start': first, 'end': last}])
    return network


def ensure_project_network(conn, box, project_id, public):
    """`private`, its subnet, `router` to `public`, and the default group's rules."""
    network = _one(conn.network.networks(name=PRIVATE, project_id=project_id)) or \
        conn.network.create_network(name=PRIVATE, project_id=project_id)
    subnet = _one(conn.network.subnets(network_id=network.id)) or conn.network.create_subnet(
        name=PRIVATE + '-subnet', network_id=network.id, project_id=project_id, ip_version=4,
        cidr=box.network.tenant_cidr, dns_nameservers=[])
    router = _one(conn.network.routers(name=ROUTER, project_id=project_id))
    if router is None:
        router = conn.network.create_router(name=ROUTER, project_id=project_id,
                                            external_gateway_info={'network_id': public.id})
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
    group = _one(conn.network.security_groups(name='default', project_id=project_id))
    if group is None:   # made by Neutron on the project's first request
        group = conn.network.create_security_group(name='default', project_id=project_id)
    wanted = [{'protocol': 'icmp'},
              {'protocol': 'tcp', 'port_range_min': APP_PORT, 'port_range_max': APP_PORT}]
    have = [(rule.protocol, rule.port_range_min) for rule in
            conn.network.security_group_rules(security_group_id=group.id, direction='ingress')]
    for rule in wanted:
        if (rule['protocol'], rule.get('port_range_min')) not in have:
            conn.network.create_security_group_rule(
                security_group_id=group.id, project_id=project_id, direction='ingress',
                ethertype='IPv4', remote_ip_prefix='0.0.0.0/0', **rule)


def populate(box):
    conn = admin_connection(box)
    public = ensure_public(conn, box)
    for name in identity.USER_PROJECTS:
        project = conn.identity.find_project(name, domain_id='default', ignore_missing=False)
        ensure_project_network(conn, box, project.id, public)


def teardown(box):
    """Remove the box's agent namespaces (those whose ports are on its bridges),
    what runs in them (dnsmasq), its bridges, and a remote box's agents' mount namespace.
    """
    ovs.start()
    bridges = set(box.network.bridges)
    mounts = agent_mounts.AgentMounts(box) if box.remote else None
    enter = mounts.enter() if mounts is not None and mounts.exists() else ()
    for namespace in ovs.agent_namespaces(enter):
        devices = ovs.namespace_links(namespace, enter)
        owners = {ovs.vsctl('port-to-br', dev, check=False).strip() for dev in devices}
        if owners & bridges:
            for pid in ovs.in_namespace(namespace, enter, 'ip', 'netns', 'pids', namespace).stdout.split():
                subprocess.run(['kill', '-9', pid], capture_output=True)
            for dev in devices:
                ovs.vsctl('--if-exists', 'del-port', dev, check=False)
            subprocess.run([*enter, 'ip', 'netns', 'delete', namespace], capture_output=True)
    ovs.delete_bridges(box.network.bridges)
    for host in box.compute_hosts:
        compute_host.teardown(host)
    if mounts is not None:
        mounts.remove()
