"""A tempest workspace for a box: <box root>/tempest, its etc/tempest.conf
written from the box's layout, secrets and resources (tools/tempest.sh).

The flags say what this single-node box can do, so tempest skips the rest by
itself: Neutron has no mechanism driver and no agents (no port binds: no
isolated networks, no interface attach, no validation over SSH), there is one
compute host (no migration, resize needs allow_resize_to_same_host), no
Cinder or Swift, and no consoles but the console log.
"""

import subprocess
import sys

from cloudlet_box import configs
from cloudlet_box import identity
from cloudlet_box import layout
from cloudlet_box import resources

# Services this box does not run (tempest's own, and common plugins').
NOT_RUNNING = ('cinder', 'swift', 'horizon', 'heat', 'ironic', 'designate', 'octavia',
               'barbican', 'manila', 'aodh', 'ceilometer', 'gnocchi')


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
    """Image and flavor ids, and the Neutron extensions that are really loaded."""
    nova, glance = resources.admin_clients(box)
    image = next(glance.images.list(filters={'name': resources.GUEST_IMAGE, 'status': 'active'}),
                 None)
    if image is None:
        sys.exit('no active image %s: run tools/box.sh up' % resources.GUEST_IMAGE)
    flavors = {f.name: f.id for f in nova.flavors.list(is_public=None)}
    extensions = identity.admin_session(box).get(
        box.url('neutron') + '/v2.0/extensions').json()['extensions']
    return image['id'], flavors, sorted(e['alias'] for e in extensions)


def sections(box):
    image_id, flavors, net_extensions = _lookups(box)
    path = workspace(box)
    return {
        'DEFAULT': {'log_dir': path / 'logs', 'log_file': 'tempest.log'},
        'oslo_concurrency': {'lock_path': path / 'tempest_lock'},
        'identity': {'uri_v3': box.keystone_url, 'auth_version': 'v3', 'region': box.region},
        'auth': {
            # Each test class gets its own projects and users, made as admin.
            'use_dynamic_credentials': 'true',
            'admin_username': 'admin', 'admin_password': box.secrets()['admin'],
            'admin_project_name': 'admin', 'admin_domain_name': 'Default',
            # A network per project is useless: no port can bind here.
            'create_isolated_networks': 'false',
        },
        'service_available': dict({'nova': 'true', 'glance': 'true', 'neutron': 'true'},
                                  **{name: 'false' for name in NOT_RUNNING}),
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
            # One compute host, and allow_resize_to_same_host is off.
            'resize': 'false', 'cold_migration': 'false', 'live_migration': 'false',
            'shelve_migrate': 'false', 'block_migration_for_live_migration': 'false',
            # Ports cannot bind: nothing to attach; no nova-metadata runs (nor could be reached).
            'interface_attach': 'false', 'metadata_service': 'false',
            # No Cinder.
            'attach_encrypted_volume': 'false', 'swap_volume': 'false',
            'volume_multiattach': 'false', 'volume_backed_live_migration': 'false',
        },
        'network-feature-enabled': {
            'api_extensions': ','.join(net_extensions),
            # No L3 agent or router plugin; no port_security extension driver.
            'floating_ips': 'false', 'port_security': 'false',
        },
        # No guest networking: tempest cannot SSH into servers.
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
