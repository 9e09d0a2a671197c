"""Live migration of a cloudlet instance to another compute host of the cloud
(cold_migration.py uses `cannot_receive`, `receive` and `record` too).

nova's own live migration moves the VM: its RAM state travels in QEMU's
migration stream, its root disk in a block migration (the hosts share no
instance directory). What is ours is the base under that disk and under the
RAM:

- The root disk is a qcow2 layer over the base disk in the host's base store
  (`<state_dir>/bases/<id>/disk`), and the guest's RAM a private mapping of
  the base's RAM file (`memory.ram`, qemu:commandline of the domain). Both
  paths are the same on every host; the destination must hold the base there.
- `cannot_receive` (nova's destination pre-check): None when this host holds
  the base or can fetch it from Glance (the base disk image and its
  companions exist and are active), else the reason; the driver refuses the
  migration with it, before anything moved.
- `receive` (pre_live_migration, on the destination): fetch the base into the
  store and make its RAM file, as a spawn would.
- `create_root_disk` (nova's _create_images_and_backing): an empty qcow2
  layer over the base disk, which QEMU's block migration then fills with the
  source's layer only (nova's VIR_MIGRATE_NON_SHARED_INC: the base is never
  copied).
- `record`: the instance's cloudlet.json on the destination, naming the same
  base: capture, ageing and hard reboot find it there as on the source.
- `unmap_definition` (post_live_migration_at_destination): the persistent
  definition without the RAM file, as a restore leaves it.
- `exact_migration_flags` (every server of the host, cloudlet or not): no
  VIR_MIGRATE_LIVE where QEMU's pre-copy misses pages the guest writes again
  (TCG before QEMU 9.0: cloudlet_engine.livemigration), so that libvirt pauses
  the VM for the migration rather than deliver it with damaged memory.

nova's rollback (destination cleanup) removes the instance directory and so
the record; the fetched base stays cached.
"""

from oslo_log import log as logging

from nova.virt.libvirt import driver as libvirt_driver

from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import livemigration
from cloudlet_engine import qcow2
from cloudlet_engine import ramfile
from cloudlet_glance import hostcache
from cloudlet_glance import images as glance_images
from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_nova.virt import launch
from cloudlet_nova.virt import state

LOG = logging.getLogger(__name__)

SOURCE_KIND = 'live-migration'


def base_id_of(instance):
    """The base id nova recorded from the instance's base disk image (None if none)."""
    return (instance.system_metadata or {}).get(props.system_metadata_key(props.BASE_ID))


def cannot_receive(context, instance):
    """Why this host cannot receive the instance's base, or None when it can."""
    base_id = base_id_of(instance)
    if base_id and launch.base_store().has(base_id):
        return None
    images = glance_images.NovaImages(context)
    try:
        disk_image = images.get(instance.image_ref)
        if disk_image.get('status') != 'active':
            raise errors.BaseVMError('image %s is %s' % (instance.image_ref, disk_image.get('status')))
        model.linked_images(images, disk_image, require_active=True)
    except Exception as exc:    # noqa: BLE001 - any reason is the pre-check's answer
        return ('the destination does not hold base %s and cannot fetch it from the image service: %s'
                % ((base_id or '?')[:12], str(exc) or type(exc).__name__))
    return None


def receive(context, instance, ram_owner):
    """The instance's base in this host's store, its RAM file made; returns (BaseVM, RamFile or None)."""
    images = glance_images.NovaImages(context)
    base = hostcache.fetch_base(images, instance.image_ref, launch.base_store(),
                                launch.LogProgress(instance.uuid))
    if base_id_of(instance) not in (None, base.base_id):
        raise errors.BaseVMError('image %s now holds base %s, not the instance\'s base %s'
                                 % (instance.image_ref, base.base_id[:12], base_id_of(instance)[:12]))
    return base, launch.ram_file(base, ram_owner)


def create_root_disk(base, path, virtual_size):
    """An empty qcow2 layer over the base disk at `path` (what the block migration fills)."""
    if virtual_size != base.disk_size:
        raise errors.BaseVMError('the root disk is %d bytes, base %s\'s disk %d'
                                 % (virtual_size, base.base_id[:12], base.disk_size))
    with qcow2.Qcow2Writer(path, base.disk_size, base.disk_path, 'raw'):
        pass


def record(instance_dir, instance, base, ram, source_host, kind=SOURCE_KIND):
    """Write the instance's cloudlet record on the destination (`kind`: of migration)."""
    entry = state.new_record(instance.uuid, base, instance.image_ref,
                             {'kind': kind, 'ref': source_host})
    entry['memory_restore'] = 'ram_file' if ram is not None else 'full_image'
    state.save(instance_dir, entry)


def unmap_definition(host, instance):
    """Write the destination's persistent definition without the RAM file mapping.

    nova persists the live XML on the destination (libvirt's persistent_xml),
    which maps the base's RAM file; as after a restore (restore.py), the
    definition must not: a cold boot starts on ordinary RAM.
    """
    xml = host.get_guest(instance).get_xml_desc(dump_inactive=True)
    if domainxml.ram_file(xml, ramfile.BACKEND_ID) is not None:
        host.write_instance_config(domainxml.without_ram_file(xml, ramfile.BACKEND_ID))


def exact_migration_flags(virt_type, qemu_version, live_flags, block_flags):
    """nova's (live, block) migration flags, without VIR_MIGRATE_LIVE where the pre-copy is not exact."""
    if livemigration.precopy_is_exact(virt_type, qemu_version):
        return live_flags, block_flags
    LOG.warning('QEMU %d.%d under TCG misses pages in a live migration (fixed in QEMU 9.0): this host '
                'migrates its VMs paused', qemu_version // 1000000, qemu_version // 1000 % 1000)
    live = libvirt_driver.libvirt.VIR_MIGRATE_LIVE    # nova imports libvirt (or its test fake) itself
    return live_flags & ~live, block_flags & ~live
