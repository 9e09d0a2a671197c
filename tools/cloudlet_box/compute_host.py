"""A further compute host of the box (layout.ComputeHost): its namespaces, its network, its own Open vSwitch.

A second machine has its own network stack; so does this host. nova names a
port's tap after the port (`tap<port id>`), and a live migration has the
same tap on both hosts at once: in one network namespace the second could
not exist. So the host's libvirtd and QEMU, its taps and its own ovsdb-server
+ ovs-vswitchd (userspace datapath, like the first host's: ovs.py) run in a
network namespace of their own, `cl-<box>-c<n>`. Two veth pairs join it to
the first host, as two cables would:

    first host (root namespace)             this host (cl-box-c2)
    clm-box-c2r 10.253.2.1/30  <== management ==>  clm-box-c2n 10.253.2.2/30
    clt-box-c2r on br-vlan     <== tenant VLANs ==> clt-box-c2n on its own br-vlan

- Management: nova's `my_ip` and `live_migration_inbound_addr` (libvirtd
  listens there for a live migration, QEMU takes the migration stream), and
  the first host's end is where its OVS agent's OpenFlow controller listens
  for this host's Open vSwitch.
- Tenant VLANs: a trunk between the two hosts' tenant bridges (physical
  network `tenant`), so the routers and DHCP of the first host serve guests
  on this one.

Its bridges have the first host's names (`br-int`, `br-vlan`), as the hosts
of one cloud do: nova gives a live migration's destination port the source
port's bridge name.

Its nova-compute runs in the network namespace too: os-vif looks for a tap
by name in its caller's network stack before it makes one, and during a live
migration to this host the source's tap of that name exists in the first
host's. What nova-compute talks to listens in the root namespace (RabbitMQ
and the APIs on loopback, the tests' overlay server on 127.0.0.2, box2's
public endpoints): `host-relay-c<n>` (host_relay.py) listens at those same
addresses inside and connects outside. nova's privsep daemons follow it there.
The OVS agent stays in the root network namespace (its RPC, its OpenFlow
controller at the management link's first end) and reaches this host's
ovsdb-server through its unix socket. Both run in the host's mount namespace,
where /run/openvswitch and /etc/openvswitch are this host's own (its binds,
layout.ComputeHost.binds): os-vif, libvirt and the agent find this host's
Open vSwitch at the default paths.
"""

import subprocess

from cloudlet_box import http_serve
from cloudlet_box import layout
from cloudlet_box import mounts
from cloudlet_box import netns_link
from cloudlet_box import ovs
from cloudlet_box import processes


def enter(host, net=True):
    """The argv prefix that runs a command on `host`: its mount and UTS namespaces, and its
    network namespace unless `net` is false (nova-compute and the OVS agent: see above).
    """
    return mounts.enter(host.mount_namespace, uts=True, netns=host.netns_path if net else None)


def management_link(host):
    first, own = host.link_names('m')
    return netns_link.NetnsLink(host.netns, first, own, host.gateway, host.address)


def network_up(host):
    """The network namespace and its management link (before its libvirtd starts). Idempotent."""
    link = management_link(host)
    link.up()
    # box2's public endpoints: the relay listens at their address inside.
    netns_link.run(*link.exec_argv('ip', 'addr', 'replace', '%s/32' % layout.BOX2.wan.address, 'dev', 'lo'))


def relayed(host):
    """(address, port) of what the host's nova-compute reaches through host_relay.py."""
    box = host.box
    ports = [layout.RABBIT_PORT] + [box.port(service) for service in {**layout.BASE_PORTS,
                                                                       **layout.INTERNAL_PORTS}]
    return ([('127.0.0.1', port) for port in ports]
            + [(http_serve.ADDRESS, port) for port in http_serve.PORTS]
            + [(layout.BOX2.wan.address, layout.BOX2.port(service)) for service in layout.BASE_PORTS])


def run(host, *argv, check=True):
    result = subprocess.run([*enter(host), *map(str, argv)], capture_output=True, text=True)
    if check and result.returncode:
        raise processes.StartError('%s on %s failed: %s' % (' '.join(map(str, argv)), host.name,
                                                             (result.stderr or result.stdout).strip()))
    return result


def ovs_pid(host, daemon):
    return processes.pid_of(host.ovs_run / (daemon + '.pid'))


def start_ovs(host):
    """This host's ovsdb-server and ovs-vswitchd, in its namespaces, at OVS's default paths there."""
    ovs.start_daemons(enter(host), host.ovs_run, host.ovs_etc / 'conf.db', host.logs,
                      'Open vSwitch of %s' % host.name)


def stop_ovs(host):
    ovs.stop(host.ovs_run)


def plumb(host, first_tenant_bridge):
    """This host's tenant bridge on its own Open vSwitch, trunked to the first host's."""
    start_ovs(host)
    bridge = host.network.tenant_bridge
    run(host, 'ovs-vsctl', '--timeout=10', '--may-exist', 'add-br', bridge, '--', 'set', 'bridge', bridge,
        'datapath_type=netdev')
    run(host, 'ip', 'link', 'set', bridge, 'up')
    first, own = host.link_names('t')
    if subprocess.run(['ip', 'link', 'show', 'dev', first], capture_output=True).returncode:
        run(host, 'ip', 'link', 'delete', own, check=False)     # a stale end would block the name
        netns_link.run('ip', 'link', 'add', first, 'type', 'veth', 'peer', 'name', own, 'netns', host.netns)
    netns_link.run('ip', 'link', 'set', first, 'up')
    run(host, 'ip', 'link', 'set', own, 'up')
    ovs.vsctl('--may-exist', 'add-port', first_tenant_bridge, first)
    run(host, 'ovs-vsctl', '--timeout=10', '--may-exist', 'add-port', bridge, own)


def teardown(host):
    """Stop its Open vSwitch, remove its links and network namespace (destroy)."""
    stop_ovs(host)
    first, _own = host.link_names('t')
    ovs.vsctl('--if-exists', 'del-port', first, check=False)
    netns_link.run('ip', 'link', 'delete', first, check=False)
    management_link(host).down()


def status_rows(host):
    return [(daemon, ovs_pid(host, daemon), host.logs / (daemon + '.log')) for daemon in ovs.DAEMONS]
