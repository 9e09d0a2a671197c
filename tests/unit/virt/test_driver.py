"""CloudletDriver's glue: the restore-flag bookkeeping and the lifecycle decisions, on fakelibvirt."""

import os
import threading
import types
from unittest import mock

import fixtures
from lxml import etree

from nova.compute import task_states
import nova.conf
from nova import context as nova_context
from nova import exception
from nova.network import model as network_model
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import guest as guest_mod
from nova.virt.libvirt import utils as libvirt_utils

from cloudlet_glance import properties as props
from cloudlet_nova import conf as cloudlet_conf
from cloudlet_nova.virt import driver
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import migration
from cloudlet_nova.virt import restore
from cloudlet_nova.virt import state

CONF = nova.conf.CONF
UUID = '7b0b4a41-2a0c-4a7e-8f7e-0d6c7d5a0001'
LibvirtDriver = libvirt_driver.LibvirtDriver


class DriverTestCase(test.NoDBTestCase):

    def setUp(self):
        cloudlet_conf.register_opts(CONF)
        super().setUp()
        self.instances_path = self.useFixture(fixtures.TempDir()).path
        self.flags(instances_path=self.instances_path)
        self.useFixture(nova_fixtures.LibvirtFixture())
        self.useFixture(nova_fixtures.CGroupsFixture())
        self.driver = driver.CloudletDriver(fake.FakeVirtAPI(), False)
        self.context = nova_context.get_admin_context()
        self.instance = self.cloudlet_instance()
        self.instance_dir = os.path.join(self.instances_path, UUID)
        os.makedirs(os.path.join(self.instance_dir, state.LAUNCH_DIR))
        self.launch = types.SimpleNamespace(
            disk_path=os.path.join(self.instance_dir, state.LAUNCH_DIR, 'disk.qcow2'),
            memory_path=os.path.join(self.instance_dir, state.LAUNCH_DIR, 'memory.save'), ram=None, streamed=None,
            meta={'base_id': 'ab' * 32})
        open(self.launch.disk_path, 'w').close()

    @staticmethod
    def cloudlet_instance(cloudlet=True, task_state=None):
        sysmeta = {props.system_metadata_key(props.CLOUDLET_TYPE): props.BASE_DISK} if cloudlet else {}
        return objects.Instance(uuid=UUID, system_metadata=sysmeta, metadata={}, task_state=task_state,
                                image_ref='base-image', numa_topology=None)

    def pending(self):
        return self.driver._restores.pending(
            UUID, restore.Pending(self.launch, 'test-base', {'kernel': '/store/base/kernel'}))


class RestoreFlagTest(DriverTestCase):

    @mock.patch.object(restore, 'restore_guest')
    @mock.patch.object(LibvirtDriver, '_create_guest')
    def test_no_spawn_no_restore(self, create_guest, restore_guest):
        # Hard reboot, power-on, resume, unrescue... of any instance: nova boots it.
        self.driver._create_guest(self.context, '<domain/>', self.instance)
        create_guest.assert_called_once_with(self.context, '<domain/>', self.instance, power_on=True,
                                             pause=False, post_xml_callback=None)
        restore_guest.assert_not_called()

    @mock.patch.object(restore, 'restore_guest')
    @mock.patch.object(LibvirtDriver, '_create_guest')
    def test_the_spawn_restores_once(self, create_guest, restore_guest):
        callback = mock.Mock()
        with self.pending():
            guest = self.driver._create_guest(self.context, '<domain/>', self.instance, pause=True,
                                              post_xml_callback=callback)
            self.assertIs(restore_guest.return_value, guest)
            restore_guest.assert_called_once_with(
                self.driver, '<domain/>', self.instance, self.launch, 'test-base', pause=True,
                post_xml_callback=callback, base_boot_files={'kernel': '/store/base/kernel'})
            self.driver._create_guest(self.context, '<domain/>', self.instance)
        create_guest.assert_called_once()
        self.assertEqual(0, len(self.driver._restores))

    @mock.patch.object(restore, 'restore_guest')
    @mock.patch.object(LibvirtDriver, '_create_guest')
    def test_spawn_without_power_on_defines_only(self, create_guest, restore_guest):
        with self.pending():
            self.driver._create_guest(self.context, '<domain/>', self.instance, power_on=False)
            self.assertIs(self.launch, self.driver._restores.claim(UUID).launch)    # not consumed
        restore_guest.assert_not_called()
        create_guest.assert_called_once()

    @mock.patch.object(LibvirtDriver, '_create_and_inject_local_root')
    def test_root_disk_is_the_launch_disk(self, super_root):
        with self.pending():
            self.assertTrue(self.driver._create_and_inject_local_root(
                self.context, self.instance, {}, False, '', {}, None, None))
            # A rescue disk is nova's business.
            self.driver._create_and_inject_local_root(
                self.context, self.instance, {}, False, '.rescue', {}, None, None)
        super_root.assert_called_once()
        self.assertTrue(os.path.exists(os.path.join(self.instance_dir, 'disk')))

    @mock.patch.object(LibvirtDriver, '_create_image', return_value=(False, False))
    def test_create_image_places_the_launch_disk(self, super_create_image):
        with self.pending():
            self.assertEqual((False, True), self.driver._create_image(self.context, self.instance, {}))
            self.assertEqual((False, False), self.driver._create_image(self.context, self.instance, {}))
        self.assertEqual((False, False), self.driver._create_image(self.context, self.instance, {}))
        self.assertTrue(os.path.exists(os.path.join(self.instance_dir, 'disk')))


