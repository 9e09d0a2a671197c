"""create-base / create-overlay through nova's snapshot path (doc/nova-driver.md, Capture).

The compute manager calls CloudletDriver.snapshot(context, instance, image_id,
update_task_state) for createImage; the target image's `cloudlet_type` says
what to capture. Both captures:

1. unplug the NICs (bases and overlays never hold NICs: libvirt refuses a
   restore whose NICs differ, and instances get nova's ports hot-plugged);
2. save the domain's memory (`virDomainSaveFlags`; the VM stops) into a work
   directory under the instance directory;
3. copy what is needed of the disk while the VM is stopped: the qcow2 top
   layer (overlay: small, it holds only what changed since the base) or the
   whole disk converted to raw (base);
4. restore the VM from the saved file and plug the NICs back, in a `finally`:
   the VM keeps running whatever happens next (its downtime is steps 2-4);
5. offline, with the VM running: build the overlay (engine create_overlay) or
   the base (engine build_base, with a copy of the instance's kernel and
   initrd when it boots one directly), and upload it into the target image.

The manager deletes the target image when snapshot() raises
(@delete_image_on_error); base captures also delete the companion images
they created. A new base is also adopted into this host's base store, so
instances of it start here without a download.
"""

import os
import shutil

from lxml import etree
from oslo_log import log as logging

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import exception
import nova.privsep.path
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import utils as libvirt_utils

from cloudlet_engine import basevm
from cloudlet_engine import capture as engine_capture
from cloudlet_engine import chunks
from cloudlet_engine import codecs
from cloudlet_engine import create
from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import savefile
from cloudlet_glance import hostcache
from cloudlet_glance import images as glance_images
from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import launch as launch_mod
from cloudlet_nova.virt import restore
from cloudlet_nova.virt import state
from cloudlet_nova.virt import trust

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)
CAPTURE_TYPES = (props.OVERLAY, props.BASE_DISK)


def requested_type(image):
    """The capture the target image asks for (nova's image dict), or None for a plain snapshot."""
    kind = (image.get('properties') or {}).get(props.CLOUDLET_TYPE)
    return kind if kind in CAPTURE_TYPES else None


