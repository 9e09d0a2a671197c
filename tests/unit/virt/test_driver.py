"""CloudletDriver's glue: the restore-flag bookkeeping and the lifecycle decisions, on fakelibvirt."""

import os
import types
from unittest import mock

import fixtures

from nova.compute import task_states
import nova.conf
from nova import context as nova_context
from nova import exception
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake
from nova.virt.libvirt import driver as libvirt_driver

from cloudlet_glance import properties as props
from cloudlet_nova import conf as cloudlet_conf
from cloudlet_nova.virt import driver
from cloudlet_nova.virt import faults
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
            memory_path=os.path.join(self.instance_dir, state.LAUNCH_DIR, 'memory.save'), ram=None)
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

    def test_boot_from_volume_refused(self):
        with mock.patch.object(LibvirtDriver, '_is_booted_from_volume', return_value=True):
            self.assertRaises(faults.CloudletSpawnFailed, self.driver.spawn,
                              self.context, self.instance, None, [], 'pw', {})


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

    @mock.patch.object(LibvirtDriver, 'migrate_disk_and_power_off')
    def test_resize_refused_with_rollback(self, super_migrate):
        exc = self.assertRaises(exception.InstanceFaultRollback, self.driver.migrate_disk_and_power_off,
                                self.context, self.instance, 'dest', None, [])
        self.assertIsInstance(exc.inner_exception, faults.CloudletOperationRefused)
        super_migrate.assert_not_called()
        self.driver.migrate_disk_and_power_off(self.context, self.cloudlet_instance(cloudlet=False),
                                               'dest', None, [])
        super_migrate.assert_called_once()

    @mock.patch.object(LibvirtDriver, 'check_can_live_migrate_source')
    @mock.patch.object(LibvirtDriver, 'check_can_live_migrate_destination')
    def test_live_migration_refused(self, super_dest, super_source):
        self.assertRaises(exception.MigrationPreCheckError, self.driver.check_can_live_migrate_destination,
                          self.context, self.instance, {}, {})
        self.assertRaises(exception.MigrationPreCheckError, self.driver.check_can_live_migrate_source,
                          self.context, self.instance, {})
        super_dest.assert_not_called()
        super_source.assert_not_called()

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
    def test_trait(self, super_update):
        tree = mock.Mock()
        self.driver.update_provider_tree(tree, 'node1')
        super_update.assert_called_once_with(tree, 'node1', allocations=None)
        tree.add_traits.assert_called_once_with('node1', 'CUSTOM_CLOUDLET_V1')


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