class SpawnTest(DriverTestCase):

    @mock.patch.object(LibvirtDriver, 'spawn')
    def test_ordinary_spawn(self, super_spawn):
        state.save(self.instance_dir, {'version': 1, 'base_id': 'x'})    # e.g. rebuilt off a base
        instance = self.cloudlet_instance(cloudlet=False)
        self.driver.spawn(self.context, instance, None, [], 'pw', {})
        super_spawn.assert_called_once()
        self.assertIsNone(state.load(self.instance_dir))

    @mock.patch.object(LibvirtDriver, 'spawn', side_effect=exception.VirtualInterfaceCreateException())
    @mock.patch('cloudlet_nova.virt.launch.prepare')
    def test_failed_spawn_leaves_no_cloudlet_files(self, prepare, super_spawn):
        base = types.SimpleNamespace(base_id='ab' * 32, name='test-base', boot_files=dict)
        prepare.return_value = (base, self.launch)
        self.assertRaises(exception.VirtualInterfaceCreateException, self.driver.spawn,
                          self.context, self.instance, None, [], 'pw', {})
        self.assertIsNone(state.load(self.instance_dir))
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, state.LAUNCH_DIR)))
        self.assertEqual(0, len(self.driver._restores))

    @mock.patch.object(LibvirtDriver, 'spawn', side_effect=exception.VirtualInterfaceCreateException())
    @mock.patch('cloudlet_nova.virt.launch.prepare')
    def test_a_spawn_failing_before_its_restore_stops_the_streaming_residue(self, prepare, super_spawn):
        base = types.SimpleNamespace(base_id='ab' * 32, name='test-base', boot_files=dict)
        self.instance.metadata = {props.HANDOFF_ID: 'h-1'}
        self.launch.streamed = mock.Mock()
        prepare.return_value = (base, self.launch)
        with mock.patch.object(self.driver._inboxes, 'abort') as abort_inbox:
            self.assertRaises(exception.VirtualInterfaceCreateException, self.driver.spawn,
                              self.context, self.instance, None, [], 'pw', {})
        # The apply waiting for bytes stops, the pipe closes, the apply's end is waited for.
        abort_inbox.assert_called_once_with('h-1', mock.ANY)
        self.launch.streamed.abort.assert_called_once_with()
        self.launch.streamed.result.assert_called_once_with(30.0)
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, state.LAUNCH_DIR)))

    @mock.patch.object(LibvirtDriver, 'spawn')
    @mock.patch('cloudlet_nova.virt.launch.prepare')
    def test_spawn_records_the_state(self, prepare, super_spawn):
        base = types.SimpleNamespace(base_id='ab' * 32, name='test-base',
                                     boot_files=lambda: {'kernel': '/store/base/kernel'})
        prepare.return_value = (base, self.launch)
        seen = []
        super_spawn.side_effect = lambda *a, **k: seen.append(self.driver._restores.get(UUID))
        self.driver.spawn(self.context, self.instance, None, [], 'pw', {})
        self.assertIs(self.launch, seen[0].launch)
        self.assertEqual({'kernel': '/store/base/kernel'}, seen[0].base_boot_files)
        self.assertEqual(base.base_id, state.load(self.instance_dir)['base_id'])
        self.assertEqual('full_image', state.load(self.instance_dir)['memory_restore'])
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, state.LAUNCH_DIR)))

    def handoff_spawn(self, settle):
        """A spawn of a handoff's destination server, nova's part and the guest faked; `settle` runs."""
        base = types.SimpleNamespace(base_id='ab' * 32, name='test-base', boot_files=dict)
        self.instance.metadata = {props.HANDOFF_ID: 'h-1'}
        self.launch.meta = {'kind': 'handoff-residue', 'nics': []}
        guest = object()
        with mock.patch('cloudlet_nova.virt.launch.prepare', return_value=(base, self.launch)), \
                mock.patch.object(LibvirtDriver, 'spawn'), \
                mock.patch.object(self.driver._host, 'get_guest', return_value=guest) as get_guest, \
                mock.patch.object(driver.handoff_arrival, 'settle', side_effect=settle) as settle_mock:
            try:
                self.driver.spawn(self.context, self.instance, None, [], 'pw', {})
            finally:
                self.settle_calls = settle_mock.call_args_list
                get_guest.assert_called_with(self.instance)
                self.assertEqual([mock.call(self.instance, guest, self.launch.meta)], self.settle_calls)

    def test_a_handoff_spawn_settles_the_nics_that_came_along(self):
        self.handoff_spawn(None)
        self.assertEqual('handoff', state.load(self.instance_dir)['source']['kind'])

    def test_a_handoff_spawn_whose_nics_cannot_settle_fails_the_build(self):
        exc = self.assertRaises(faults.CloudletSpawnFailed, self.handoff_spawn,
                                RuntimeError('ovsdb is down'))
        self.assertEqual('the NICs that came with the handoff: ovsdb is down', exc.format_message())
        self.assertIsInstance(exc.__cause__, RuntimeError)
        # As any failed cloudlet spawn: no cloudlet files left.
        self.assertIsNone(state.load(self.instance_dir))
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, state.LAUNCH_DIR)))
        self.assertEqual(0, len(self.driver._restores))

    @mock.patch.object(LibvirtDriver, 'spawn')
    @mock.patch('cloudlet_nova.virt.launch.prepare')
    def test_carried_ports_are_adopted_before_the_restore(self, prepare, super_spawn):
        base = types.SimpleNamespace(base_id='ab' * 32, name='test-base', boot_files=dict)
        self.instance.metadata = {props.HANDOFF_ID: 'h-1'}
        prepare.return_value = (base, self.launch)
        with mock.patch.object(driver.handoff_arrival, 'adopt',
                               side_effect=RuntimeError('the conductor is down')) as adopt:
            exc = self.assertRaises(faults.CloudletSpawnFailed, self.driver.spawn,
                                    self.context, self.instance, None, [], 'pw', {})
        adopt.assert_called_once_with(self.instance, self.launch.meta)
        self.assertEqual('the NICs that came with the handoff: the conductor is down', exc.format_message())
        super_spawn.assert_not_called()
        self.assertIsNone(state.load(self.instance_dir))

    def test_a_handoff_spawn_with_bad_nic_metadata_fails_the_build(self):
        from cloudlet_engine import errors
        exc = self.assertRaises(faults.CloudletSpawnFailed, self.handoff_spawn,
                                errors.CorruptOverlay('residue metadata: a NIC is not an object'))
        self.assertIn('residue metadata: a NIC is not an object', exc.format_message())
        self.assertIsNone(state.load(self.instance_dir))

    @mock.patch.object(LibvirtDriver, 'spawn')
    @mock.patch('cloudlet_nova.virt.launch.prepare')
    def test_other_spawns_settle_nothing(self, prepare, super_spawn):
        base = types.SimpleNamespace(base_id='ab' * 32, name='test-base', boot_files=dict)
        self.launch.meta = {'nics': [{'mac': 'fa:16:3e:00:00:01'}]}       # not a handoff: never read
        prepare.return_value = (base, self.launch)
        with mock.patch.object(driver.handoff_arrival, 'settle') as settle:
            self.driver.spawn(self.context, self.instance, None, [], 'pw', {})
        settle.assert_not_called()
        self.assertEqual('base', state.load(self.instance_dir)['source']['kind'])

    def test_boot_from_volume_refused(self):
        with mock.patch.object(LibvirtDriver, '_is_booted_from_volume', return_value=True):
            self.assertRaises(faults.CloudletSpawnFailed, self.driver.spawn,
                              self.context, self.instance, None, [], 'pw', {})


