"""The box's own daemons: how each starts and how we know it is up."""

import dataclasses

from cloudlet_box import agent_mounts
from cloudlet_box import compute_host
from cloudlet_box import dashboard
from cloudlet_box import host_ssh
from cloudlet_box import layout


@dataclasses.dataclass(frozen=True)
class Service:
    name: str
    argv: tuple
    env: dict
    ready_url: str = None     # answers HTTP once the API is up


def uwsgi(box, name, module, config_env, config_dir, extra=(), env=None, paste=None, mount=None):
    """An API under uwsgi as the recipes say: `Connection: close` on every
    answer (pooled keystoneauth connections otherwise see resets). It listens
    on loopback and, for a remote box, on its WAN path's root end as well
    (but for the box's internal services, layout.INTERNAL_PORTS). The
    application is a WSGI `module`, the pipeline of a `paste` deploy file, or
    a `mount` ('/prefix=module': the application sees the prefix as its script name).
    """
    listen = ()
    addresses = ('127.0.0.1',) if name in layout.INTERNAL_PORTS else box.listen_addresses
    for address in addresses:
        listen += ('--http', '%s:%d' % (address, box.port(name)))
    argv = (
        str(layout.VENV / 'bin' / 'uwsgi'),
    ) + listen + (
        ('--paste', 'config:%s' % paste) if paste
        else ('--mount', mount, '--manage-script-name') if mount
        else ('--module', module)
    ) + (
        '--master', '--processes', '1', '--threads', '4', '--die-on-term',
        '--virtualenv', str(layout.VENV), '--add-header', 'Connection: close',
        '--http-timeout', '3600', '--buffer-size', '65535',
        '--pidfile', str(box.run / (name + '.uwsgi.pid')),
    ) + tuple(extra)
    return Service(name, argv, dict({config_env: str(config_dir)}, **(env or {})), box.url(name) + '/')


def barbican_env(box):
    """Where barbican's processes find barbican.conf: barbican.wsgi.api takes
    no configuration path (and reads /etc/barbican's paste file), barbican's
    plugins parse the configuration again, from the default places, when
    imported, and oslo.config looks in ~/.barbican/, then ~/, before
    /etc/barbican/: with HOME at the box's barbican directory, two boxes on
    one machine keep their own.
    """
    return {'HOME': str(box.etc / 'barbican')}


def barbican_api(box):
    """Barbican's API: the box's paste file (keystonemiddleware, then the API), under uwsgi.

    --lazy-apps (as devstack runs every API): the application loads in the
    worker, after the fork. Loaded in the master, barbican's database engine
    and threads were forked into the worker, which then sometimes never
    answered (its log: "app created and initialized", then nothing).
    """
    etc = box.etc / 'barbican'
    return uwsgi(box, 'barbican-api', None, 'HOME', etc, ('--lazy-apps',),
                 paste=etc / 'barbican-api-paste.ini')


# Chunked request bodies: glance's image uploads (as devstack runs it) and
# nova-api's handoff residues (PUT /servers/{id}/cloudlet-residue).
CHUNKED_INPUT_UWSGI = ('--http-chunked-input', '--http-raw-body', '--http-auto-chunked',
                '--chunked-input-limit', '4096000')


def api_services(box):
    etc = box.etc
    return {
        'keystone': uwsgi(box, 'keystone', 'keystone.wsgi.api:application',
                          'OS_KEYSTONE_CONFIG_DIR', etc / 'keystone'),
        'glance': uwsgi(box, 'glance', 'glance.wsgi.api:application',
                        'OS_GLANCE_CONFIG_DIR', etc / 'glance', CHUNKED_INPUT_UWSGI),
        'placement': uwsgi(box, 'placement', 'placement.wsgi.api:application',
                           'OS_PLACEMENT_CONFIG_DIR', etc / 'placement'),
        'neutron': uwsgi(box, 'neutron', 'neutron.wsgi.api:application',
                         'OS_NEUTRON_CONFIG_DIR', etc / 'neutron'),
        'nova-api': uwsgi(box, 'nova-api', 'nova.wsgi.osapi_compute:application',
                          'OS_NOVA_CONFIG_DIR', etc / 'nova', CHUNKED_INPUT_UWSGI),
        # What guests reach at 169.254.169.254 through Neutron's router and
        # metadata agent; nova-metadata.conf only names its own log file.
        'nova-metadata': uwsgi(box, 'nova-metadata', 'nova.wsgi.metadata:application',
                               'OS_NOVA_CONFIG_DIR', etc / 'nova',
                               env={'OS_NOVA_CONFIG_FILES': 'api-paste.ini;nova.conf;nova-metadata.conf'}),
        'barbican-api': barbican_api(box),
    }


def dashboard_service(box):
    """Horizon at /dashboard/ (dashboard.py writes its settings and collects its static files)."""
    # uwsgi matches --static-map against the path without the mount's prefix (--manage-script-name).
    extra = ('--pythonpath', str(dashboard.settings_dir(box)),
             '--static-map', '/static=%s' % dashboard.static_root(box),
             '--lazy-apps')
    return uwsgi(box, 'horizon', None, 'DJANGO_SETTINGS_MODULE', 'openstack_dashboard.settings', extra,
                 mount=dashboard.WEBROOT.rstrip('/') + '=openstack_dashboard.wsgi:application')


