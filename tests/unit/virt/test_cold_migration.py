"""Cold migration of cloudlet instances: CloudletDriver's overrides and cold_migration.py."""

import os
import shutil
import types
from unittest import mock

import fixtures
import oslo_messaging as messaging

from nova.compute import power_state
from nova import exception
from nova import objects
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import utils as libvirt_utils

from cloudlet_engine import errors
from cloudlet_nova.virt import cold_migration
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import launch
from cloudlet_nova.virt import migration
from cloudlet_nova.virt import state
from tests.unit.virt import test_driver

LibvirtDriver = libvirt_driver.LibvirtDriver
UUID = test_driver.UUID


class ColdMigrationTest(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.instance.flavor = objects.Flavor(flavorid='cloudlet-1')
        self.guest = mock.Mock()
        self.guest.get_power_state.return_value = power_state.RUNNING
        self.useFixture(fixtures.MockPatchObject(self.driver._host, 'get_guest', return_value=self.guest))
        self.driver._cloudlet_rpc = mock.Mock()
        self.useFixture(fixtures.MockPatchObject(
            objects.Migration, 'get_by_instance_and_status',
            return_value=objects.Migration(dest_compute='compute2', source_compute='compute1')))
        self.save = self.useFixture(fixtures.MockPatchObject(
            cold_migration, 'save_memory', return_value=['<interface/>'])).mock
        self.restore_here = self.useFixture(fixtures.MockPatchObject(
            cold_migration, 'restore_here', return_value=True)).mock
        self.copy = self.useFixture(fixtures.MockPatchObject(libvirt_utils, 'copy_image')).mock
        self.useFixture(fixtures.MockPatchObject(self.driver, '_is_path_shared_with', return_value=False))
        self.driver._remotefs = mock.Mock()
        self.super_migrate = self.useFixture(fixtures.MockPatchObject(
            LibvirtDriver, 'migrate_disk_and_power_off', return_value='[disk info]')).mock

    def migrate(self, flavor=None):
        return self.driver.migrate_disk_and_power_off(
            self.context, self.instance, '10.253.2.2', flavor or objects.Flavor(flavorid='cloudlet-1'), [])

    def assert_untouched(self):
        self.save.assert_not_called()
        self.super_migrate.assert_not_called()

    def test_a_resize_to_another_flavor_is_refused_before_anything(self):
        exc = self.assertRaises(exception.InstanceFaultRollback, self.migrate, objects.Flavor(flavorid='big'))
        self.assertIsInstance(exc.inner_exception, faults.CloudletOperationRefused)
        self.assertIn('cannot be resized', exc.inner_exception.format_message())
        self.driver._cloudlet_rpc.prepare_migration.assert_not_called()
        self.assert_untouched()

    def test_a_server_not_running_is_refused(self):
        self.guest.get_power_state.return_value = power_state.SHUTDOWN
        exc = self.assertRaises(exception.InstanceFaultRollback, self.migrate)
        self.assertIn('cannot be migrated while not running', exc.inner_exception.format_message())
        self.assert_untouched()

    def test_a_destination_that_cannot_get_the_base_refuses_before_the_vm_stops(self):
        self.driver._cloudlet_rpc.prepare_migration.side_effect = messaging.RemoteError(
            'BaseVMError', 'the destination does not hold base 38719cb97cc6 and cannot fetch it', 'tb')
        exc = self.assertRaises(exception.InstanceFaultRollback, self.migrate)
        self.assertIsInstance(exc.inner_exception, exception.MigrationPreCheckError)
        self.assertIn('compute2: the destination does not hold base 38719cb97cc6',
                      exc.inner_exception.format_message())
        self.assert_untouched()

    def test_the_memory_is_saved_and_copied_before_nova_copies_the_disk(self):
        self.assertEqual('[disk info]', self.migrate())
        self.driver._cloudlet_rpc.prepare_migration.assert_called_once_with(
            self.context, self.instance, 'compute2', 600)
        memory = os.path.join(self.instance_dir, cold_migration.MEMORY_FILE)
        self.save.assert_called_once_with(self.driver, self.instance, self.guest, memory)
        self.driver._remotefs.create_dir.assert_called_once_with('10.253.2.2', self.instance_dir)
        self.copy.assert_called_once_with(memory, memory, host='10.253.2.2', compression=False)
        self.super_migrate.assert_called_once()
        self.restore_here.assert_not_called()

    def test_with_a_shared_instance_directory_the_memory_follows_nova_s_local_copy(self):
        self.driver._is_path_shared_with.return_value = True
        self.assertEqual('[disk info]', self.migrate())
        self.driver._remotefs.create_dir.assert_not_called()
        memory = os.path.join(self.instance_dir, cold_migration.MEMORY_FILE)
        self.copy.assert_called_once_with(
            os.path.join(self.instance_dir + '_resize', cold_migration.MEMORY_FILE), memory)

    def test_a_failed_copy_restores_the_vm_here_and_rolls_back(self):
        self.super_migrate.side_effect = exception.ResizeError(reason='scp: connection refused')
        exc = self.assertRaises(exception.InstanceFaultRollback, self.migrate)
        self.assertIn('scp: connection refused', exc.inner_exception.format_message())
        self.restore_here.assert_called_once_with(self.driver, self.instance, self.instance_dir,
                                                  ['<interface/>'])

    def test_a_vm_that_cannot_be_restored_here_leaves_nova_s_error(self):
        self.restore_here.return_value = False
        self.super_migrate.side_effect = exception.ResizeError(reason='disk full')
        self.assertRaises(exception.ResizeError, self.migrate)

    def test_ordinary_instances_migrate_nova_s_way(self):
        self.driver.migrate_disk_and_power_off(self.context, self.cloudlet_instance(cloudlet=False),
                                               'dest', objects.Flavor(flavorid='other'), [])
        self.super_migrate.assert_called_once()
        self.save.assert_not_called()


class FinishTest(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.base = types.SimpleNamespace(name='test-base', base_id='ab' * 32, boot_files=lambda: {})
        self.receive = self.useFixture(fixtures.MockPatchObject(
            migration, 'receive', return_value=(self.base, None))).mock
        self.useFixture(fixtures.MockPatchObject(self.driver, '_qemu_owner', return_value=None))
        self.migration = objects.Migration(source_compute='compute1', dest_compute='compute2')
        self.seen = []

    def carry_memory(self, instance_dir):
        os.makedirs(instance_dir, exist_ok=True)
        with open(cold_migration.memory_path(instance_dir), 'w') as f:
            f.write('saved')

    def finish(self, *args, **kwargs):
        pending = self.driver._restores.get(UUID)
        self.seen.append(pending and (pending.launch.disk_path, pending.launch.memory_path, pending.base_name))

    def test_finish_migration_restores_the_carried_memory_then_drops_it(self):
        self.carry_memory(self.instance_dir)
        with mock.patch.object(LibvirtDriver, 'finish_migration', side_effect=self.finish):
            self.driver.finish_migration(self.context, self.migration, self.instance, '[]', [], None,
                                         False, {})
        self.receive.assert_called_once_with(self.context, self.instance, None)
        self.assertEqual([(os.path.join(self.instance_dir, 'disk'),
                           cold_migration.memory_path(self.instance_dir), 'test-base')], self.seen)
        self.assertFalse(os.path.exists(cold_migration.memory_path(self.instance_dir)))
        self.assertEqual(0, len(self.driver._restores))
        record = state.load(self.instance_dir)
        self.assertEqual(({'kind': 'cold-migration', 'ref': 'compute1'}, 'ab' * 32),
                         (record['source'], record['base_id']))

    def test_a_destination_that_cannot_fetch_the_base_fails_nova_s_finish(self):
        self.carry_memory(self.instance_dir)
        self.receive.side_effect = errors.BaseVMError('glance is down')
        with mock.patch.object(LibvirtDriver, 'finish_migration') as super_finish:
            exc = self.assertRaises(faults.CloudletSpawnFailed, self.driver.finish_migration, self.context,
                                    self.migration, self.instance, '[]', [], None, False, {})
        self.assertIn('glance is down', exc.format_message())
        super_finish.assert_not_called()

    def test_without_carried_memory_finish_migration_is_nova_s(self):
        with mock.patch.object(LibvirtDriver, 'finish_migration', side_effect=self.finish):
            self.driver.finish_migration(self.context, self.migration, self.instance, '[]', [], None,
                                         False, {})
        self.assertEqual([None], self.seen)
        self.receive.assert_not_called()

    def test_a_revert_restores_the_source_s_saved_memory(self):
        resize_dir = self.instance_dir + '_resize'
        self.carry_memory(resize_dir)
        state.save(resize_dir, state.new_record(UUID, self.base, 'base-image', {'kind': 'synthesis'}))
        store = mock.Mock()
        store.get.return_value = self.base

        def revert(*args, **kwargs):
            shutil.rmtree(self.instance_dir)           # as nova's: the source's directory back
            os.rename(resize_dir, self.instance_dir)
            self.finish()
        with mock.patch.object(launch, 'base_store', return_value=store), \
                mock.patch.object(LibvirtDriver, 'finish_revert_migration', side_effect=revert):
            self.driver.finish_revert_migration(self.context, self.instance, [], self.migration)
        store.get.assert_called_once_with('ab' * 32)
        self.assertEqual([(os.path.join(self.instance_dir, 'disk'),
                           cold_migration.memory_path(self.instance_dir), 'test-base')], self.seen)
        self.assertFalse(os.path.exists(cold_migration.memory_path(self.instance_dir)))


class PrepareTest(test_driver.DriverTestCase):

    def test_a_destination_that_cannot_receive_says_why(self):
        with mock.patch.object(migration, 'cannot_receive', return_value='image x is deactivated'), \
                mock.patch.object(migration, 'receive') as receive:
            exc = self.assertRaises(errors.BaseVMError, cold_migration.prepare, self.context, self.instance,
                                    None)
        self.assertEqual('image x is deactivated', str(exc))
        receive.assert_not_called()

    def test_a_destination_that_can_fetches_the_base(self):
        with mock.patch.object(migration, 'cannot_receive', return_value=None), \
                mock.patch.object(migration, 'receive') as receive:
            cold_migration.prepare(self.context, self.instance, (64055, 64055))
        receive.assert_called_once_with(self.context, self.instance, (64055, 64055))

    def test_a_timeout_is_a_reason_too(self):
        self.assertEqual('compute2: Timed out', cold_migration.prepare_failure(
            'compute2', messaging.MessagingTimeout('Timed out\nmore')))