class SpawnPortsTest(DriverTestCase):
    """The ports of a spawn (vifs.py): taps made by os-vif; a handoff's plugged early, then waited for."""

    def setUp(self):
        super().setUp()
        from tests.unit.virt import test_vifs
        self.network_info = network_model.NetworkInfo([
            test_vifs.ovs_vif(vif_id=UUID, address='fa:16:3e:00:00:01'), test_vifs.hybrid_vif()])
        self.base = types.SimpleNamespace(base_id='ab' * 32, name='test-base', boot_files=dict)
        self.order = []
        self.real_vifs = {name: getattr(driver.vifs, name) for name in ('plug_early', 'wait_wired')}
        self.prepare = self.useFixture(fixtures.MockPatch(
            'cloudlet_nova.virt.launch.prepare',
            side_effect=lambda *a, **k: self.order.append('prepare') or (self.base, self.launch))).mock
        self.super_spawn = self.useFixture(fixtures.MockPatchObject(
            LibvirtDriver, 'spawn', side_effect=lambda *a, **k: self.order.append('nova spawn'))).mock
        self.plug_early = self.useFixture(fixtures.MockPatchObject(
            driver.vifs, 'plug_early', side_effect=lambda *a: self.order.append('plug_early'))).mock
        self.wait_wired = self.useFixture(fixtures.MockPatchObject(
            driver.vifs, 'wait_wired', side_effect=lambda *a, **k: self.order.append('wait_wired'))).mock
        self.useFixture(fixtures.MockPatchObject(self.driver._host, 'get_guest'))
        self.useFixture(fixtures.MockPatchObject(driver.handoff_arrival, 'settle'))

    def spawn(self, instance=None, network_info=None):
        self.driver.spawn(self.context, instance or self.instance, None, [], 'pw', {},
                          network_info=self.network_info if network_info is None else network_info)
        return self.super_spawn.call_args.kwargs['network_info']

    def assert_os_vif_taps(self, network_info):
        self.assertIsInstance(network_info, network_model.NetworkInfo)
        self.assertEqual([True, None], [vif['details'].get('ovs_create_tap') for vif in network_info])
        self.assertEqual([True, False], [vif['delegate_create'] for vif in network_info])
        self.assertIsNone(self.network_info[0]['details'].get('ovs_create_tap'))       # the caller's: as it was

    def test_a_handoff_plugs_before_the_residue_and_waits_for_the_wiring_after(self):
        self.instance.metadata = {props.HANDOFF_ID: 'h-1'}
        given = self.spawn()
        self.assertEqual(['plug_early', 'prepare', 'wait_wired', 'nova spawn'], self.order)
        self.assert_os_vif_taps(given)
        # The very VIFs nova's spawn gets are plugged and marked active.
        self.plug_early.assert_called_once_with(self.driver, self.instance, mock.ANY)
        self.assertIs(given, self.plug_early.call_args.args[2])
        self.wait_wired.assert_called_once_with(self.context, self.instance, mock.ANY)
        self.assertIs(given, self.wait_wired.call_args.args[2])

    def test_a_handoff_whose_ports_are_not_wired_fails_the_build(self):
        self.instance.metadata = {props.HANDOFF_ID: 'h-1'}
        self.wait_wired.side_effect = exception.VirtualInterfaceCreateException()
        self.assertRaises(exception.VirtualInterfaceCreateException, self.spawn)
        self.super_spawn.assert_not_called()
        self.assertIsNone(state.load(self.instance_dir))
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, state.LAUNCH_DIR)))

    def test_a_handoff_without_ports_plugs_and_waits_for_nothing(self):
        self.instance.metadata = {props.HANDOFF_ID: 'h-1'}
        self.spawn(network_info=network_model.NetworkInfo())
        self.assertEqual(['prepare', 'nova spawn'], self.order)

    def test_other_cloudlet_spawns_neither_plug_early_nor_wait(self):
        for metadata in ({}, {props.META_OVERLAY_ID: 'overlay-image'}):
            self.order = []
            self.instance.metadata = metadata
            self.assert_os_vif_taps(self.spawn())
            self.assertEqual(['prepare', 'nova spawn'], self.order)
        self.plug_early.assert_not_called()
        self.wait_wired.assert_not_called()

    def test_an_ordinary_spawn_keeps_nova_s_ports(self):
        instance = self.cloudlet_instance(cloudlet=False)
        instance.metadata = {props.HANDOFF_ID: 'h-1'}       # not a cloudlet instance: ignored
        self.assertIs(self.network_info, self.spawn(instance))
        self.assertEqual(['nova spawn'], self.order)
        self.plug_early.assert_not_called()
        self.wait_wired.assert_not_called()

    def test_a_handoff_s_ports_reach_os_vif_and_nova_s_spawn_active(self):
        # vifs' own plug_early and wait_wired; Neutron and nova's plug_vifs faked.
        self.instance.metadata = {props.HANDOFF_ID: 'h-1'}
        for name, real in self.real_vifs.items():
            self.useFixture(fixtures.MockPatchObject(driver.vifs, name, real))
        neutron = mock.Mock()
        neutron.show_port.return_value = {'port': {'status': 'ACTIVE'}}
        self.useFixture(fixtures.MockPatch('nova.network.neutron.get_client', return_value=neutron))
        with mock.patch.object(LibvirtDriver, 'plug_vifs') as super_plug:
            given = self.spawn()
        [(instance, plugged)] = [c.args for c in super_plug.call_args_list]
        self.assertIs(self.instance, instance)
        self.assert_os_vif_taps(plugged)
        self.assertEqual([vif['id'] for vif in self.network_info], [vif['id'] for vif in plugged])
        self.assert_os_vif_taps(given)
        self.assertEqual([True, True], [vif['active'] for vif in given])
        self.assertEqual(2, neutron.show_port.call_count)


