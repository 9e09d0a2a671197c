"""`up`: bring a box from nothing (or from stopped) to a working cloud.

Every step is idempotent: a second `up` on a running box only checks, and an
`up` after `stop` restarts the daemons without touching the data.
"""

import contextlib
import hashlib
import os
import subprocess
import sys
import time

from cloudlet_box import box_libvirt
from cloudlet_box import compute_host
from cloudlet_box import configs
from cloudlet_box import dashboard
from cloudlet_box import host_ssh
from cloudlet_box import http_serve
from cloudlet_box import identity
from cloudlet_box import infra
from cloudlet_box import layout
from cloudlet_box import netns_link
from cloudlet_box import network
from cloudlet_box import processes
from cloudlet_box import resources
from cloudlet_box import services
from cloudlet_box import wan

VENV_BIN = layout.VENV / 'bin'


class Timings:
    def __init__(self):
        self.rows = []

    @contextlib.contextmanager
    def step(self, label):
        print('[box] %s' % label, flush=True)
        started = time.monotonic()
        yield
        self.rows.append((label, time.monotonic() - started))

    def print(self):
        print('[box] bring-up timings:')
        for label, seconds in self.rows:
            print('[box]   %-44s %6.1f s' % (label, seconds))


def run(argv, **kwargs):
    """Run a management command; on failure show its output, not a traceback."""
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise processes.StartError('%s failed (exit %d):\n%s%s' % (
            ' '.join(str(a) for a in argv[:3]), result.returncode, result.stdout[-2000:],
            result.stderr[-3000:]))
    return result.stdout


def start_services(box, to_start, timeout=120):
    """Start them all, then wait for each API to answer (they come up in parallel)."""
    for service in to_start:
        processes.start(service.name, list(service.argv), box.run, box.logs, env=service.env)
    for service in to_start:
        if service.ready_url:
            processes.wait_for(service.name, lambda: processes.http_answers(service.ready_url), timeout,
                               pid_check=lambda: processes.pid_of(box.run / (service.name + '.pid')),
                               log=box.logs / (service.name + '.log'))


def keystone(box):
    etc = configs.keystone(box)
    manage = [VENV_BIN / 'keystone-manage', '--config-file', etc / 'keystone.conf']
    for repo, command in (('fernet-keys', 'fernet_setup'), ('credential-keys', 'credential_setup')):
        if not (etc / repo / '0').exists():
            run(manage + [command, '--keystone-user', 'root', '--keystone-group', 'root'])
    run(manage + ['db_sync'])
    run(manage + ['bootstrap', '--bootstrap-password', box.secrets()['admin'],
                  '--bootstrap-admin-url', box.keystone_url,
                  '--bootstrap-internal-url', box.keystone_url,
                  '--bootstrap-public-url', box.public_keystone_url,
                  '--bootstrap-region-id', box.region])
    start_services(box, [services.api_services(box)['keystone']])


def sync_databases(box):
    etc = box.etc
    run([VENV_BIN / 'glance-manage', '--config-file', etc / 'glance' / 'glance-api.conf', 'db_sync'])
    run([VENV_BIN / 'placement-manage', '--config-file', etc / 'placement' / 'placement.conf',
         'db', 'sync'])
    run([VENV_BIN / 'neutron-db-manage', '--config-file', etc / 'neutron' / 'neutron.conf',
         '--config-file', etc / 'neutron' / 'plugins' / 'ml2' / 'ml2_conf.ini', 'upgrade', 'heads'])
    nova_manage = [VENV_BIN / 'nova-manage', '--config-file', etc / 'nova' / 'nova.conf']
    run(nova_manage + ['api_db', 'sync'])
    run(nova_manage + ['cell_v2', 'map_cell0', '--database_connection', box.db_url('nova_cell0')])
    if ' cell1 ' not in run(nova_manage + ['cell_v2', 'list_cells']):
        run(nova_manage + ['cell_v2', 'create_cell', '--name', 'cell1', '--verbose'])
    run(nova_manage + ['db', 'sync'])
    # Barbican's alembic migrations make its whole schema (db_auto_create stays off, as devstack has it).
    run([VENV_BIN / 'barbican-manage', 'db', 'upgrade', '-v', 'head'], env=dict(
        os.environ, **services.barbican_env(box)))


