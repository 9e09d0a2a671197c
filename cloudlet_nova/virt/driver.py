"""CloudletDriver: nova's LibvirtDriver that resumes VMs from memory instead of booting them.

Thin glue; the work is in the sibling modules:

- launch.py   what a spawn restores (base, overlay URL, overlay image) and its launch files;
- restore.py  the per-spawn restore flag, the domain's identity, restore + NIC hot-plug;
- vifs.py     the ports: taps made by os-vif, wired before the restore for a handoff;
- capture.py  create-base / create-overlay through snapshot();
- basecache.py  the base store: pre-cache (cache_image), ageing (manage_image_cache), traits;
- migration.py  live migration: the destination holds the base, the disk layer and record follow;
- cold_migration.py  cold migration: the base fetched first, the memory saved, carried and restored;
- state.py    `<instance dir>/cloudlet.json`;
- faults.py   engine errors -> nova exceptions.

Loaded by nova as `compute_driver = cloudlet.CloudletDriver` through the shim
`nova/virt/cloudlet/__init__.py`. Which lifecycle operations work on cloudlet
instances, and which are refused, is tabled in doc/nova-driver.md. Everything
here runs in nova 34's native threads: no eventlet.
"""

import contextlib
import os
import threading
import time

from oslo_log import log as logging
from oslo_service import loopingcall

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import exception
from nova import objects
import nova.privsep
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import imagecache
from nova.virt.libvirt import utils as libvirt_utils

from cloudlet_engine import hypervisor
from cloudlet_glance import properties as props
from cloudlet_nova import conf as cloudlet_conf
from cloudlet_nova.handoff import addresses as handoff_addresses
from cloudlet_nova.handoff import arrival as handoff_arrival
from cloudlet_nova.handoff import inbox as handoff_inbox
from cloudlet_nova.handoff import records as handoff_records
from cloudlet_nova.handoff import rpc as handoff_rpc
from cloudlet_nova.handoff import sender as handoff_sender
from cloudlet_nova import outbound
from cloudlet_nova.virt import basecache
from cloudlet_nova.virt import capture
from cloudlet_nova.virt import cold_migration
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import launch
from cloudlet_nova.virt import migration as migration_mod
from cloudlet_nova.virt import restore
from cloudlet_nova.virt import state
from cloudlet_nova.virt import vifs

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

SHELVING_STATES = (task_states.SHELVING, task_states.SHELVING_IMAGE_PENDING_UPLOAD,
                   task_states.SHELVING_IMAGE_UPLOADING)


def _start_privsep():
    """Start nova's privsep daemon now, not in the first spawn's disk setup (3-5 s here:
    a handoff's destination would pay them after the source paused the VM).
    """
    context = nova.privsep.sys_admin_pctxt
    if not context.client_mode or context.channel is not None:
        return      # nova's test fixtures run privileged code in-process; or it runs already
    try:
        context.start()
    except Exception:   # noqa: BLE001 - the first privileged call starts it again, as nova does
        LOG.warning('could not start nova\'s privsep daemon ahead of the first spawn', exc_info=True)