class VifsTest(DriverTestCase):
    """nova's plug, unplug, cleanup and hot-(un)plug get os-vif-tap VIFs for cloudlet instances only."""

    def setUp(self):
        super().setUp()
        from tests.unit.virt import test_vifs
        self.vif = test_vifs.ovs_vif(vif_id=UUID)
        self.network_info = network_model.NetworkInfo([self.vif, test_vifs.hybrid_vif()])

    def assert_os_vif_taps(self, network_info):
        self.assertIsInstance(network_info, network_model.NetworkInfo)
        self.assertIsNot(self.network_info, network_info)
        self.assertEqual([True, None], [vif['details'].get('ovs_create_tap') for vif in network_info])
        self.assertEqual([True, False], [vif['delegate_create'] for vif in network_info])
        self.assertIsNone(self.vif['details'].get('ovs_create_tap'))        # the caller's: as it was
        self.assertFalse(self.vif['delegate_create'])

    def test_plug_and_unplug(self):
        for method in ('plug_vifs', 'unplug_vifs'):
            with mock.patch.object(LibvirtDriver, method) as parent:
                getattr(self.driver, method)(self.instance, self.network_info)
                getattr(self.driver, method)(self.cloudlet_instance(cloudlet=False), self.network_info)
            [(cloudlet, taps), (ordinary, original)] = [c.args for c in parent.call_args_list]
            self.assertIs(self.instance, cloudlet)
            self.assert_os_vif_taps(taps)
            self.assertIs(self.network_info, original)

    @mock.patch.object(LibvirtDriver, 'cleanup', return_value='cleaned')
    def test_cleanup(self, parent):
        self.assertEqual('cleaned', self.driver.cleanup(
            self.context, self.instance, self.network_info, block_device_info='bdi', destroy_disks=False,
            migrate_data='md', destroy_vifs=False, destroy_secrets=False))
        ordinary = self.cloudlet_instance(cloudlet=False)
        self.driver.cleanup(self.context, ordinary, self.network_info)
        [first, second] = parent.call_args_list
        self.assertEqual((self.context, self.instance), first.args[:2])
        self.assert_os_vif_taps(first.args[2])
        self.assertEqual({'block_device_info': 'bdi', 'destroy_disks': False, 'migrate_data': 'md',
                          'destroy_vifs': False, 'destroy_secrets': False}, first.kwargs)
        self.assertEqual(mock.call(self.context, ordinary, self.network_info, block_device_info=None,
                                   destroy_disks=True, migrate_data=None, destroy_vifs=True,
                                   destroy_secrets=True), second)
        self.assertIs(self.network_info, second.args[2])
        self.driver.cleanup(self.context, self.instance, None)
        self.assertIsNone(parent.call_args.args[2])

    def test_attach_and_detach_interface(self):
        ordinary = self.cloudlet_instance(cloudlet=False)
        with mock.patch.object(LibvirtDriver, 'attach_interface', return_value='attached') as attach:
            self.assertEqual('attached', self.driver.attach_interface(self.context, self.instance, 'meta',
                                                                      self.vif))
            self.driver.attach_interface(self.context, ordinary, 'meta', self.vif)
        with mock.patch.object(LibvirtDriver, 'detach_interface', return_value='detached') as detach:
            self.assertEqual('detached', self.driver.detach_interface(self.context, self.instance, self.vif))
            self.driver.detach_interface(self.context, ordinary, self.vif)
        for parent in (attach, detach):
            [cloudlet, other] = parent.call_args_list
            tapped, original = cloudlet.args[-1], other.args[-1]
            self.assertIs(self.instance, cloudlet.args[1])
            self.assertIsNot(self.vif, tapped)
            self.assertEqual((True, True), (tapped['details']['ovs_create_tap'], tapped['delegate_create']))
            self.assertIs(self.vif, original)
        self.assertEqual((self.context, self.instance, 'meta'), attach.call_args_list[0].args[:3])
        self.assertEqual((self.context, self.instance), detach.call_args_list[0].args[:2])
        self.assertNotIn('ovs_create_tap', self.vif['details'])

    def test_a_hybrid_vif_is_hot_plugged_as_it_is(self):
        from tests.unit.virt import test_vifs
        hybrid = test_vifs.hybrid_vif()
        with mock.patch.object(LibvirtDriver, 'attach_interface') as attach:
            self.driver.attach_interface(self.context, self.instance, 'meta', hybrid)
        self.assertIs(hybrid, attach.call_args.args[-1])