def configure_cloudlet(box):
    """The cloudlet part of nova's configuration: the very step the devstack
    plugin runs (cloudlet-configure), so bringing the box up exercises it.
    """
    etc = box.etc / 'nova'
    configure = VENV_BIN / 'cloudlet-configure'
    # The demo and the tests serve overlays and base packages from this
    # machine, at http_serve.ADDRESS; nova-api fetches base package URLs and
    # the negotiation's overlay header, compute fetches overlays. The first
    # box's compute also hands off to box2's public endpoints (its WAN path's
    # address). The outbound policy allows exactly these addresses: 127.0.0.1,
    # where the box's APIs listen, and 169.254.169.254 stay refused
    # (tests/e2e/test_bad_input.py).
    destinations = [other.wan.address for other in (layout.BOX2,) if other.name != box.name]

    def allowed(*addresses):
        return ['cloudlet.overlay_url_allowed_hosts=%s' % http_serve.ADDRESS,
                'cloudlet.outbound_allowed_networks=%s' % ','.join('%s/32' % a for a in addresses)]
    api = [configure, 'nova', '--config-file', etc / 'nova.conf', '--role', 'api',
           '--api-paste', etc / 'api-paste.ini',
           '--set', *allowed(http_serve.ADDRESS), 'cloudlet.api_state_dir=%s' % (box.root / 'cloudlet-api')]
    compute = [configure, 'nova', '--config-file', etc / 'nova-cpu.conf', '--role', 'compute',
               '--virt-type', 'qemu', '--state-dir', box.state_dir,
               '--set', *allowed(http_serve.ADDRESS, *destinations)]
    for command in (api, compute):
        run(command)
        run(command + ['--check'])


def warm_neutron(box):
    """neutron 29 answers its first GET /v2.0/ports with a 500 until another
    database-backed request has run; an authenticated network list does it.
    """
    session = identity.admin_session(box)
    for resource in ('networks', 'ports', 'security-groups'):
        session.get(box.url('neutron') + '/v2.0/' + resource, raise_exc=True)


def wait_for_compute(box, log_starts, timeout=180):
    """Every compute host's nova-compute up (`log_starts`: {service name: its log's size before})."""
    session = identity.admin_session(box)
    url = box.url('nova-api') + '/v2.1/os-services?binary=nova-compute'
    wanted = 1 + len(box.compute_hosts)

    def computes_up():
        services_ = session.get(url, raise_exc=False).json().get('services', [])
        return sum(s['state'] == 'up' for s in services_) >= wanted
    for name, log_start in log_starts.items():
        processes.wait_for(name, computes_up, timeout,
                           pid_check=lambda: processes.pid_of(box.run / (name + '.pid')),
                           log=box.logs / (name + '.log'), fatal=processes.NOVA_FATAL,
                           log_start=log_start)
    run([VENV_BIN / 'nova-manage', '--config-file', box.etc / 'nova' / 'nova.conf',
         'cell_v2', 'discover_hosts'])


def installed_code():
    """A digest of the installed openstack-cloudlet: pip's RECORD lists every file's hash."""
    records = sorted(layout.VENV.glob('lib/python3*/site-packages/openstack_cloudlet-*.dist-info/RECORD'))
    return hashlib.sha256(b''.join(path.read_bytes() for path in records)).hexdigest()


def restart_if_reinstalled(box):
    """Stop the daemons started before the project was reinstalled: they run the old code.

    The steps of `up` start them again; `up` is otherwise a check on a running box.
    """
    stamp = box.run / 'installed-code'
    code = installed_code()
    if (stamp.read_text() if stamp.exists() else None) != code:
        running = [name for name in services.all_services(box)
                   if processes.pid_of(box.run / (name + '.pid'))]
        if running:
            print('[box] openstack-cloudlet was reinstalled since its daemons started: restarting them',
                  flush=True)
            for name in reversed(running):
                processes.stop(name, box.run, grace=15)
    return lambda: stamp.write_text(code)