class CloudletDriver(libvirt_driver.LibvirtDriver):

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        cloudlet_conf.register_opts(CONF)
        self._restores = restore.PendingRestores()
        self._qemu_owner_cache = None
        self._handoffs = None
        self._handoff_server = None
        self._cloudlet_rpc = None     # the `cloudlet` RPC topic's client (init_host: after nova.rpc.init)
        # Residues arriving for the handoffs this host is the destination of.
        self._inboxes = handoff_inbox.Inboxes()
        # instance uuid -> the BaseVM a live migration to this host brings it onto.
        self._migrating_in = {}
        self.vif_driver = vifs.CloudletVIFDriver(self._host)

    def init_host(self, host):
        cloudlet_conf.register_opts(CONF)
        outbound.policy(CONF)       # a bad [cloudlet] outbound_allowed_networks stops nova-compute here
        super().init_host(host)
        os.makedirs(launch.base_store().root, exist_ok=True)
        for path in launch.base_store().sweep():
            LOG.info('removed what an interrupted base fetch or deletion left: %s', path)
        removed, captures = state.sweep(CONF.instances_path)
        for path in removed:
            LOG.info('removed launch files of an interrupted cloudlet spawn: %s', path)
        for path in captures:
            LOG.warning('work files of an interrupted cloudlet capture are left in %s: if the '
                        'instance is not running, its memory may be in %s/memory.save', path, path)
        for record in handoff_records.mark_interrupted(CONF.cloudlet.state_dir):
            try:
                handoff_sender.recover(self, host, record)
            except Exception:   # noqa: BLE001 - one server's repair must not stop nova-compute
                LOG.exception('handoff %s of instance %s was interrupted by a nova-compute stop and '
                              'could not be repaired: check that its VM runs and has its NICs',
                              record.get('handoff_id'), record.get('instance_uuid'))
        handoff_sender.sweep_workdirs(CONF.instances_path)
        # The `cloudlet` RPC topic (handoffs), after nova's own init_host, as
        # nova's Service.start() creates its own RPC servers after init_host.
        self._handoffs = handoff_sender.Handoffs(self, host)
        self._handoff_server = handoff_rpc.HandoffServer(
            host, handoff_rpc.HandoffEndpoint(self._handoffs.run, self._inboxes, self._prepare_migration_in))
        self._cloudlet_rpc = handoff_rpc.HandoffAPI()
        self._handoff_server.start()
        threading.Thread(target=_start_privsep, name='cloudlet-privsep-start', daemon=True).start()

    def cleanup_host(self, host):
        # First: spawns waiting for a residue fail now, and release their instance
        # locks for the roll backs below (a destination may be on this host too).
        self._inboxes.fail_all('nova-compute is stopping')
        if self._handoff_server is not None:
            self._handoff_server.stop()
            self._handoff_server = None
        if self._handoffs is not None and self._handoffs.running():
            LOG.warning('nova-compute is stopping: cancelling %d running handoff(s)',
                        len(self._handoffs.running()))
            self._handoffs.cancel_all('nova-compute is stopping')
        super().cleanup_host(host)

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename, allocations=allocations)
        provider_tree.add_traits(nodename, props.TRAIT)
        provider_tree.update_traits(nodename, basecache.provider_traits(provider_tree.data(nodename).traits))

    # -- the base store: nova's image pre-cache and image cache pass ---------------------

    def cache_image(self, context, image_id):
        cached = basecache.precache(context, image_id, self._qemu_owner())
        return super().cache_image(context, image_id) if cached is None else cached

    def manage_image_cache(self, context, all_instances):
        # The base store ages even when nova's own pass fails: that pass raises
        # DiskNotFound for an instance deleted between its listing and its
        # qemu-img call, and would skip the ageing whenever servers come and go.
        try:
            super().manage_image_cache(context, all_instances)
        finally:
            basecache.age(all_instances)

    # -- spawn: restore instead of boot ----------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None):
        spawn_plan = launch.plan(instance)
        instance_dir = libvirt_utils.get_instance_path(instance)
        if spawn_plan is None:
            state.remove(instance_dir)     # e.g. rebuilt from a base image to an ordinary one
            return super().spawn(context, instance, image_meta, injected_files, admin_password,
                                 allocations, network_info=network_info,
                                 block_device_info=block_device_info, power_on=power_on,
                                 accel_info=accel_info)
        # Inherited private helper: the very check nova's spawn makes, so both agree.
        if self._is_booted_from_volume(block_device_info):
            raise faults.CloudletSpawnFailed(reason='cloudlet instances need a local root disk: '
                                                    'boot from volume is not supported')
        with basecache.in_use(spawn_plan.base_image_id):     # not aged out before the record names it
            self._spawn_cloudlet(context, instance, image_meta, injected_files, admin_password, allocations,
                                 network_info, block_device_info, power_on, accel_info, spawn_plan,
                                 instance_dir)

    def _spawn_cloudlet(self, context, instance, image_meta, injected_files, admin_password, allocations,
                        network_info, block_device_info, power_on, accel_info, spawn_plan, instance_dir):
        network_info = vifs.with_os_vif_taps(network_info)
        if spawn_plan.kind == launch.HANDOFF and network_info:
            # The ports get wired while the residue arrives, not after the source paused.
            vifs.plug_early(self, instance, network_info)
        base, prepared = launch.prepare(context, instance, spawn_plan, instance_dir,
                                        ram_owner=self._qemu_owner(), inboxes=self._inboxes)
        try:
            record = state.new_record(instance.uuid, base, spawn_plan.base_image_id,
                                      spawn_plan.source_record())
            record['memory_restore'] = 'ram_file' if prepared.ram is not None else 'full_image'
            state.save(instance_dir, record)
            if spawn_plan.kind == launch.HANDOFF:
                with self._carried_nics_fault():
                    handoff_arrival.adopt(instance, prepared.meta)
            if spawn_plan.kind == launch.HANDOFF and network_info:
                vifs.wait_wired(context, instance, network_info)
            with self._restores.pending(instance.uuid,
                                        restore.Pending(prepared, base.name, base.boot_files())):
                super().spawn(context, instance, image_meta, injected_files, admin_password,
                              allocations, network_info=network_info,
                              block_device_info=block_device_info, power_on=power_on,
                              accel_info=accel_info)
                record['timings'] = restore.spawn_timings(self._restores.timings(instance.uuid))
            if spawn_plan.kind == launch.HANDOFF:
                with self._carried_nics_fault():
                    # Inherited: nova exposes no public accessor for the libvirt connection's Host.
                    handoff_arrival.settle(instance, self._host.get_guest(instance), prepared.meta)
            state.save(instance_dir, record)
            LOG.info('cloudlet spawn: restore and NIC plug %(restore_seconds)s s, then '
                     'network-vif-plugged wait %(vif_plugged_wait_seconds)s s',
                     record['timings'], instance=instance)
        except BaseException as exc:
            # A residue still streaming in (the spawn failed before its restore read it) stops.
            launch.abandon(self._inboxes, spawn_plan.ref, prepared, str(exc) or type(exc).__name__)
            state.remove(instance_dir)
            raise
        finally:
            # QEMU has read the memory image; the launch disk was moved in as the root disk.
            state.remove_launch_dir(instance_dir)

    @staticmethod
    @contextlib.contextmanager
    def _carried_nics_fault():
        """The NICs a handoff carried cannot be settled: a failed build (nova destroys
        the VM; the source resumes its own), rather than a VM that cannot be reached or
        ports that would outlive it.
        """
        try:
            yield
        except Exception as exc:
            raise faults.CloudletSpawnFailed(
                reason='the NICs that came with the handoff: %s' % (str(exc) or type(exc).__name__)) from exc

    # -- ports: taps made by os-vif for cloudlet instances (vifs.py) --------------------

    def _vifs_of(self, instance, network_info):
        return vifs.with_os_vif_taps(network_info) if props.is_cloudlet_instance(instance) else network_info

    def plug_vifs(self, instance, network_info):
        super().plug_vifs(instance, self._vifs_of(instance, network_info))

    def unplug_vifs(self, instance, network_info):
        super().unplug_vifs(instance, self._vifs_of(instance, network_info))

    def destroy(self, context, instance, network_info, block_device_info=None, destroy_disks=True,
                destroy_secrets=True):
        if instance.task_state == task_states.DELETING and props.is_cloudlet_instance(instance):
            try:
                released = handoff_addresses.release_handed_off(context, instance, network_info)
            except Exception as exc:   # noqa: BLE001 - the delete goes on; the address stays
                LOG.warning('could not release the floating IP the handoff made for this server: %s',
                            exc, instance=instance)
            else:
                if released:
                    LOG.info('released the floating IP(s) %s the handoff made for this server',
                             ', '.join(released), instance=instance)
        return super().destroy(context, instance, network_info, block_device_info=block_device_info,
                               destroy_disks=destroy_disks, destroy_secrets=destroy_secrets)

    def cleanup(self, context, instance, network_info, block_device_info=None, destroy_disks=True,
                migrate_data=None, destroy_vifs=True, destroy_secrets=True):
        return super().cleanup(context, instance, self._vifs_of(instance, network_info),
                               block_device_info=block_device_info, destroy_disks=destroy_disks,
                               migrate_data=migrate_data, destroy_vifs=destroy_vifs,
                               destroy_secrets=destroy_secrets)

    def attach_interface(self, context, instance, image_meta, vif):
        if props.is_cloudlet_instance(instance):
            vif = vifs.with_os_vif_tap(vif)
        return super().attach_interface(context, instance, image_meta, vif)

    def detach_interface(self, context, instance, vif):
        if props.is_cloudlet_instance(instance):
            try:
                # Inherited: nova exposes no public accessor for the libvirt connection's Host.
                vif = vifs.as_plugged(vif, self._host.get_guest(instance).get_xml_desc())
            except exception.InstanceNotFound:
                vif = vifs.with_os_vif_tap(vif)
        return super().detach_interface(context, instance, vif)

    def _qemu_owner(self):
        """(uid, gid) QEMU runs as (libvirt's DAC label), read once; None without DAC."""
        if self._qemu_owner_cache is None:
            # Inherited: nova exposes no public accessor for the libvirt connection.
            caps = self._host.get_connection().getCapabilities()
            self._qemu_owner_cache = [hypervisor.qemu_owner(caps, CONF.libvirt.virt_type)]
        return self._qemu_owner_cache[0]

    # Private LibvirtDriver overrides (_create_image, _create_and_inject_local_root,
    # _create_guest_with_network, _create_guest, _hard_reboot): nova has no public hook
    # between a spawn's domain XML and the domain's start, nor for power-on/hard reboot.
    def _create_image(self, context, instance, disk_mapping, injection_info=None, suffix='',
                      disk_images=None, block_device_info=None, fallback_from_host=None,
                      ignore_bdi_for_swap=False):
        created_dir, created_disks = super()._create_image(
            context, instance, disk_mapping, injection_info=injection_info, suffix=suffix,
            disk_images=disk_images, block_device_info=block_device_info,
            fallback_from_host=fallback_from_host, ignore_bdi_for_swap=ignore_bdi_for_swap)
        pending = self._restores.get(instance.uuid)
        if pending is not None and not suffix:
            placed = restore.place_launch_disk(pending.launch, libvirt_utils.get_instance_path(instance))
            created_disks = created_disks or placed
        return created_dir, created_disks

    def _create_and_inject_local_root(self, context, instance, disk_mapping, booted_from_volume,
                                      suffix, disk_images, injection_info, fallback_from_host):
        # A cloudlet root disk is the launch disk: no download of the image
        # into _base (the base store has the base disk), no file injection.
        pending = self._restores.get(instance.uuid)
        if pending is None or suffix or booted_from_volume:
            return super()._create_and_inject_local_root(
                context, instance, disk_mapping, booted_from_volume, suffix, disk_images,
                injection_info, fallback_from_host)
        restore.place_launch_disk(pending.launch, libvirt_utils.get_instance_path(instance))
        return True

    def _create_guest_with_network(self, context, xml, instance, *args, **kwargs):
        # nova waits here for Neutron's network-vif-plugged events, then
        # resumes the paused guest: the end of it times that wait.
        guest = super()._create_guest_with_network(context, xml, instance, *args, **kwargs)
        self._restores.timings(instance.uuid)['guest_running'] = time.monotonic()
        return guest

    def _create_guest(self, context, xml, instance, power_on=True, pause=False,
                      post_xml_callback=None):
        pending = self._restores.claim(instance.uuid) if (power_on or pause) else None
        if pending is None:
            return super()._create_guest(context, xml, instance, power_on=power_on, pause=pause,
                                         post_xml_callback=post_xml_callback)
        LOG.info('restoring instance from the memory of base %s', pending.base_name,
                 instance=instance)
        timings = self._restores.timings(instance.uuid)
        timings['restore_started'] = time.monotonic()
        guest = restore.restore_guest(self, xml, instance, pending.launch, pending.base_name,
                                      pause=pause, post_xml_callback=post_xml_callback,
                                      base_boot_files=pending.base_boot_files)
        timings['nics_plugged'] = time.monotonic()
        return guest

    # -- capture -------------------------------------------------------------------

    def snapshot(self, context, instance, image_id, update_task_state):
        if instance.task_state in SHELVING_STATES and props.is_cloudlet_instance(instance):
            self._delete_image_quietly(context, image_id)    # shelve has no delete_image_on_error
            raise faults.CloudletOperationRefused('shelved')
        # Inherited: the glance.API() nova's own snapshot uses; no public accessor.
        image = self._image_api.get(context, image_id)
        kind = capture.requested_type(image)
        if kind is None:
            return super().snapshot(context, instance, image_id, update_task_state)
        LOG.info('capturing a cloudlet %s into image %s', kind, image_id, instance=instance)
        capture.Capture(self, context, instance, image_id, image, kind).run(update_task_state)

    def _delete_image_quietly(self, context, image_id):
        try:
            self._image_api.delete(context, image_id)
        except Exception:   # noqa: BLE001 - the refusal below matters more
            LOG.warning('could not delete image %s', image_id, exc_info=True)

    # -- lifecycle -------------------------------------------------------------------

    def power_off(self, instance, timeout=0, retry_interval=0):
        if instance.task_state == task_states.SHELVING and props.is_cloudlet_instance(instance):
            # shelve stops the VM before it snapshots it; stopping would lose
            # the memory of a VM whose shelve snapshot() refuses anyway.
            LOG.info('not stopping the cloudlet instance for a shelve', instance=instance)
            return
        return super().power_off(instance, timeout=timeout, retry_interval=retry_interval)

    def _hard_reboot(self, context, instance, network_info, share_info, block_device_info=None,
                     accel_info=None):
        # Also power_on and resume_state_on_host_boot. Stock hard reboot would
        # regenerate nova's XML: other devices than the base's, so the VM
        # could never be captured as an overlay of its base again.
        if state.load(libvirt_utils.get_instance_path(instance)) is None:
            return super()._hard_reboot(context, instance, network_info, share_info,
                                        block_device_info=block_device_info, accel_info=accel_info)
        self._cold_boot(instance, network_info)

    def _cold_boot(self, instance, network_info):
        """Boot the instance's own definition (the base's devices) from its disk; never a restore."""
        try:
            # Inherited: nova exposes no public accessor for the libvirt connection's Host.
            guest = self._host.get_guest(instance)
        except exception.InstanceNotFound:
            raise faults.CloudletOperationRefused(
                'rebooted', advice='its libvirt domain is gone; delete it and synthesize it again')
        LOG.info('cloudlet instance: cold boot of its domain definition (memory state discarded)',
                 instance=instance)
        if guest.is_active():
            guest.poweroff()
        # nova's Guest wraps no managed-save query/removal: the raw virDomain does it.
        if guest._domain.hasManagedSaveImage(0):
            guest._domain.managedSaveRemove(0)
        self.plug_vifs(instance, network_info)
        self.cpu_api.power_up_for_instance(instance)
        guest.launch()
        # Inherited private: the same wait loop nova's soft reboot and resume use.
        loopingcall.FixedIntervalLoopingCall(self._wait_for_running, instance).start(
            interval=0.5).wait()

    def rebuild(self, context, instance, image_meta, injected_files, admin_password, allocations,
                bdms, detach_block_devices, attach_block_devices, network_info=None, evacuate=False,
                block_device_info=None, preserve_ephemeral=False, accel_uuids=None,
                reimage_boot_volume=False):
        if evacuate and props.is_cloudlet_instance(instance):
            raise faults.CloudletOperationRefused(
                'evacuated', advice='their state lived in the memory of the failed host; '
                                    'synthesize a new instance from an overlay instead')
        # nova's default rebuild (destroy + spawn) resumes the base again.
        raise NotImplementedError()

    # -- cold migration: the memory carried along (cold_migration.py) -------------------

    def migrate_disk_and_power_off(self, context, instance, dest, flavor, network_info,
                                   block_device_info=None, timeout=0, retry_interval=0):
        if not props.is_cloudlet_instance(instance):
            return super().migrate_disk_and_power_off(
                context, instance, dest, flavor, network_info, block_device_info=block_device_info,
                timeout=timeout, retry_interval=retry_interval)
        # Inherited: nova exposes no public accessor for the libvirt connection's Host.
        guest = self._host.get_guest(instance)
        refusal = cold_migration.refusal(instance, flavor,
                                         guest.get_power_state(self._host) == power_state.RUNNING)
        if refusal is not None:
            # InstanceFaultRollback: the manager puts the instance back to its
            # vm_state and records the inner exception as the fault.
            raise exception.InstanceFaultRollback(inner_exception=refusal)
        move = objects.Migration.get_by_instance_and_status(context, instance.uuid, 'migrating')
        try:
            self._cloudlet_rpc.prepare_migration(context, instance, move.dest_compute,
                                                 CONF.cloudlet.migration_prepare_timeout)
        except Exception as exc:   # noqa: BLE001 - any reason refuses, the VM untouched
            raise exception.InstanceFaultRollback(inner_exception=exception.MigrationPreCheckError(
                reason=cold_migration.prepare_failure(move.dest_compute, exc)))
        instance_dir = libvirt_utils.get_instance_path(instance)
        memory = cold_migration.memory_path(instance_dir)
        nics = cold_migration.save_memory(self, instance, guest, memory)
        try:
            shared = self._is_path_shared_with(dest, instance_dir)       # inherited private
            if not shared:
                # Before nova's copy: it renames the directory to <dir>_resize, the memory along.
                started = time.monotonic()
                self._remotefs.create_dir(dest, instance_dir)
                libvirt_utils.copy_image(memory, memory, host=dest, compression=False)
                LOG.info('cold migration: memory copied to %s in %.1f s', dest, time.monotonic() - started,
                         instance=instance)
            disk_info = super().migrate_disk_and_power_off(
                context, instance, dest, flavor, network_info, block_device_info=block_device_info,
                timeout=timeout, retry_interval=retry_interval)
            if shared:
                # The same directory on both (the same host, or shared storage): nova copied the
                # disks from <dir>_resize into a new <dir>; the memory goes there too.
                libvirt_utils.copy_image(cold_migration.memory_path(instance_dir + '_resize'), memory)
            return disk_info
        except Exception as exc:
            # nova's clean-up put the directory back: the VM runs here again, or the manager
            # marks the server ERROR (its memory kept in the directory, logged).
            if not cold_migration.restore_here(self, instance, instance_dir, nics):
                raise
            inner = exc.inner_exception if isinstance(exc, exception.InstanceFaultRollback) else exc
            raise exception.InstanceFaultRollback(inner_exception=inner)

    def _prepare_migration_in(self, context, instance):
        """This host is a cold migration's destination: fetch the base before the VM stops."""
        with basecache.in_use(instance.image_ref):
            cold_migration.prepare(context, instance, self._qemu_owner())

    def finish_migration(self, context, migration, instance, disk_info, network_info, image_meta,
                         resize_instance, allocations, block_device_info=None, power_on=True,
                         share_info=None):
        instance_dir = libvirt_utils.get_instance_path(instance)
        if not (props.is_cloudlet_instance(instance)
                and os.path.exists(cold_migration.memory_path(instance_dir))):
            return super().finish_migration(context, migration, instance, disk_info, network_info,
                                            image_meta, resize_instance, allocations,
                                            block_device_info=block_device_info, power_on=power_on,
                                            share_info=share_info)
        with basecache.in_use(instance.image_ref):     # not aged out before the record names it
            with faults.spawn_errors('cannot receive base image %s' % instance.image_ref):
                base, _ram = migration_mod.receive(context, instance, self._qemu_owner())
            migration_mod.record(instance_dir, instance, base, None, migration.source_compute,
                                 kind=cold_migration.SOURCE_KIND)
            self._restore_carried_memory(instance, instance_dir, base, super().finish_migration,
                                         context, migration, instance, disk_info, network_info, image_meta,
                                         resize_instance, allocations, block_device_info=block_device_info,
                                         power_on=power_on, share_info=share_info)

    def finish_revert_migration(self, context, instance, network_info, migration, block_device_info=None,
                                power_on=True, share_info=None):
        instance_dir = libvirt_utils.get_instance_path(instance)
        resize_dir = instance_dir + '_resize'      # the source's directory until nova renames it back
        record = state.load(resize_dir)
        if not (props.is_cloudlet_instance(instance) and record
                and os.path.exists(cold_migration.memory_path(resize_dir))):
            return super().finish_revert_migration(context, instance, network_info, migration,
                                                   block_device_info=block_device_info,
                                                   power_on=power_on, share_info=share_info)
        base = launch.base_store().get(record['base_id'])
        self._restore_carried_memory(instance, instance_dir, base, super().finish_revert_migration,
                                     context, instance, network_info, migration,
                                     block_device_info=block_device_info, power_on=power_on,
                                     share_info=share_info)

    def _restore_carried_memory(self, instance, instance_dir, base, finish, *args, **kwargs):
        """nova's finish (its _create_guest restores the saved memory), then the memory file goes."""
        LOG.info('cold migration: restoring the VM from its carried memory', instance=instance)
        with self._restores.pending(instance.uuid, cold_migration.pending_restore(instance_dir, base)):
            finish(*args, **kwargs)
        cold_migration.forget_memory(instance_dir)

    # -- live migration: the destination holds the base (migration.py) -----------------

    # Private LibvirtDriver override (nova reads the flags once, in init_host): a
    # host whose QEMU pre-copy misses pages (TCG before QEMU 9.0, doc/multi-host.md)
    # migrates its VMs paused, as libvirt does without VIR_MIGRATE_LIVE.
    def _parse_migration_flags(self):
        super()._parse_migration_flags()
        flags = migration_mod.exact_migration_flags(
            CONF.libvirt.virt_type, self._host.get_version(),
            self._live_migration_flags, self._block_migration_flags)
        self._live_migration_flags, self._block_migration_flags = flags

    def check_can_live_migrate_destination(self, context, instance, src_compute_info,
                                           dst_compute_info, block_migration=False,
                                           disk_over_commit=False):
        if props.is_cloudlet_instance(instance):
            reason = migration_mod.cannot_receive(context, instance)
            if reason:
                raise exception.MigrationPreCheckError(reason=reason)
        return super().check_can_live_migrate_destination(
            context, instance, src_compute_info, dst_compute_info,
            block_migration=block_migration, disk_over_commit=disk_over_commit)

    def pre_live_migration(self, context, instance, block_device_info, network_info, disk_info,
                           migrate_data):
        if not props.is_cloudlet_instance(instance):
            return super().pre_live_migration(context, instance, block_device_info, network_info,
                                              disk_info, migrate_data)
        with basecache.in_use(instance.image_ref):     # not aged out before the record names it
            with faults.spawn_errors('cannot receive base image %s' % instance.image_ref):
                base, ram = migration_mod.receive(context, instance, self._qemu_owner())
            self._migrating_in[instance.uuid] = base
            try:
                result = super().pre_live_migration(context, instance, block_device_info,
                                                    network_info, disk_info, migrate_data)
            finally:
                self._migrating_in.pop(instance.uuid, None)
            migration_mod.record(libvirt_utils.get_instance_path(instance), instance, base, ram,
                             instance.host)
        return result

    # Private LibvirtDriver override: nova's live migration fetches the kernel and ramdisk
    # with its disk format inspection, which refuses a kernel (a bzImage reads as a bad
    # MBR); its spawn fetches them through its image cache without it. Do as the spawn did.
    def _fetch_instance_kernel_ramdisk(self, context, instance, fallback_from_host=None):
        if instance.uuid not in self._migrating_in:
            return super()._fetch_instance_kernel_ramdisk(context, instance,
                                                          fallback_from_host=fallback_from_host)
        for name, image_id in (('kernel', instance.kernel_id), ('ramdisk', instance.ramdisk_id)):
            if image_id:
                self.image_backend.by_name(instance, name, 'raw').cache(
                    fetch_func=libvirt_utils.fetch_raw_image, context=context,
                    filename=imagecache.get_cache_fname(image_id), image_id=image_id)

    def post_live_migration_at_destination(self, context, instance, network_info, block_migration=False,
                                           block_device_info=None):
        super().post_live_migration_at_destination(context, instance, network_info,
                                                   block_migration=block_migration,
                                                   block_device_info=block_device_info)
        if props.is_cloudlet_instance(instance):
            # Inherited: nova exposes no public accessor for the libvirt connection's Host.
            migration_mod.unmap_definition(self._host, instance)

    # Private LibvirtDriver override: nova makes the destination's disks here, its
    # backing file from its own image cache (_base); a cloudlet root disk's is the base.
    def _create_images_and_backing(self, context, instance, instance_dir, disk_info,
                                   fallback_from_host=None):
        base = self._migrating_in.get(instance.uuid)
        root = [info for info in disk_info or () if os.path.basename(info['path']) == restore.ROOT_DISK]
        if base is not None and root and root[0]['backing_file']:
            with faults.spawn_errors('cannot create the root disk over base %s' % base.base_id[:12]):
                migration_mod.create_root_disk(base, os.path.join(instance_dir, restore.ROOT_DISK),
                                           root[0]['virt_disk_size'])
            disk_info = [info for info in disk_info if info not in root]
        return super()._create_images_and_backing(context, instance, instance_dir, disk_info,
                                                  fallback_from_host=fallback_from_host)