class DestroyTest(DriverTestCase):
    """A deleted server that came by handoff gives back the floating IP the handoff made for it."""

    def setUp(self):
        super().setUp()
        self.network_info = [{'id': 'port-1'}]
        self.release = self.useFixture(fixtures.MockPatch(
            'cloudlet_nova.handoff.addresses.release_handed_off', return_value=['fip-1'])).mock
        self.parent = self.useFixture(fixtures.MockPatchObject(LibvirtDriver, 'destroy')).mock

    def test_a_deleted_cloudlet_server_releases_them_before_nova_s_destroy(self):
        instance = self.cloudlet_instance(task_state=task_states.DELETING)
        self.driver.destroy(self.context, instance, self.network_info, block_device_info='bdi')
        self.release.assert_called_once_with(self.context, instance, self.network_info)
        self.parent.assert_called_once_with(self.context, instance, self.network_info, block_device_info='bdi',
                                            destroy_disks=True, destroy_secrets=True)

    def test_other_destroys_and_other_servers_release_nothing(self):
        # A failed spawn, a rebuild, a stop: the server keeps its addresses.
        for instance in (self.cloudlet_instance(task_state=task_states.SPAWNING),
                         self.cloudlet_instance(task_state=None),
                         self.cloudlet_instance(cloudlet=False, task_state=task_states.DELETING)):
            self.driver.destroy(self.context, instance, self.network_info)
        self.release.assert_not_called()
        self.assertEqual(3, self.parent.call_count)

    def test_a_neutron_failure_does_not_stop_the_delete(self):
        self.release.side_effect = RuntimeError('neutron is down')
        instance = self.cloudlet_instance(task_state=task_states.DELETING)
        self.driver.destroy(self.context, instance, self.network_info)
        self.parent.assert_called_once()