def up(box, timings):
    for path in (box.etc, box.logs, box.run):
        path.mkdir(parents=True, exist_ok=True)
    layout.record(box)
    stale = netns_link.remove_stale_namespaces()
    if stale:
        print('[box] removed the names of network namespaces a reboot left: %s' % ', '.join(stale), flush=True)
    record_code = restart_if_reinstalled(box)
    with timings.step('MariaDB, RabbitMQ, libvirtd' + (' (the box\'s own)' if box.remote else '')):
        infra.start_mariadb()
        infra.create_databases(box)
        infra.start_rabbitmq()
        infra.create_rabbit_user(box)
        if box.remote:
            box_libvirt.BoxLibvirt(box).start()
        else:
            infra.start_libvirtd()
        for host in box.compute_hosts:
            compute_host.network_up(host)
            box_libvirt.BoxLibvirt(host).start()
    if box.remote:
        # Before the APIs: they listen on the path's root end too.
        with timings.step('WAN path (namespace %s, veth, relay)' % box.wan.namespace):
            wan.WanPath(box).up()
    with timings.step('Keystone (db sync, bootstrap, uwsgi)'):
        keystone(box)
    with timings.step('users, projects, catalog'):
        identity.populate(box)
    with timings.step('configuration files, cloudlet-configure'):
        configs.glance(box)
        configs.placement(box)
        configs.neutron(box)
        configs.nova(box)
        configs.barbican(box)
        configs.cloudlet_services(box)
        host_ssh.prepare(box)
        configure_cloudlet(box)
    with timings.step('database schemas (glance, placement, neutron, nova, barbican)'):
        sync_databases(box)
    with timings.step('Open vSwitch (userspace datapath), %s' % box.network.external_bridge):
        network.plumb(box)
    with timings.step('Glance, Placement, Neutron, nova-api, nova-metadata, Barbican (uwsgi)'):
        apis = services.api_services(box)
        start_services(box, [apis[name] for name in ('glance', 'placement', 'neutron', 'nova-api',
                                                    'nova-metadata', 'barbican-api')])
        warm_neutron(box)
    with timings.step('Neutron RPC server, periodic workers, OVS, DHCP, L3, metadata agents'):
        neutron = services.neutron_services(box)
        servers = ('neutron-rpc-server', 'neutron-periodic-workers')
        start_services(box, [neutron[name] for name in servers])
        # An agent's first call (DHCP: get_active_networks_info) sent before
        # the RPC server consumes its topic is lost, and the agent would wait
        # a minute for the answer: start them once it listens.
        processes.wait_for('neutron-rpc-server', lambda: infra.rabbit_consumers(box, 'q-plugin') > 0, 120,
                           pid_check=lambda: processes.pid_of(box.run / 'neutron-rpc-server.pid'),
                           log=box.logs / 'neutron-rpc-server.log')
        start_services(box, [service for name, service in neutron.items() if name not in servers])
        network.wait_for_agents(box)
    with timings.step('nova-conductor, nova-scheduler, nova-compute' + (
            ' (%d hosts)' % (1 + len(box.compute_hosts)) if box.compute_hosts else '')):
        nova = services.nova_services(box)
        log_starts = {name: processes.log_size(box.logs / (name + '.log'))
                      for name in nova if name.startswith('nova-compute')}
        start_services(box, list(nova.values()))
        wait_for_compute(box, log_starts)
    with timings.step('cloudlet-reaper, cloudlet-advertise'):
        start_services(box, list(services.cloudlet_services(box).values()))
    with timings.step('flavors, guest image, clouds.yaml'):
        resources.populate(box)
    with timings.step('networks: public, private and router per project'):
        network.populate(box)
    if box.compute_hosts:
        with timings.step('aggregate %s (every compute host)' % resources.AGGREGATE):
            resources.ensure_aggregate(box)
    horizon = services.dashboard_services(box).get('horizon')
    if horizon:
        with timings.step('Horizon with the cloudlet plugin (settings, static files, uwsgi)'):
            dashboard.prepare(box)
            start_services(box, [horizon])
    record_code()


def hosts_changed(box):
    """Why `box` cannot come up as asked, or None: its tenant networks were made for another number of
    compute hosts (VXLAN with one, VLANs with two: doc/multi-host.md), and servers on a further host
    would fail to bind their ports.
    """
    recorded = layout.recorded_hosts(box.name)
    if recorded and recorded != box.hosts:
        return ('box %s was brought up with %d compute host(s), not %d: its tenant networks are those of %d. '
                '`tools/box.sh destroy` first (tools/test.sh does), or set CLOUDLET_BOX_HOSTS=%d'
                % (box.name, recorded, box.hosts, recorded, recorded))
    return None


def main_up(box):
    timings = Timings()
    refused = hosts_changed(box)
    if refused:
        print('[box] ERROR: %s' % refused, file=sys.stderr)
        return 1
    try:
        up(box, timings)
    except processes.StartError as error:
        print('[box] ERROR: %s' % error, file=sys.stderr)
        return 1
    timings.print()
    print('[box] up: %s (clouds %s-admin, %s-demo, %s-alt in %s)' % (
        box.name, box.name, box.name, box.name, resources.CLOUDS_YAML))
    if services.dashboard_services(box):
        print('[box] dashboard: %s (users admin, demo and alt: their passwords are in %s)'
              % (dashboard.url(box), resources.CLOUDS_YAML))
    if box.remote:
        print('[box] libvirt: %s; public endpoints through the WAN path: %s '
              '(clouds %s-wan-admin, -demo, -alt)' % (box.libvirt_uri, box.public_keystone_url, box.name))
    return 0
