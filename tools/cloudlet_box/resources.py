"""What a fresh box offers its users: flavors, the test guest's images, clouds.yaml."""

import pathlib
import subprocess

from glanceclient import client as glance_client
from novaclient import client as nova_client
import yaml

from cloudlet_box import identity
from cloudlet_box import layout

CLOUDS_YAML = pathlib.Path('/etc/openstack/clouds.yaml')
# name: (RAM MB, vCPUs, disk GB). m1.tiny fits the test guest and its bases
# (256 MiB, one vCPU); m1.small is a second size for tempest.
FLAVORS = {'m1.tiny': (256, 1, 1), 'm1.small': (384, 1, 2)}
GUEST_IMAGE = 'cloudlet-guest'


def guest_files():
    """vmlinuz, initrd and disk of the test guest (tools/build-guest.sh caches them)."""
    out = subprocess.run([str(layout.REPO / 'tools' / 'build-guest.sh')], check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)


def ensure_flavors(nova):
    existing = {flavor.name for flavor in nova.flavors.list(is_public=None)}
    for name, (ram, vcpus, disk) in FLAVORS.items():
        if name not in existing:
            nova.flavors.create(name, ram, vcpus, disk)


# Which build of the test guest an image holds (tools/build-guest.sh's stamp):
# a box made before the guest changed gets the new one on its next `up`.
BUILD_PROPERTY = 'cloudlet_guest_build'


def _find_image(glance, name, build):
    for image in glance.images.list(filters={'name': name}):
        if image['status'] == 'active' and image.get(BUILD_PROPERTY) == build:
            return image
        # A half-made one from an interrupted run, or an older build.
        glance.images.delete(image['id'])
    return None


def _upload(glance, name, path, **fields):
    image = glance.images.create(name=name, visibility='public', **fields)
    with open(path, 'rb') as data:
        glance.images.upload(image['id'], data)
    return image['id']


def ensure_guest_image(glance):
    """The test guest as a public image (kernel and ramdisk as aki/ari, the
    disk raw), bootable the stock way; tempest and the demo use it.
    """
    files = guest_files()
    build = pathlib.Path(files['guest_dir'], 'stamp').read_text().strip()[:16]
    image = _find_image(glance, GUEST_IMAGE, build)
    if image:
        return image['id']
    kernel = _find_image(glance, GUEST_IMAGE + '-kernel', build)
    kernel_id = kernel['id'] if kernel else _upload(
        glance, GUEST_IMAGE + '-kernel', files['vmlinuz'], disk_format='aki', container_format='aki',
        **{BUILD_PROPERTY: build})
    ramdisk = _find_image(glance, GUEST_IMAGE + '-initrd', build)
    ramdisk_id = ramdisk['id'] if ramdisk else _upload(
        glance, GUEST_IMAGE + '-initrd', files['initrd'], disk_format='ari', container_format='ari',
        **{BUILD_PROPERTY: build})
    # The busybox guest ignores the ACPI power button: without a short
    # os_shutdown_timeout every stop waits nova's default 60 s.
    return _upload(glance, GUEST_IMAGE, files['disk'], disk_format='raw', container_format='bare',
                   kernel_id=kernel_id, ramdisk_id=ramdisk_id, hw_disk_bus='virtio',
                   os_shutdown_timeout='3', **{BUILD_PROPERTY: build})


def write_clouds_yaml(box):
    """Merge this box's clouds into /etc/openstack/clouds.yaml (other entries kept)."""
    data = {}
    if CLOUDS_YAML.exists():
        data = yaml.safe_load(CLOUDS_YAML.read_text()) or {}
    clouds = data.setdefault('clouds', {})
    clouds.update(identity.clouds(box))
    CLOUDS_YAML.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data, default_flow_style=False, sort_keys=True)
    if not CLOUDS_YAML.exists() or CLOUDS_YAML.read_text() != text:
        CLOUDS_YAML.write_text(text)
    CLOUDS_YAML.chmod(0o600)


def admin_clients(box):
    """(nova, glance) clients as the box's admin."""
    session = identity.admin_session(box)
    interface = identity.client_interface(box)
    return (nova_client.Client('2.1', session=session, region_name=box.region,
                               endpoint_type=interface),
            glance_client.Client('2', session=session, region_name=box.region, interface=interface))


# A user project's compute quota: room for the e2e tests' ten syntheses on one host and one more.
QUOTAS = {'instances': 20, 'cores': 40, 'ram': 20 * 1024}


def ensure_quotas(box, nova):
    session = identity.admin_session(box)
    for name in identity.USER_PROJECTS:
        project = session.get(box.keystone_url + '/projects', params={'name': name, 'domain_id': 'default'},
                              raise_exc=True).json()['projects'][0]
        current = nova.quotas.get(project['id'])
        if any(getattr(current, key) != value for key, value in QUOTAS.items()):
            nova.quotas.update(project['id'], **QUOTAS)


def populate(box):
    nova, glance = admin_clients(box)
    ensure_flavors(nova)
    ensure_quotas(box, nova)
    ensure_guest_image(glance)
    write_clouds_yaml(box)


# Every compute host of a box with several (the aggregate image pre-cache works per aggregate).
AGGREGATE = 'cloudlet'


def ensure_aggregate(box):
    """The aggregate `cloudlet` with every compute host of the box in it."""
    nova, _ = admin_clients(box)
    aggregate = next((a for a in nova.aggregates.list() if a.name == AGGREGATE), None) or \
        nova.aggregates.create(AGGREGATE, None)
    for host in sorted({s.host for s in nova.services.list(binary='nova-compute')} - set(aggregate.hosts)):
        aggregate = nova.aggregates.add_host(aggregate, host)
    return aggregate
