"""The box's configuration files, written from the box's layout and secrets.

The box owns these files and rewrites them on every `up` (the content only
depends on the layout and the stored secrets, so a rewrite changes nothing).
The cloudlet-specific part of nova's configuration is NOT written here: it is
applied afterwards by `cloudlet-configure`, the same step the devstack plugin
runs (see bringup.configure_cloudlet).

A remote box (layout.Box.remote) publishes its public endpoints through the
WAN path; its own services are pointed at the internal ones (127.0.0.1), so
that shaping the WAN never slows the box itself, and its nova-compute uses the
box's own libvirtd.
"""

import shutil

from cloudlet_box import identity
from cloudlet_box import layout
from cloudlet_cmd import inifile
from cloudlet_engine import atomic


def write_ini(path, sections):
    """Write {section: {option: value}} as an ini file (values as given), readable by root only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = inifile.render(sections)
    if not path.exists() or path.read_text() != text:
        atomic.write_text(str(path), text, mode=0o600)
    path.chmod(0o600)


def service_auth(box, user):
    """A keystoneauth password section (nova -> placement, neutron, ...)."""
    return {
        'auth_type': 'password',
        'auth_url': box.keystone_url,
        'project_domain_name': 'Default',
        'user_domain_name': 'Default',
        'project_name': 'service',
        'username': user,
        'password': box.secrets()[user],
        'region_name': box.region,
    }


def internal(box, section):
    """A keystoneauth adapter section that picks internal endpoints (a remote box)."""
    if box.remote:
        section['valid_interfaces'] = 'internal'
    return section


def authtoken(box, user):
    """keystonemiddleware's section for a service validating tokens as `user`.

    It validates through the internal Keystone; unauthenticated clients are
    sent (WWW-Authenticate) to the public one.
    """
    section = service_auth(box, user)
    del section['region_name']
    section.update(www_authenticate_uri=box.public_keystone_url, service_token_roles_required='true')
    if box.remote:
        section['interface'] = 'internal'
    return section


def keystone(box):
    etc = box.etc / 'keystone'
    write_ini(etc / 'keystone.conf', {
        'DEFAULT': {'log_file': box.logs / 'keystone-app.log'},
        'database': {'connection': box.db_url('keystone')},
        'token': {'provider': 'fernet'},
        'fernet_tokens': {'key_repository': etc / 'fernet-keys'},
        'credential': {'key_repository': etc / 'credential-keys'},
    })
    return etc


def glance(box):
    etc = box.etc / 'glance'
    data = box.root / 'glance'
    write_ini(etc / 'glance-api.conf', {
        'DEFAULT': {'enabled_backends': 'fs:file', 'log_file': box.logs / 'glance-app.log',
                    'bind_host': '127.0.0.1', 'bind_port': box.port('glance')},
        'database': {'connection': box.db_url('glance')},
        'glance_store': {'default_backend': 'fs'},
        'fs': {'filesystem_store_datadir': data / 'images'},
        'os_glance_staging_store': {'filesystem_store_datadir': data / 'staging'},
        'os_glance_tasks_store': {'filesystem_store_datadir': data / 'tasks'},
        'keystone_authtoken': authtoken(box, 'glance'),
        'paste_deploy': {'flavor': 'keystone'},
        'oslo_concurrency': {'lock_path': box.root / 'locks' / 'glance'},
        # An upload with img_signature* properties is verified against the
        # certificate in Barbican (cursive), read with the uploader's token.
        **key_manager(box),
    })
    shutil.copyfile(layout.VENV / 'etc' / 'glance' / 'glance-api-paste.ini',
                    etc / 'glance-api-paste.ini')
    for sub in ('images', 'staging', 'tasks'):
        (data / sub).mkdir(parents=True, exist_ok=True)
    return etc


def key_manager(box):
    """castellan's sections (nova, glance): keys and certificates are the box's Barbican's.

    castellan reads them with the token of the user whose request it is (nova:
    the request context's auth plugin; glance: a token auth at auth_endpoint),
    so a project only ever sees its own secrets. The box's services reach
    Barbican on its internal endpoint, never through a WAN path.
    """
    return {
        'key_manager': {'backend': 'barbican'},
        'barbican': {'auth_endpoint': box.keystone_url, 'barbican_endpoint_type': 'internal',
                     'barbican_region_name': box.region},
    }


def barbican(box):
    """Barbican (key-manager): its API alone, under uwsgi (services.api_services).

    Secrets are encrypted by the simple_crypto plugin with the box's own
    key-encryption key (secrets.json, `barbican_kek`) and kept in the box's
    MariaDB (store_crypto). No barbican-worker nor keystone-listener: storing
    and reading secrets and certificates needs neither, and with the queue off
    Barbican runs key orders (castellan's create_key) inside the API. barbican
    reads its configuration from oslo.config's default places, HOME first
    (services.barbican_env).
    """
    etc = box.etc / 'barbican'
    write_ini(etc / 'barbican.conf', {
        # host_href unset: secret references name the endpoint the client used.
        'DEFAULT': {'log_file': box.logs / 'barbican-app.log', 'db_auto_create': 'false'},
        'database': {'connection': box.db_url('barbican')},
        'keystone_authtoken': authtoken(box, 'barbican'),
        'secretstore': {'enabled_secretstore_plugins': 'store_crypto'},
        'crypto': {'enabled_crypto_plugins': 'simple_crypto'},
        'simple_crypto_plugin': {'kek': box.secrets()['barbican_kek']},
        'queue': {'enable': 'false'},
        'oslo_messaging_notifications': {'driver': 'noop'},
    })
    shutil.copyfile(layout.VENV / 'etc' / 'barbican' / 'barbican-api-paste.ini',
                    etc / 'barbican-api-paste.ini')
    return etc


def placement(box):
    etc = box.etc / 'placement'
    write_ini(etc / 'placement.conf', {
        'DEFAULT': {'log_file': box.logs / 'placement-app.log'},
        'placement_database': {'connection': box.db_url('placement')},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': authtoken(box, 'placement'),
    })
    return etc


def privsep_sections(*sections):
    """oslo.privsep daemons started directly: the box runs as root and has no sudo."""
    helper = '%s/bin/privsep-helper' % layout.VENV
    return {section: {'helper_command': helper} for section in sections}


NEUTRON_PRIVSEP = ('privsep', 'privsep_dhcp_release', 'privsep_ovs_vsctl', 'privsep_namespace',
                   'privsep_conntrack', 'privsep_link')


def neutron(box):
    """Neutron: the API (uwsgi), its RPC server and periodic workers, and the
    ML2/OVS agents (Open vSwitch, DHCP, L3) on the box's bridges.

    ML2 with the `openvswitch` mechanism driver on the userspace datapath
    (`datapath_type = netdev`: no kernel module here); tenant networks are
    VXLAN (a single node has no tunnel peers, so no VXLAN port is ever made;
    a second compute host would add them), the external network is flat on
    the physical network `public`, bridged to the box's br-ex, where this host
    has the gateway address. Security groups are enforced by the native OVS
    firewall (conntrack in OVS; the netdev datapath has its own), so ports
    plug straight into br-int, without hybrid Linux bridges.
    Agents run as root: commands run without a root helper, privsep without sudo.
    """
    etc = box.etc / 'neutron'
    net = box.network
    write_ini(etc / 'neutron.conf', {
        'DEFAULT': {
            'core_plugin': 'ml2', 'service_plugins': 'router', 'auth_strategy': 'keystone',
            'transport_url': box.transport_url(), 'log_file': box.logs / 'neutron-app.log',
            'api_paste_config': etc / 'api-paste.ini', 'state_path': box.root / 'neutron',
            'notify_nova_on_port_status_changes': 'true',
            'notify_nova_on_port_data_changes': 'true',
            'rpc_workers': '1', 'rpc_state_report_workers': '1',
            'dhcp_agents_per_network': '1',
        },
        'database': {'connection': box.db_url('neutron')},
        'keystone_authtoken': authtoken(box, 'neutron'),
        'nova': dict(service_auth(box, 'nova'), **({'endpoint_type': 'internal'} if box.remote else {})),
        'oslo_concurrency': {'lock_path': box.root / 'locks' / 'neutron'},
        'agent': {'root_helper': '', 'root_helper_daemon': '', 'use_helper_for_ns_read': 'false'},
        'ovs': {'integration_bridge': net.integration_bridge},
        **privsep_sections(*NEUTRON_PRIVSEP),
    })
    # With several compute hosts, tenant networks are VLANs of physical network `tenant`
    # (every host's tenant bridge, trunked together: compute_host.plumb); one host keeps
    # VXLAN, which needs no bridge. Not VXLAN across hosts: OVS 3.1's userspace
    # datapath drops the guests' checksum-offloaded TCP packets where it would
    # encapsulate them (doc/multi-host.md). vxlan stays a type driver for networks
    # made before.
    write_ini(etc / 'plugins' / 'ml2' / 'ml2_conf.ini', {
        'ml2': {'type_drivers': 'flat,vlan,vxlan', 'tenant_network_types': 'vlan' if box.compute_hosts else 'vxlan',
                'mechanism_drivers': 'openvswitch', 'extension_drivers': 'port_security'},
        'ml2_type_flat': {'flat_networks': '%s,%s' % (net.physnet, net.unbound_physnet)},
        'ml2_type_vlan': {'network_vlan_ranges': '%s:%s' % (net.tenant_physnet, net.vlan_range)},
        'ml2_type_vxlan': {'vni_ranges': '1:1000'},
    })
    mappings = [(net.physnet, net.external_bridge)]
    if box.compute_hosts:
        mappings.append((net.tenant_physnet, net.tenant_bridge))
    write_ini(etc / 'plugins' / 'ml2' / 'openvswitch_agent.ini', ovs_agent(net, mappings, tunnels=True))
    for host in box.compute_hosts:
        agent = ovs_agent(host.network, [(net.tenant_physnet, host.network.tenant_bridge)], tunnels=False)
        agent['DEFAULT'] = {'host': host.name}
        # Its host's own Open vSwitch (compute_host.py): the database at OVS's default path in
        # the host's mount namespace, and its bridges reach the controller across the management link.
        agent['ovs'].update(ovsdb_connection='unix:/run/openvswitch/db.sock', of_listen_address=host.gateway)
        write_ini(etc / 'plugins' / 'ml2' / ('openvswitch_agent-%s.ini' % host.tag), agent)
    agent_common = {'interface_driver': 'openvswitch'}
    write_ini(etc / 'dhcp_agent.ini', {
        # dnsmasq logs every lease it hands out (a log per network) beside the box's logs.
        'DEFAULT': dict(agent_common, dhcp_driver='neutron.agent.linux.dhcp.Dnsmasq',
                        enable_isolated_metadata='false', dnsmasq_base_log_dir=box.logs / 'dnsmasq'),
    })
    # Routers run a metadata proxy (haproxy) for 169.254.169.254, which hands
    # requests to the metadata agent (a unix socket under state_path), which
    # signs them with the shared secret for nova's metadata API.
    write_ini(etc / 'l3_agent.ini', {'DEFAULT': dict(agent_common, agent_mode='legacy',
                                                     enable_metadata_proxy='true')})
    write_ini(etc / 'metadata_agent.ini', {'DEFAULT': {
        'nova_metadata_host': '127.0.0.1', 'nova_metadata_port': box.port('nova-metadata'),
        'metadata_proxy_shared_secret': box.secrets()['metadata']}})
    shutil.copyfile(layout.VENV / 'etc' / 'neutron' / 'api-paste.ini', etc / 'api-paste.ini')
    return etc


def ovs_agent(net, mappings, tunnels):
    """One OVS agent's file: its bridges, its physical networks; a VXLAN endpoint or none."""
    agent = {
        'ovs': {'integration_bridge': net.integration_bridge, 'datapath_type': 'netdev',
                'bridge_mappings': ','.join('%s:%s' % mapping for mapping in mappings),
                'of_listen_port': net.of_listen_port},
        'agent': {'tunnel_types': 'vxlan' if tunnels else ''},
        'securitygroup': {'firewall_driver': 'openvswitch', 'enable_security_group': 'true'},
    }
    if tunnels:
        agent['ovs'].update(tunnel_bridge=net.tunnel_bridge, int_peer_patch_port=net.int_peer_patch_port,
                            tun_peer_patch_port=net.tun_peer_patch_port, local_ip='127.0.0.1')
    return agent


def _nova_common(box):
    sections = {
        'DEFAULT': {
            'transport_url': box.transport_url(),
            'my_ip': '127.0.0.1',
            'state_path': box.root / 'nova',
            'instances_path': box.instances_path,
            'use_rootwrap_daemon': 'false',
        },
        'keystone_authtoken': authtoken(box, 'nova'),
        'service_user': dict(service_auth(box, 'nova'), send_service_user_token='true'),
        'placement': internal(box, service_auth(box, 'nova')),
        'neutron': internal(box, dict(service_auth(box, 'nova'),
                                      ovs_bridge=box.network.integration_bridge,
                                      service_metadata_proxy='true',
                                      metadata_proxy_shared_secret=box.secrets()['metadata'])),
        'glance': internal(box, {'region_name': box.region}),
        'oslo_concurrency': {'lock_path': box.root / 'locks' / 'nova'},
        # No sudo here: privsep helpers start directly (the box runs as root).
        'nova_sys_admin': {'helper_command': '%s/bin/privsep-helper' % layout.VENV},
        'vnc': {'enabled': 'false'},
        'spice': {'enabled': 'false'},
        'serial_console': {'enabled': 'false'},
        'oslo_messaging_notifications': {'driver': 'noop'},
        **key_manager(box),
    }
    # As to the other services: the user's token, and nova's service token beside it.
    sections['barbican']['send_service_user_token'] = 'true'
    sections['barbican_service_user'] = service_auth(box, 'nova')
    if box.remote:
        # Domain names apart from the first box's, even though the libvirtds are apart too.
        sections['DEFAULT']['instance_name_template'] = '%s-%%08x' % box.name
        sections['keystone'] = internal(box, {'region_name': box.region})
    return sections


# A test cloud: short leases and a short grace, so that the e2e tier sees a
# server reaped within a minute (the defaults: 30 s at least, 45 s of grace).
LEASES = {'min_seconds': '10', 'max_seconds': '86400', 'grace_seconds': '15', 'reap_interval': '2'}


def cloudlet_services(box):
    """The configuration of openstack-cloudlet's own services.

    cloudlet-reaper acts as nova's service user (it lists and deletes every
    project's servers).
    """
    etc = box.etc / 'nova'
    reaper = dict(LEASES, **internal(box, service_auth(box, 'nova')))
    write_ini(etc / 'cloudlet-reaper.conf', {'cloudlet_lease': reaper})
    write_ini(etc / 'cloudlet-advertise.conf', {'cloudlet_discovery': advertiser(box)})
    return etc


def advertiser(box):
    """[cloudlet_discovery] of cloudlet-advertise: the box by DNS-SD, as `<box name>._cloudlet._tcp`.

    It reads Placement, Glance and nova-api as nova's service user. The first
    box advertises on loopback, where its endpoints are. A remote box's
    advertiser runs inside its WAN path's namespace (services.cloudlet_services),
    so that its multicast reaches this host over the veth, as a cloudlet's on
    the link would; it advertises the public Keystone URL (through the relay)
    but reads the APIs at the veth's root end, where they listen too: not
    through the relay, whose byte counters and cuts belong to the tests.
    """
    section = service_auth(box, 'nova')
    del section['region_name']          # [cloudlet_discovery] region says it
    section.update(instance_name=box.name, keystone_url=box.public_keystone_url, region=box.region,
                   addresses='127.0.0.1', refresh_interval='5')
    if box.remote:
        direct = 'http://%s:%d'
        overrides = ['%s:%s%s' % (service_type, direct % (box.wan.host_address, box.port(api)), path)
                     for _, service_type, api, path in identity.SERVICES
                     if service_type not in ('network', 'key-manager')]
        section.update(auth_url=direct % (box.wan.host_address, box.port('keystone')) + '/v3',
                       addresses=box.wan.address, endpoint_overrides=','.join(overrides))
    return section


SCHEDULER_FILTERS = ('ComputeFilter', 'ComputeCapabilitiesFilter', 'ImagePropertiesFilter',
                     'ServerGroupAntiAffinityFilter', 'ServerGroupAffinityFilter', 'AggregateNumInstancesFilter')


def nova(box):
    """nova.conf (API, conductor, scheduler) and nova-cpu.conf (compute), as devstack splits them;
    a further compute host reads nova-cpu.conf, then its own nova-cpu-<tag>.conf.
    """
    etc = box.etc / 'nova'
    box.instances_path.mkdir(parents=True, exist_ok=True)
    api_conf = _nova_common(box)
    api_conf['DEFAULT'].update({'log_file': box.logs / 'nova-api-app.log',
                                'osapi_compute_workers': '1'})
    api_conf.update({
        'api_database': {'connection': box.db_url('nova_api')},
        'database': {'connection': box.db_url('nova_cell1')},
        'wsgi': {'api_paste_config': etc / 'api-paste.ini'},
        'conductor': {'workers': '1'},
        # One compute host: a reschedule could only retry the same host, and its
        # fault ("Exceeded maximum number of retries") would hide the cause (e.g.
        # "Binding failed for port ..."): fail the build at once with that cause.
        'scheduler': {'workers': '1', 'discover_hosts_in_cells_interval': '-1', 'max_attempts': '1'},
        # nova's default filters, and a per-aggregate instance limit (metadata
        # max_instances_per_host): what the e2e tests use to fill a host.
        'filter_scheduler': {'enabled_filters': ','.join(SCHEDULER_FILTERS)},
        'api': {'auth_strategy': 'keystone'},
        # Versioned notifications on the bus (conductor sends the aggregate image
        # pre-cache's per-host results as aggregate.cache_images.progress).
        'notifications': {'notification_format': 'versioned'},
        'oslo_messaging_notifications': {'driver': 'messagingv2'},
    })
    api_conf['cloudlet_lease'] = LEASES
    write_ini(etc / 'nova.conf', api_conf)
    write_ini(etc / 'nova-metadata.conf', {'DEFAULT': {'log_file': box.logs / 'nova-metadata-app.log'}})
    cpu_conf = _nova_common(box)
    # TCG guests of a few hundred MB: plenty of RAM, two real cores.
    cpu_conf['DEFAULT']['cpu_allocation_ratio'] = '8.0'
    # No memory balloon in nova's domains (mem_stats_period_seconds = 0): QEMU
    # would discard ballooned or reported-free guest RAM by punching holes in
    # a base's shared RAM file, so bases captured with one restore from their
    # full memory image ([cloudlet] memory_restore, doc/nova-driver.md).
    cpu_conf['libvirt'] = {'cpu_mode': 'none', 'mem_stats_period_seconds': '0'}
    # os-vif plugs ports into the box's OVS bridges (ovsdb at its default
    # tcp:127.0.0.1:6640); a vif-plugged event that never comes fails the
    # spawn after a minute, not nova's default five.
    cpu_conf.update(privsep_sections('vif_plug_ovs_privileged', 'vif_plug_linux_bridge_privileged'))
    cpu_conf['DEFAULT']['vif_plugging_timeout'] = '60'
    if box.remote:
        cpu_conf['libvirt']['connection_uri'] = box.libvirt_uri
    # Test clouds: a cut WAN link is given up on in seconds, not the default minute, and what a
    # roll back left behind it is deleted seconds after the link is back.
    cpu_conf['cloudlet_handoff'] = {'connect_timeout': '10', 'stall_timeout': '15', 'cleanup_retry_interval': '5'}
    # A cold migration's destination that does not answer is given up on after a minute (default ten).
    cpu_conf['cloudlet'] = {'handoff_receive_timeout': '300', 'migration_prepare_timeout': '60'}
    # Traits of newly cached bases reach Placement within 15 s (default 60 s).
    cpu_conf['DEFAULT']['update_resources_interval'] = '15'
    write_ini(etc / 'nova-cpu.conf', cpu_conf)
    for host in box.compute_hosts:
        host.nova_state.mkdir(parents=True, exist_ok=True)
        write_ini(etc / ('nova-cpu-%s.conf' % host.tag), {
            'DEFAULT': {'host': host.name, 'my_ip': host.address, 'state_path': host.nova_state},
            'libvirt': {'connection_uri': host.libvirt_uri, 'live_migration_inbound_addr': host.address},
            'os_vif_ovs': {'ovsdb_connection': 'unix:/run/openvswitch/db.sock'},
            'neutron': {'ovs_bridge': host.network.integration_bridge},
            # An edge host with little disk: it keeps no base it does not use (the e2e
            # tests see a base aged out within a minute and fetched again when needed).
            'cloudlet': {'base_store_budget_mb': '1'},
            'image_cache': {'manager_interval': '15', 'remove_unused_original_minimum_age_seconds': '30'},
        })
    # Stock nova 34 api-paste; cloudlet-configure then plugs our router into it.
    stock = layout.VENV / 'etc' / 'nova' / 'api-paste.ini'
    shutil.copyfile(stock, etc / 'api-paste.ini')
    return etc
