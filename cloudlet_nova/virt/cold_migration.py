"""Cold migration of a cloudlet instance, its memory carried along.

nova's cold migration (`openstack server migrate`, also what a same-flavor
resize does) stops the VM, copies its instance directory's disks to the
destination (ssh or rsync: `[libvirt] remote_filesystem_transport`) and
boots it there. A cloudlet VM lives in its memory, so instead:

- Before anything stops, the destination fetches the base (the `cloudlet`
  RPC topic's `prepare_migration`, migration.cannot_receive/receive): a
  destination that cannot get it refuses, the VM untouched.
- The VM's NICs are unplugged (a saved image must carry none: restore.py),
  and its memory saved into the instance directory (`MEMORY_FILE`, a stock
  save image: no base RAM file mapping). nova's own code then copies the
  root disk, a qcow2 layer over the base disk (the base is never copied), and
  this driver the memory file next to it.
- On the destination, `finish_migration` restores the VM from that memory (a
  pending restore, as a spawn's) and hot-plugs its ports; same boot id, same
  RAM. The destination's cloudlet.json names the same base.
- A revert restores the source's saved memory the same way; a confirm
  deletes the source's directory with it (nova's `<dir>_resize`).

A resize to another flavor is refused: the memory image fixes RAM and vCPUs.
A cloudlet server that is not running is refused too: its memory is its state.
"""

import os
import time

from oslo_log import log as logging

from nova import exception
from nova.virt.libvirt import driver as libvirt_driver

from cloudlet_engine import apply
from cloudlet_engine import errors
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import migration
from cloudlet_nova.virt import restore

LOG = logging.getLogger(__name__)

MEMORY_FILE = 'cloudlet-migration.save'
SOURCE_KIND = 'cold-migration'


def memory_path(instance_dir):
    return os.path.join(instance_dir, MEMORY_FILE)


def refusal(instance, flavor, running):
    """Why this cold migration of a cloudlet instance cannot be, or None."""
    if flavor.flavorid != instance.flavor.flavorid:
        return faults.CloudletOperationRefused(
            'resized', advice='the memory of their base fixes their RAM and vCPUs; migrate them '
                              'with their own flavor')
    if not running:
        return faults.CloudletOperationRefused(
            'migrated while not running', advice='their state is their memory; start them first')
    return None


def prepare_failure(host, exc):
    """The pre-check's reason from the destination's answer to prepare_migration."""
    # oslo.messaging's RemoteError: the remote exception's message in `value`.
    text = getattr(exc, 'value', None) or str(exc) or type(exc).__name__
    return '%s: %s' % (host, text.strip().splitlines()[0])


def prepare(context, instance, ram_owner):
    """The destination's side of prepare_migration: the base in its store, or the reason it
    cannot be (a CloudletError).
    """
    reason = migration.cannot_receive(context, instance)
    if reason:
        raise errors.BaseVMError(reason)
    migration.receive(context, instance, ram_owner)


def save_memory(driver, instance, guest, path):
    """Unplug the VM's NICs, save its memory into `path` (the VM stops). Returns the NICs' XML.

    On failure the NICs are plugged back and the VM runs on.
    """
    libvirt = libvirt_driver.libvirt
    started = time.monotonic()
    nics = restore.unplug_nics(driver, instance, guest)
    try:
        # nova's Guest wraps no virDomainSaveFlags (save_memory_state is managedSave).
        guest._domain.saveFlags(path, None, 0)
    except libvirt.libvirtError as exc:
        restore.replug_nics(driver, instance, guest, nics)
        raise exception.MigrationError(reason='libvirt could not save the memory: %s'
                                              % (exc.get_error_message() or exc)) from exc
    restore.own_stock_image(path)
    LOG.info('cold migration: NICs unplugged and memory saved (%d MiB) in %.1f s', os.path.getsize(path) >> 20,
             time.monotonic() - started, instance=instance)
    return nics


def pending_restore(instance_dir, base):
    """The restore of the carried memory over the instance's root disk (restore.Pending)."""
    launch = apply.Launch(disk_path=os.path.join(instance_dir, restore.ROOT_DISK),
                          memory_path=memory_path(instance_dir), meta={})
    return restore.Pending(launch, base.name, base.boot_files())


def restore_here(driver, instance, instance_dir, nics):
    """After a failed migration: the VM runs here again from its saved memory, its NICs plugged."""
    libvirt = libvirt_driver.libvirt
    path = memory_path(instance_dir)
    try:
        driver._host.get_connection().restoreFlags(path, None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
    except libvirt.libvirtError as exc:
        LOG.error('the cold migration failed and the VM could not be restored here; its memory stays '
                  'in %s (virsh restore it): %s', path, exc, instance=instance)
        return False
    os.unlink(path)
    restore.replug_nics(driver, instance, driver._host.get_guest(instance), nics)
    return True


def forget_memory(instance_dir):
    """The memory file, once restored from (or never to be)."""
    try:
        os.unlink(memory_path(instance_dir))
    except FileNotFoundError:
        pass