class LifecycleDecisionTest(DriverTestCase):

    def test_evacuate_refused(self):
        exc = self.assertRaises(faults.CloudletOperationRefused, self.driver.rebuild,
                                self.context, self.instance, None, [], 'pw', {}, [], None, None,
                                evacuate=True)
        self.assertIn('cannot be evacuated', exc.format_message())

    def test_rebuild_is_nova_s_default(self):
        self.assertRaises(NotImplementedError, self.driver.rebuild, self.context, self.instance,
                          None, [], 'pw', {}, [], None, None)
        self.assertRaises(NotImplementedError, self.driver.rebuild, self.context,
                          self.cloudlet_instance(cloudlet=False), None, [], 'pw', {}, [], None, None,
                          evacuate=True)

    @mock.patch.object(LibvirtDriver, 'check_can_live_migrate_destination')
    def test_live_migration_refused_by_a_destination_that_cannot_get_the_base(self, super_dest):
        with mock.patch.object(migration, 'cannot_receive', return_value='no base here') as check:
            error = self.assertRaises(exception.MigrationPreCheckError,
                                      self.driver.check_can_live_migrate_destination,
                                      self.context, self.instance, {}, {})
        check.assert_called_once_with(self.context, self.instance)
        self.assertIn('no base here', str(error))
        super_dest.assert_not_called()

    @mock.patch.object(LibvirtDriver, 'check_can_live_migrate_destination', return_value='data')
    def test_live_migration_to_a_destination_that_can_get_the_base_is_nova_s(self, super_dest):
        with mock.patch.object(migration, 'cannot_receive', return_value=None):
            self.assertEqual('data', self.driver.check_can_live_migrate_destination(
                self.context, self.instance, {}, {}, block_migration=True))
        super_dest.assert_called_once_with(self.context, self.instance, {}, {}, block_migration=True,
                                           disk_over_commit=False)

    @mock.patch.object(LibvirtDriver, 'check_can_live_migrate_destination', return_value='data')
    def test_live_migration_of_an_ordinary_instance_asks_nothing_of_glance(self, super_dest):
        with mock.patch.object(migration, 'cannot_receive') as check:
            self.driver.check_can_live_migrate_destination(self.context, self.cloudlet_instance(False), {}, {})
        check.assert_not_called()

    def test_pre_live_migration_brings_the_base_then_records_it(self):
        base, calls = mock.Mock(base_id='ab' * 32), []

        def nova_pre(context, instance, *args):
            calls.append(('nova', dict(self.driver._migrating_in)))
            return 'migrate-data'
        self.instance.host = 'source-host'
        with mock.patch.object(migration, 'receive', return_value=(base, 'ram')) as receive, \
                mock.patch.object(migration, 'record') as record, \
                mock.patch.object(LibvirtDriver, 'pre_live_migration', side_effect=nova_pre), \
                mock.patch.object(self.driver, '_qemu_owner', return_value=(64055, 108)):
            result = self.driver.pre_live_migration(self.context, self.instance, None, [], None, 'data')
        self.assertEqual('migrate-data', result)
        receive.assert_called_once_with(self.context, self.instance, (64055, 108))
        # nova's pre_live_migration (and so _create_images_and_backing) saw the base.
        self.assertEqual([('nova', {UUID: base})], calls)
        record.assert_called_once_with(self.instance_dir, self.instance, base, 'ram', 'source-host')
        self.assertEqual({}, self.driver._migrating_in)

    def test_pre_live_migration_that_fails_records_nothing(self):
        with mock.patch.object(migration, 'receive', return_value=(mock.Mock(), None)), \
                mock.patch.object(migration, 'record') as record, \
                mock.patch.object(LibvirtDriver, 'pre_live_migration',
                                  side_effect=exception.DestinationDiskExists(path='x')), \
                mock.patch.object(self.driver, '_qemu_owner', return_value=None):
            self.assertRaises(exception.DestinationDiskExists, self.driver.pre_live_migration,
                              self.context, self.instance, None, [], None, 'data')
        record.assert_not_called()
        self.assertEqual({}, self.driver._migrating_in)

    @mock.patch.object(LibvirtDriver, '_create_images_and_backing')
    def test_the_migrating_root_disk_is_a_layer_over_the_base(self, super_create):
        base = mock.Mock(base_id='ab' * 32)
        root = {'path': '/src/%s/disk' % UUID, 'backing_file': 'disk', 'virt_disk_size': 4096, 'type': 'qcow2'}
        config = {'path': '/src/%s/disk.config' % UUID, 'backing_file': '', 'virt_disk_size': 512, 'type': 'raw'}
        self.driver._migrating_in[UUID] = base
        with mock.patch.object(migration, 'create_root_disk') as create:
            self.driver._create_images_and_backing(self.context, self.instance, self.instance_dir,
                                                   [root, config], fallback_from_host='src')
        create.assert_called_once_with(base, os.path.join(self.instance_dir, 'disk'), 4096)
        # The other disks, the kernel and ramdisk: nova's way.
        super_create.assert_called_once_with(self.context, self.instance, self.instance_dir, [config],
                                             fallback_from_host='src')

    @mock.patch.object(LibvirtDriver, '_create_images_and_backing')
    def test_outside_a_migration_disks_are_nova_s(self, super_create):
        root = {'path': '/src/%s/disk' % UUID, 'backing_file': 'abc', 'virt_disk_size': 4096, 'type': 'qcow2'}
        with mock.patch.object(migration, 'create_root_disk') as create:
            self.driver._create_images_and_backing(self.context, self.instance, self.instance_dir, [root])
        create.assert_not_called()
        super_create.assert_called_once_with(self.context, self.instance, self.instance_dir, [root],
                                             fallback_from_host=None)

    @mock.patch.object(LibvirtDriver, '_fetch_instance_kernel_ramdisk')
    def test_a_migrating_instance_s_kernel_comes_through_the_image_cache_as_at_spawn(self, nova_fetch):
        self.instance.kernel_id, self.instance.ramdisk_id = 'kernel-image', None
        self.driver._migrating_in[UUID] = mock.Mock()
        with mock.patch.object(self.driver, 'image_backend') as backend:
            self.driver._fetch_instance_kernel_ramdisk(self.context, self.instance)
        backend.by_name.assert_called_once_with(self.instance, 'kernel', 'raw')
        [_, kwargs] = backend.by_name.return_value.cache.call_args
        self.assertEqual((libvirt_utils.fetch_raw_image, 'kernel-image'), (kwargs['fetch_func'], kwargs['image_id']))
        nova_fetch.assert_not_called()
        del self.driver._migrating_in[UUID]
        self.driver._fetch_instance_kernel_ramdisk(self.context, self.instance)
        nova_fetch.assert_called_once_with(self.context, self.instance, fallback_from_host=None)

    @mock.patch.object(LibvirtDriver, 'post_live_migration_at_destination')
    def test_after_a_live_migration_the_definition_maps_no_ram_file(self, super_post):
        with mock.patch.object(migration, 'unmap_definition') as unmap:
            self.driver.post_live_migration_at_destination(self.context, self.instance, [])
            self.driver.post_live_migration_at_destination(self.context, self.cloudlet_instance(False), [])
        unmap.assert_called_once_with(self.driver._host, self.instance)
        self.assertEqual(2, super_post.call_count)

    @mock.patch.object(LibvirtDriver, 'power_off')
    def test_shelve_does_not_stop_the_vm(self, super_power_off):
        self.driver.power_off(self.cloudlet_instance(task_state=task_states.SHELVING))
        super_power_off.assert_not_called()
        self.driver.power_off(self.cloudlet_instance(task_state=task_states.POWERING_OFF))
        super_power_off.assert_called_once()

    def test_shelve_snapshot_refused_and_image_deleted(self):
        with mock.patch.object(self.driver, '_image_api') as image_api:
            self.assertRaises(faults.CloudletOperationRefused, self.driver.snapshot, self.context,
                              self.cloudlet_instance(task_state=task_states.SHELVING), 'img', None)
        image_api.delete.assert_called_once_with(self.context, 'img')

    def test_plain_snapshot_is_nova_s(self):
        with mock.patch.object(self.driver, '_image_api') as image_api, \
                mock.patch.object(LibvirtDriver, 'snapshot') as super_snapshot:
            image_api.get.return_value = {'properties': {props.CLOUDLET_TYPE: 'something-else'}}
            self.driver.snapshot(self.context, self.instance, 'img', None)
        super_snapshot.assert_called_once_with(self.context, self.instance, 'img', None)

    @mock.patch.object(driver.CloudletDriver, '_cold_boot')
    @mock.patch.object(LibvirtDriver, '_hard_reboot')
    def test_hard_reboot_of_a_cloudlet_instance_is_a_cold_boot(self, super_reboot, cold_boot):
        self.driver._hard_reboot(self.context, self.instance, [], None)
        super_reboot.assert_called_once()           # no cloudlet.json: an ordinary instance
        state.save(self.instance_dir, {'version': 1, 'base_id': 'x'})
        self.driver._hard_reboot(self.context, self.instance, [], None)
        cold_boot.assert_called_once_with(self.instance, [])
        super_reboot.assert_called_once()

    @mock.patch.object(LibvirtDriver, 'update_provider_tree')
    def test_traits(self, super_update):
        tree = mock.Mock()
        tree.data.return_value.traits = {'COMPUTE_NODE', 'CUSTOM_CLOUDLET_IMAGE_GONE'}
        with mock.patch.object(driver.basecache.hostcache, 'cached_images',
                               return_value={'5c1d6f0e-8a4b': 'ab' * 32}):
            self.driver.update_provider_tree(tree, 'node1')
        super_update.assert_called_once_with(tree, 'node1', allocations=None)
        tree.add_traits.assert_called_once_with('node1', 'CUSTOM_CLOUDLET_V1')
        tree.update_traits.assert_called_once_with('node1', {'COMPUTE_NODE', 'CUSTOM_CLOUDLET_IMAGE_5C1D6F0E_8A4B'})

    @mock.patch.object(LibvirtDriver, 'cache_image', return_value=True)
    def test_cache_image_leaves_ordinary_images_to_nova(self, super_cache):
        with mock.patch.object(driver.basecache, 'precache', side_effect=[None, False]) as precache, \
                mock.patch.object(self.driver, '_qemu_owner', return_value=(1, 2)):
            self.assertTrue(self.driver.cache_image(self.context, 'cirros'))
            self.assertFalse(self.driver.cache_image(self.context, 'base-image'))
        super_cache.assert_called_once_with(self.context, 'cirros')
        precache.assert_called_with(self.context, 'base-image', (1, 2))

    @mock.patch.object(LibvirtDriver, 'manage_image_cache')
    def test_the_image_cache_pass_ages_the_base_store_after_nova_s_own(self, super_manage):
        with mock.patch.object(driver.basecache, 'age') as age:
            self.driver.manage_image_cache(self.context, [self.instance])
        super_manage.assert_called_once_with(self.context, [self.instance])
        age.assert_called_once_with([self.instance])

    @mock.patch.object(LibvirtDriver, 'manage_image_cache',
                       side_effect=exception.DiskNotFound(location='/instances/deleted-meanwhile/disk'))
    def test_the_base_store_ages_when_nova_s_own_pass_fails(self, super_manage):
        with mock.patch.object(driver.basecache, 'age') as age:
            self.assertRaises(exception.DiskNotFound, self.driver.manage_image_cache, self.context,
                              [self.instance])
        age.assert_called_once_with([self.instance])


