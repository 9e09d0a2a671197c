"""A tempest workspace for a box: <box root>/tempest, its etc/tempest.conf
written from the box's layout, secrets and resources (tools/tempest.sh).

The flags say what the box can do, so tempest skips the rest by itself:
Neutron runs ML2/OVS with DHCP and L3 agents (each test project gets its own
network and router, interfaces attach, floating IPs work), but the test guest
has no SSH server (no validation over SSH, no tempest scenario tests); there
is no migration or resize (nothing migrates into the box's first host,
allow_resize_to_same_host is off), no Cinder or Swift, and no consoles but the
console log.

The plugin's own options ([cloudlet], doc/tempest-plugin.md): the test guest
is tempest's image, and the tests serve overlays where the box's outbound
policy lets nova fetch them (http_serve.ADDRESS and its ports).
"""

import subprocess
import sys

from cloudlet_box import configs
from cloudlet_box import dashboard
from cloudlet_box import http_serve
from cloudlet_box import identity
from cloudlet_box import layout
from cloudlet_box import network
from cloudlet_box import resources
from cloudlet_box import services
from cloudlet_box import wan

# Services this box does not run (tempest's own, and common plugins').
NOT_RUNNING = ('cinder', 'swift', 'heat', 'ironic', 'designate', 'octavia',
               'manila', 'aodh', 'ceilometer', 'gnocchi')


def workspace(box):
    return box.root / 'tempest'


def ensure_workspace(box):
    """`tempest init` once; the registry of workspaces stays in the box too."""
    path = workspace(box)
    if not (path / '.stestr.conf').exists():
        subprocess.run([str(layout.VENV / 'bin' / 'tempest'), 'init', '--name', '%s-tempest' % box.name,
                        '--workspace-path', str(box.root / 'tempest-workspaces.yaml'), str(path)],
                       check=True, stdout=subprocess.DEVNULL)
    return path


def _lookups(box):
    """Image and flavor ids, the Neutron extensions that are really loaded, the public network."""
    nova, glance = resources.admin_clients(box)
    image = next(glance.images.list(filters={'name': resources.GUEST_IMAGE, 'status': 'active'}),
                 None)
    if image is None:
        sys.exit('no active image %s: run tools/box.sh up' % resources.GUEST_IMAGE)
    flavors = {f.name: f.id for f in nova.flavors.list(is_public=None)}
    session = identity.admin_session(box)
    extensions = session.get(box.url('neutron') + '/v2.0/extensions').json()['extensions']
    public = session.get(box.url('neutron') + '/v2.0/networks?name=%s' % network.PUBLIC).json()
    return (image['id'], flavors, sorted(e['alias'] for e in extensions),
            public['networks'][0]['id'])


def handoff_destination(box):
    """[cloudlet] handoff_*: box2's demo user at its public Keystone, through the WAN path,
    when box2 is up (for a test run against box); else nothing (the handoff test skips).
    """
    other = layout.named(layout.BOX2.name)
    if other.name == box.name or not wan.WanPath(other).is_up():
        return {}
    return {'handoff_auth_url': other.public_keystone_url, 'handoff_region_name': other.region,
            'handoff_username': 'demo', 'handoff_password': other.secrets()['demo'],
            'handoff_project_name': 'demo', 'handoff_domain_name': 'Default',
            'handoff_endpoint_type': 'public'}


def sections(box):
    image_id, flavors, net_extensions, public_id = _lookups(box)
    path = workspace(box)
    horizon = bool(services.dashboard_services(box))
    return {
        'DEFAULT': {'log_dir': path / 'logs', 'log_file': 'tempest.log'},
        'oslo_concurrency': {'lock_path': path / 'tempest_lock'},
        'identity': {'uri_v3': box.keystone_url, 'auth_version': 'v3', 'region': box.region},
        'auth': {
            # Each test class gets its own projects and users, made as admin.
            'use_dynamic_credentials': 'true',
            'admin_username': 'admin', 'admin_password': box.secrets()['admin'],
            'admin_project_name': 'admin', 'admin_domain_name': 'Default',
            # A network, subnet and router (to `public`) per test project.
            'create_isolated_networks': 'true',
        },
        'service_available': dict({'nova': 'true', 'glance': 'true', 'neutron': 'true',
                                   'cloudlet': 'true', 'horizon': 'true' if horizon else 'false'},
                                  **{name: 'false' for name in NOT_RUNNING}),
        # tempest's dashboard scenario (a log-in through Horizon's form) runs with the smoke tests.
        'dashboard': {'dashboard_url': dashboard.url(box), 'login_url': dashboard.url(box) + 'auth/login/'},
        'cloudlet': dict({
            'app_port': str(network.APP_PORT),
            'overlay_serve_address': http_serve.ADDRESS,
            'overlay_serve_ports': '%d-%d' % (http_serve.PORTS[0], http_serve.PORTS[-1]),
        }, **handoff_destination(box)),
        'compute': {
            'image_ref': image_id, 'image_ref_alt': image_id,
            'flavor_ref': flavors['m1.tiny'], 'flavor_ref_alt': flavors['m1.small'],
            'region': box.region,
            # As devstack: test every microversion nova offers.
            'min_microversion': '2.1', 'max_microversion': 'latest',
        },
        'compute-feature-enabled': {
            'console_output': 'true',
            # Consoles are disabled in nova.conf ([vnc], [spice], [serial_console]).
            'vnc_console': 'false', 'spice_console': 'false', 'serial_console': 'false',
            # Nothing migrates into the box's first host (doc/multi-host.md),
            # and allow_resize_to_same_host is off.
            'resize': 'false', 'cold_migration': 'false', 'live_migration': 'false',
            'shelve_migrate': 'false', 'block_migration_for_live_migration': 'false',
            # Tempest checks the metadata service from inside the guest, over SSH.
            'interface_attach': 'true', 'metadata_service': 'false',
            # No Cinder.
            'attach_encrypted_volume': 'false', 'swap_volume': 'false',
            'volume_multiattach': 'false', 'volume_backed_live_migration': 'false',
        },
        'network': {
            'public_network_id': public_id, 'floating_network_name': network.PUBLIC,
            'project_network_cidr': '10.100.0.0/16', 'project_network_mask_bits': '28',
            # Tenant networks are reached through routers and floating IPs only.
            'project_networks_reachable': 'false',
        },
        'network-feature-enabled': {
            'api_extensions': ','.join(net_extensions),
            'floating_ips': 'true', 'port_security': 'true', 'ipv6': 'false',
        },
        # The test guest runs no SSH server: tempest cannot log into servers.
        'validation': {'run_validation': 'false'},
    }


def main():
    box = layout.current()
    path = ensure_workspace(box)
    configs.write_ini(path / 'etc' / 'tempest.conf', sections(box))
    print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