class Capture:
    """One capture of one instance into one target image."""

    def __init__(self, driver, context, instance, image_id, image, kind):
        self.driver, self.context, self.instance = driver, context, instance
        self.image_id, self.image, self.kind = image_id, image, kind
        self.instance_dir = libvirt_utils.get_instance_path(instance)
        self.workdir = os.path.join(self.instance_dir, state.CAPTURE_PREFIX + image_id)
        self.images = glance_images.NovaImages(context)
        self.created_images = []
        self.keep_workdir = False

    def run(self, update_task_state):
        try:
            # driver._host: nova exposes no public accessor for the libvirt connection's Host.
            guest = self.driver._host.get_guest(self.instance)
        except exception.InstanceNotFound:
            raise exception.InstanceNotRunning(instance_id=self.instance.uuid)
        base = self._base_of_instance() if self.kind == props.OVERLAY else None
        codec = self._codec() if self.kind == props.OVERLAY else None
        key = self._key() if self.kind == props.OVERLAY else None
        disk_path, disk_format = self._root_disk(guest)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        update_task_state(task_state=task_states.IMAGE_UPLOADING,
                          expected_state=task_states.IMAGE_PENDING_UPLOAD)
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(self.workdir)
        try:
            memory_path, disk_copy = self._save_and_copy(guest, disk_path, disk_format)
            with faults.capture_errors():
                if self.kind == props.OVERLAY:
                    self._upload_overlay(base, disk_copy, memory_path, codec, key)
                else:
                    self._upload_base(disk_copy, memory_path)
        except BaseException:
            self._delete_created_images()
            raise
        finally:
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # -- before the VM stops ------------------------------------------------------

    def _base_of_instance(self):
        if not props.is_cloudlet_instance(self.instance):
            raise faults.CloudletCaptureFailed(
                reason='instance %s was not booted from a cloudlet base disk image, so there is no '
                       'base to make an overlay against' % self.instance.uuid)
        with faults.capture_errors():
            return hostcache.fetch_base(self.images, self.instance.image_ref, launch_mod.base_store())

    def _codec(self):
        codec = (self.image.get('properties') or {}).get(props.CODEC) or CONF.cloudlet.overlay_codec
        try:
            codecs.codec_by_name(codec)
        except ValueError as exc:
            raise faults.CloudletCaptureFailed(reason=str(exc))
        return codec

    def _key(self):
        """The key to encrypt the overlay with (the target image names it), read before the VM stops."""
        ref = (self.image.get('properties') or {}).get(props.OVERLAY_KEY_ID)
        if not ref:
            return None
        return trust.fetch_key(self.context, ref, 'overlay', fault=faults.CloudletCaptureFailed)

    def _root_disk(self, guest):
        """(path, format) of the root disk; refuses disks a base or overlay cannot carry."""
        root = etree.fromstring(guest.get_xml_desc().encode())
        disks = [d for d in root.iterfind('devices/disk') if d.get('device', 'disk') == 'disk']
        if not disks:
            raise faults.CloudletCaptureFailed(reason='the instance has no disk')
        for disk in disks:
            source = disk.find('source')
            path = source.get('file') if source is not None else None
            if disk.get('type') != 'file' or not path or \
                    os.path.dirname(path) != self.instance_dir.rstrip('/'):
                raise faults.CloudletCaptureFailed(
                    reason='disk %s is not a local file of the instance (volumes and non-file image '
                           'backends are not supported): detach volumes first'
                           % disk.find('target').get('dev'))
        driver = disks[0].find('driver')
        return disks[0].find('source').get('file'), driver.get('type') if driver is not None else None

    # -- the VM stopped: save, copy, restore -----------------------------------------

    def _save_and_copy(self, guest, disk_path, disk_format):
        libvirt = libvirt_driver.libvirt
        was_paused = guest.get_power_state(self.driver._host) == power_state.PAUSED
        if guest.get_power_state(self.driver._host) not in (power_state.RUNNING, power_state.PAUSED):
            raise faults.CloudletCaptureFailed(reason='the instance is not running: a cloudlet capture '
                                                      'saves its memory')
        if was_paused and restore.interfaces(guest.get_xml_desc()):
            raise faults.CloudletCaptureFailed(reason='a paused instance cannot release its network '
                                                      'interfaces: unpause it first')
        memory_path = os.path.join(self.workdir, basevm.MEMORY)
        nics = restore.unplug_nics(self.driver, self.instance, guest)
        saved = False
        try:
            try:
                # nova's Guest wraps no virDomainSaveFlags (save_memory_state is managedSave).
                guest._domain.saveFlags(memory_path, None, 0)
            except libvirt.libvirtError as exc:
                raise faults.CloudletCaptureFailed(reason='libvirt could not save the memory: %s'
                                                          % (exc.get_error_message() or exc)) from exc
            saved = True
            # The restore below too runs on ordinary RAM.
            restore.own_stock_image(memory_path)
            disk_copy = self._copy_disk(disk_path, disk_format)
        finally:
            if saved:
                guest = self._restore(memory_path, was_paused)
            restore.replug_nics(self.driver, self.instance, guest, nics)
        return memory_path, disk_copy

    def _restore(self, memory_path, paused):
        libvirt = libvirt_driver.libvirt
        flags = libvirt.VIR_DOMAIN_SAVE_PAUSED if paused else libvirt.VIR_DOMAIN_SAVE_RUNNING
        try:
            self.driver._host.get_connection().restoreFlags(memory_path, None, flags)
        except libvirt.libvirtError as exc:
            # The saved file is now the VM's only state: keep it (init_host reports it).
            self.keep_workdir = True
            LOG.error('instance %s: restore after the capture save failed; its memory stays in %s '
                      '(virsh restore it): %s', self.instance.uuid, memory_path, exc)
            raise faults.CloudletCaptureFailed(
                reason='the VM could not be restored after saving its memory: %s'
                       % (exc.get_error_message() or exc)) from exc
        return self.driver._host.get_guest(self.instance)

    def _copy_disk(self, disk_path, disk_format):
        if self.kind == props.OVERLAY:
            # The instance disk is the launch disk: a qcow2 layer over the base
            # disk. Its file is small (what changed) and keeps its backing file.
            copy = os.path.join(self.workdir, 'disk.qcow2')
            shutil.copyfile(disk_path, copy)
            return copy
        copy = os.path.join(self.workdir, basevm.DISK)
        try:
            engine_capture.convert_to_raw(disk_path, copy, disk_format)
        except errors.BaseVMError as exc:
            raise faults.CloudletCaptureFailed(reason=str(exc)[-150:])
        return copy

    # -- the VM runs again: build and upload -----------------------------------------

    def _upload_overlay(self, base, disk_copy, memory_path, codec, key=None):
        overlay_path = os.path.join(self.workdir, 'overlay.clo')
        with open(overlay_path, 'xb') as out:
            stats = create.create_overlay(base, disk_copy, memory_path, out, codec,
                                          progress=launch_mod.LogProgress(self.instance.uuid),
                                          workdir=self.workdir, key=key)
        properties = {props.CLOUDLET_TYPE: props.OVERLAY, props.BASE_ID: base.base_id,
                      props.BASE_NAME: base.name, props.CODEC: codec}
        self._upload_into_target(overlay_path, properties)
        return stats

    def _upload_base(self, disk_raw, memory_path):
        """Upload the base: its companions, then its disk into the target image.

        An instance that boots a kernel directly (nova's kernel and ramdisk in
        its directory, as its memory snapshot names them) gives the base its
        own copies, uploaded as its boot companions and named by the target's
        kernel_id and ramdisk_id. These replace the ones inherited from the
        server's image: the base never depends on images it does not own.
        """
        if os.path.getsize(disk_raw) % chunks.CHUNK:
            raise errors.BaseVMError('disk size %d is not a multiple of %d bytes'
                                     % (os.path.getsize(disk_raw), chunks.CHUNK))
        store = launch_mod.base_store()
        base_workdir = store.new_workdir()
        try:
            name = self.image.get('name') or 'base-of-%s' % self.instance.uuid
            boot_files = domainxml.direct_boot_files(savefile.read_save_image(memory_path).xml)
            base = basevm.build_base(base_workdir, disk_raw, memory_path, name,
                                     launch_mod.LogProgress(self.instance.uuid), boot_files)
            visibility = 'public' if self.image.get('is_public') else 'private'
            companion_ids = model.upload_companions(self.images, base, name, visibility, None,
                                                    self.created_images)
            self._upload_into_target(base.disk_path, model.disk_properties(base, name, companion_ids))
            store.adopt(base_workdir, base)
        except BaseException:
            shutil.rmtree(base_workdir, ignore_errors=True)
            raise

    def _upload_into_target(self, path, properties):
        """Upload a file into the target image, with our properties (purge_props=False)."""
        meta = {'disk_format': 'raw', 'container_format': 'bare', 'properties': {}}
        for key, value in properties.items():
            if key in glance_images.INTEGER_ATTRIBUTES:
                meta[key] = int(value)
            else:
                meta['properties'][key] = str(value)
        with open(path, 'rb') as data:
            # driver._image_api: the glance.API() nova's own snapshot uses; no public accessor.
            self.driver._image_api.update(self.context, self.image_id, meta, data, purge_props=False)

    def _delete_created_images(self):
        model.delete_quietly(self.images, reversed(self.created_images))
        self.created_images = []