class FakeStreamed:
    """Test double of apply.Streamed: writes the image at `image_path` into the pipe `pipe_path`
    with the XML it is given (only its first half, then the pipe closed, with `error`).
    """

    def __init__(self, image_path, pipe_path, error=None):
        from cloudlet_engine import savefile
        self._header = savefile.read_save_image(image_path)
        with open(image_path, 'rb') as f:
            self._image = f.read()
        self.error, self.xml, self.aborted, self.ended = error, None, False, False
        self._path, self._thread = pipe_path, None
        os.mkfifo(pipe_path)

    def header(self, timeout=None):
        return self._header

    def give_xml(self, xml):
        from cloudlet_engine import savefile
        self.xml = xml
        data = savefile.with_xml(self._header, xml) + self._image[self._header.stream_offset:]
        if self.error is not None:
            data = data[:len(data) // 2]

        def write():
            with open(self._path, 'wb') as pipe:
                pipe.write(data)
        self._thread = threading.Thread(target=write, daemon=True)
        self._thread.start()

    def result(self, timeout=None):
        self._thread.join(timeout)
        self.ended = True
        if self.error is not None:
            raise self.error

    def abort(self):
        self.aborted = True


class RestoreGuestTest(DriverTestCase):
    """restore.restore_guest on fakelibvirt with save/restore (tests/functional/fake_libvirt_save.py)."""

    def setUp(self):
        super().setUp()
        from tests.fixtures import fake_savefile
        from tests.functional import fake_libvirt_save
        from tests.unit.virt import test_restore
        self.fake_libvirt = self.useFixture(fake_libvirt_save.FakeLibvirtSaveRestore())
        # fakelibvirt makes no taps: nothing for restore.ensure_taps_up to look at.
        self.useFixture(fixtures.MonkeyPatch('cloudlet_nova.virt.restore._flags', lambda dev: None))
        self.nova_xml = test_restore.with_boot_files(
            test_restore.NOVA_XML.replace('22222222-2222-2222-2222-222222222222', UUID), self.instance_dir)
        self.pages = [('pc.ram', 0, b'A' * 4096), ('pc.ram', 4096, None)]
        fake_savefile.build_fake_save_image(self.launch.memory_path, test_restore.BASE_XML, self.pages)

    def test_restore_paused_with_nova_identity_and_nics(self):
        from cloudlet_engine import savefile
        callback = mock.Mock()
        guest = restore.restore_guest(self.driver, self.nova_xml, self.instance, self.launch, 'b',
                                      pause=True, post_xml_callback=callback)
        callback.assert_called_once_with()
        dom = guest._domain
        self.assertEqual('instance-00000001', dom.name())
        self.assertEqual(UUID, dom.UUIDString())
        name, uuid, path, flags = self.fake_libvirt.restores[-1]
        self.assertEqual(('instance-00000001', UUID, self.launch.memory_path), (name, uuid, path))
        self.assertEqual(4, flags)                                    # VIR_DOMAIN_SAVE_PAUSED
        self.assertEqual([], self.fake_libvirt.boots)
        self.assertEqual(3, dom._state)                                # paused: nova resumes it
        self.assertEqual(2, len(dom._fake_ifaces))                     # nova's two ports plugged
        self.assertEqual(self.pages, dom._fake_pages)
        header = savefile.read_save_image(self.launch.memory_path)
        self.assertIn('<name>instance-00000001</name>', header.xml)
        self.assertNotIn('<interface', header.xml)

    def test_hot_plugged_nics_have_no_option_rom(self):
        guest = restore.restore_guest(self.driver, self.nova_xml, self.instance, self.launch, 'b')
        ifaces = [etree.fromstring(xml.encode()) for xml in guest._domain._fake_ifaces]
        self.assertEqual(['fa:16:3e:00:00:01', 'fa:16:3e:00:00:02'], [i.find('mac').get('address') for i in ifaces])
        self.assertEqual([[{'enabled': 'no'}]] * 2, [[dict(r.attrib) for r in i.findall('rom')] for i in ifaces])

    def test_the_nics_a_residue_carries_are_restored_not_hot_plugged(self):
        from cloudlet_engine import savefile
        address = {'domain': '0x0000', 'bus': '0x00', 'slot': '0x05', 'function': '0x0'}
        self.launch.meta = {'kind': 'handoff-residue', 'nics': [
            {'mac': 'fa:16:3e:00:00:02', 'address': address, 'model': 'virtio', 'rom': False}]}
        attached = []
        real_attach = guest_mod.Guest.attach_device

        def attach_device(guest, conf, persistent=False, live=False):
            attached.append(conf.to_xml())
            return real_attach(guest, conf, persistent=persistent, live=live)
        with mock.patch.object(guest_mod.Guest, 'attach_device', attach_device):
            guest = restore.restore_guest(self.driver, self.nova_xml, self.instance, self.launch, 'b', pause=True)
        # The carried NIC is in the XML QEMU loads the memory with, at the residue's PCI address, no ROM.
        header = etree.fromstring(savefile.read_save_image(self.launch.memory_path).xml.encode())
        [carried] = header.findall('devices/interface')
        self.assertEqual('fa:16:3e:00:00:02', carried.find('mac').get('address'))
        self.assertEqual(dict(address, type='pci'), dict(carried.find('address').attrib))
        self.assertEqual([{'enabled': 'no'}], [dict(r.attrib) for r in carried.findall('rom')])
        self.assertEqual('tap2', carried.find('target').get('dev'))           # nova's port, wired here
        # Only the other NIC is hot-plugged, without ROM.
        [plugged] = [etree.fromstring(xml.encode()) for xml in attached]
        self.assertEqual('fa:16:3e:00:00:01', plugged.find('mac').get('address'))
        self.assertEqual([{'enabled': 'no'}], [dict(r.attrib) for r in plugged.findall('rom')])
        self.assertEqual(2, len(guest._domain._fake_ifaces))

    def streamed_launch(self, error=None):
        """The launch memory as a pipe a (test) streamed apply writes once given the XML."""
        pipe = os.path.join(self.instance_dir, state.LAUNCH_DIR, 'memory.pipe')
        self.launch.streamed = FakeStreamed(self.launch.memory_path, pipe, error)
        self.launch.memory_path = pipe
        return self.launch.streamed

    def test_a_streamed_launch_is_restored_from_its_pipe_with_nova_identity(self):
        streamed = self.streamed_launch()
        guest = restore.restore_guest(self.driver, self.nova_xml, self.instance, self.launch, 'b')
        self.assertEqual([self.launch.memory_path], self.fake_libvirt.piped)
        self.assertEqual((UUID, 1), (guest._domain.UUIDString(), guest._domain._state))
        self.assertIn('<name>instance-00000001</name>', streamed.xml)
        self.assertTrue(streamed.ended)
        self.assertFalse(streamed.aborted)

    def test_a_residue_failing_during_the_restore_is_the_spawn_fault(self):
        from cloudlet_engine import errors
        self.streamed_launch(errors.CorruptOverlay('segment 3: items do not decode'))
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.restore_guest, self.driver, self.nova_xml,
                                self.instance, self.launch, 'b')
        self.assertIn('segment 3: items do not decode', exc.format_message())
        self.assertTrue(self.launch.streamed.aborted)

    def test_a_restore_failing_on_its_own_is_libvirt_s_fault(self):
        from cloudlet_engine import errors
        self.streamed_launch(errors.LaunchAbandoned('the launch memory image was abandoned'))
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.restore_guest, self.driver, self.nova_xml,
                                self.instance, self.launch, 'b')
        self.assertIn('libvirt could not restore the memory of base b', exc.format_message())

    def test_a_carried_nic_without_its_port_here_is_a_spawn_fault_before_libvirt(self):
        address = {'domain': '0x0000', 'bus': '0x00', 'slot': '0x05', 'function': '0x0'}
        self.launch.meta = {'kind': 'handoff-residue', 'nics': [
            {'mac': 'fa:16:3e:00:00:09', 'address': address, 'model': 'virtio', 'rom': False}]}
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.restore_guest, self.driver, self.nova_xml,
                                self.instance, self.launch, 'b')
        self.assertIn('fa:16:3e:00:00:09', exc.format_message())
        self.assertEqual([], self.fake_libvirt.restores)
        self.assertEqual([], self.driver._host.get_connection().listAllDomains())

    def test_missing_kernel_is_a_spawn_fault_before_libvirt(self):
        # The reported case: nova's XML has no <kernel> (the base disk image has no
        # kernel_id), the base carries no copy, the snapshot's kernel is long gone.
        nova_xml = self.nova_xml.replace(os.path.join(self.instance_dir, 'kernel'), '/gone/kernel')
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.restore_guest, self.driver, nova_xml,
                                self.instance, self.launch, 'demo-base', base_boot_files={})
        self.assertEqual('cloudlet restore failed: base VM unusable: base demo-base needs the kernel '
                         '/old/kernel, which is not on this host', exc.format_message())
        self.assertEqual([], self.fake_libvirt.restores)
        self.assertEqual([], self.driver._host.get_connection().listAllDomains())

    def test_libvirt_refusal_is_a_spawn_fault(self):
        from nova.tests.fixtures import libvirt as fakelibvirt
        error = fakelibvirt.make_libvirtError(fakelibvirt.libvirtError, 'CPU model mismatch',
                                              error_code=fakelibvirt.VIR_ERR_OPERATION_FAILED)
        with mock.patch.object(fakelibvirt.Connection, 'restoreFlags', side_effect=error):
            exc = self.assertRaises(faults.CloudletSpawnFailed, restore.restore_guest, self.driver,
                                    self.nova_xml, self.instance, self.launch, 'b')
        self.assertEqual('libvirt could not restore the memory of base b: CPU model mismatch',
                         exc.format_message())