def nova_service(box, binary, config_file, host=None):
    """A nova process; for a further compute `host`, in its mount namespace with its own file too."""
    name = host.service(binary) if host else binary
    argv = (str(layout.VENV / 'bin' / binary), '--config-file', str(box.etc / 'nova' / config_file))
    if host:
        # In the host's network namespace too (compute_host.py); host_relay.py brings it the rest.
        argv = compute_host.enter(host) + argv + (
            '--config-file', str(box.etc / 'nova' / ('nova-cpu-%s.conf' % host.tag)))
    argv += ('--log-file', str(box.logs / (name + '.log')))
    # The engine's own libvirt connections (hypervisor.connect) follow the host's libvirt.
    uri = host.libvirt_uri if host else (box.libvirt_uri if box.remote else None)
    return Service(name, argv, {'CLOUDLET_LIBVIRT_URI': uri} if uri else {})


def neutron_service(box, binary, *agent_configs, own_namespaces=False, name=None, host=None):
    """A neutron process with neutron.conf (+ ml2_conf.ini or an agent's file).
    `own_namespaces`: an agent that makes network namespaces runs, for a
    remote box, in the box's agents' mount namespace (agent_mounts.py).
    `host`: the OVS agent of a further compute host runs in its mount namespace.
    """
    etc = box.etc / 'neutron'
    enter = agent_mounts.AgentMounts(box).enter() if own_namespaces and box.remote else ()
    if host is not None:
        enter = compute_host.enter(host, net=False)
    argv = enter + (str(layout.VENV / 'bin' / binary), '--config-file', str(etc / 'neutron.conf'))
    for config in agent_configs:
        argv += ('--config-file', str(etc / config))
    name = name or binary
    return Service(name, argv + ('--log-file', str(box.logs / (name + '.log'))), {})


def neutron_services(box):
    """The API under uwsgi serves no RPC: the agents' server and neutron's
    periodic tasks are processes of their own (as devstack runs them).
    """
    ml2 = 'plugins/ml2/ml2_conf.ini'
    # Each further compute host's OVS agent (its own host name and bridges).
    hosts = {host.service('neutron-openvswitch-agent'): neutron_service(
        box, 'neutron-openvswitch-agent', 'plugins/ml2/openvswitch_agent-%s.ini' % host.tag,
        name=host.service('neutron-openvswitch-agent'), host=host) for host in box.compute_hosts}
    return {
        'neutron-rpc-server': neutron_service(box, 'neutron-rpc-server', ml2),
        'neutron-periodic-workers': neutron_service(box, 'neutron-periodic-workers', ml2),
        'neutron-openvswitch-agent': neutron_service(box, 'neutron-openvswitch-agent',
                                                     'plugins/ml2/openvswitch_agent.ini'),
        'neutron-dhcp-agent': neutron_service(box, 'neutron-dhcp-agent', 'dhcp_agent.ini',
                                              own_namespaces=True),
        'neutron-l3-agent': neutron_service(box, 'neutron-l3-agent', 'l3_agent.ini',
                                            own_namespaces=True),
        'neutron-metadata-agent': neutron_service(box, 'neutron-metadata-agent', 'metadata_agent.ini'),
        **hosts,
    }


def compute_service(box, host=None):
    """The nova-compute of the box's first host, or of a further compute `host` (layout.ComputeHost)."""
    return nova_service(box, 'nova-compute', 'nova-cpu.conf', host)


def host_relay(box, host):
    """What a further compute host's nova-compute reaches through host_relay.py (before it starts)."""
    argv = (str(layout.VENV / 'bin' / 'python'), '-m', 'cloudlet_box.host_relay', '--netns', host.netns_path)
    for address, port in compute_host.relayed(host):
        argv += ('--route', '%s:%d' % (address, port))
    return Service(host.service('host-relay'), argv, {'PYTHONPATH': str(layout.REPO / 'tools')})


def nova_services(box):
    computes = [compute_service(box)] + [compute_service(box, host) for host in box.compute_hosts]
    return {
        'nova-conductor': nova_service(box, 'nova-conductor', 'nova.conf'),
        'nova-scheduler': nova_service(box, 'nova-scheduler', 'nova.conf'),
        **{relay.name: relay for relay in (host_relay(box, host) for host in box.compute_hosts)},
        **{host.service('sshd'): Service(host.service('sshd'), host_ssh.argv(host), {})
           for host in box.compute_hosts},
        **{service.name: service for service in computes},
    }


def cloudlet_services(box):
    """openstack-cloudlet's own services beside nova (configs.cloudlet_services writes their files)."""
    reaper = (str(layout.VENV / 'bin' / 'cloudlet-reaper'), '--config-file',
              str(box.etc / 'nova' / 'cloudlet-reaper.conf'), '--log-file', str(box.logs / 'cloudlet-reaper.log'))
    advertise = (str(layout.VENV / 'bin' / 'cloudlet-advertise'), '--config-file',
                 str(box.etc / 'nova' / 'cloudlet-advertise.conf'), '--log-file',
                 str(box.logs / 'cloudlet-advertise.log'))
    if box.remote:
        # In the WAN path's namespace: its multicast crosses the veth (configs.advertiser).
        advertise = ('ip', 'netns', 'exec', box.wan.namespace) + advertise
    return {'cloudlet-reaper': Service('cloudlet-reaper', reaper, {}),
            'cloudlet-advertise': Service('cloudlet-advertise', advertise, {})}


def dashboard_services(box):
    """Horizon runs in the first box only (a remote box is a handoff's destination, used through its APIs)."""
    return {} if box.remote else {'horizon': dashboard_service(box)}


def all_services(box):
    """In start order (stop goes the other way)."""
    return {**api_services(box), **neutron_services(box), **nova_services(box), **cloudlet_services(box),
            **dashboard_services(box)}
