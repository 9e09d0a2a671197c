"""Lifecycle operations on cloudlet instances: what works, what is refused (doc/nova-driver.md)."""

import os
import shutil
import time

from nova.compute import power_state
from nova import objects

from cloudlet_nova.virt import launch

from tests.functional import cloudlet_base

REFUSED = 'cloudlet instances cannot be %s: '
CANNOT_GET_BASE = 'cannot fetch it from the image service'


class LifecycleBase(cloudlet_base.CloudletTestBase):

    def setUp(self):
        super().setUp()
        self.server = self.create_cloudlet_server()
        self.assertEqual(1, len(self.restores_of(self.server)))

    def assert_running_unrestored(self, server, restores=1):
        """Running, and restoreFlags was never called again (no stale memory restored)."""
        self.assertTrue(self.domain(server).isActive())
        self.assertEqual(restores, len(self.restores_of(server)))


class LifecycleTest(LifecycleBase):
    """Operations that work."""

    def test_compute_restart_keeps_the_instance(self):
        self.restart_compute_service('compute1')
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        driver = self.driver()
        name = self.instance_name(server)
        self.assertIn(name, driver.list_instances())
        instance = objects.Instance(uuid=server['id'])
        self.assertEqual(power_state.RUNNING, driver.get_info(instance).state)
        self.assertTrue(os.path.exists(os.path.join(self.instance_dir(server), 'cloudlet.json')))
        # Operations that need the cloudlet state still know the instance.
        self.api.post_server_action(server['id'], {'reboot': {'type': 'HARD'}})
        self._wait_for_state_change(server, 'ACTIVE')
        self.assert_running_unrestored(server)
        self._delete_server(server)
        self._wait_until_deleted(server)
        self.assertNotIn(name, driver.list_instances())

    def test_hard_reboot_cold_boots_and_never_restores(self):
        self.api.post_server_action(self.server['id'], {'reboot': {'type': 'HARD'}})
        server = self.wait_for_task(self.server)
        self.assert_running_unrestored(server)
        self.assertEqual(1, len(self.boots_of(server)))
        # Still the base's domain (not nova's regenerated XML): capturable as an overlay.
        self.assertEqual(self.synthetic.xml.count('<disk'), self.domain(server)._fake_xml.count('<disk'))
        self.assertIn('pc-i440fx-2.11', self.domain(server)._fake_xml)

    def test_stop_then_start_cold_boots(self):
        self._stop_server(self.server)
        self.assertFalse(self.domain(self.server).isActive())
        server = self._start_server(self.server)
        self.assert_running_unrestored(server)
        self.assertEqual(1, len(self.boots_of(server)))

    def test_soft_reboot(self):
        self.flags(wait_soft_reboot_seconds=5, group='libvirt')
        self.api.post_server_action(self.server['id'], {'reboot': {'type': 'SOFT'}})
        server = self.wait_for_task(self.server)
        self.assert_running_unrestored(server)

    def test_pause_unpause_suspend_resume(self):
        for action, status in (('pause', 'PAUSED'), ('unpause', 'ACTIVE'),
                               ('suspend', 'SUSPENDED'), ('resume', 'ACTIVE')):
            self.api.post_server_action(self.server['id'], {action: None})
            self._wait_for_state_change(self.server, status)
        self.assert_running_unrestored(self.server)

    def test_console_output(self):
        output = self.api.post_server_action(self.server['id'], {'os-getConsoleOutput': {}})
        self.assertIn('output', output)

    def test_rescue_and_unrescue_boot_never_restore(self):
        self.api.post_server_action(self.server['id'], {'rescue': {}})
        self._wait_for_state_change(self.server, 'RESCUE')
        self.api.post_server_action(self.server['id'], {'unrescue': None})
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assert_running_unrestored(server)

    def test_rebuild_resumes_the_base_again(self):
        self.api.post_server_action(self.server['id'], {'rebuild': {
            'imageRef': self.base_images.disk_id}})
        server = self.wait_for_task(self.server)
        self.assertEqual(2, len(self.restores_of(server)))
        self.assertEqual(self.synthetic.pages, self.domain(server)._fake_pages)


class RefusalTest(LifecycleBase):
    """Refused operations, with RPC casts as casts (CastAsCall would hand the refusal to the API)."""

    CAST_AS_CALL = False

    def test_resize_refused(self):
        self.flags(allow_resize_to_same_host=True)
        flavor = self._create_flavor(name='m1.bigger', memory_mb=512, vcpu=1, disk=1, ephemeral=0)
        self.api.post_server_action(self.server['id'], {'resize': {'flavorRef': flavor}})
        # The event is recorded after the fault; vm_state and task_state are reset before both.
        self._wait_for_action_fail_completion(self.server, 'resize', 'compute_resize_instance')
        server = self.wait_for_task(self.server)
        self.assertEqual('m1.cloudlet', server['flavor']['original_name'])
        self.assertIn(REFUSED % 'resized', self.latest_fault(server))
        self.assert_running_unrestored(server)

    def test_shelve_refused(self):
        images_before = set(self.glance.images)
        self.api.post_server_action(self.server['id'], {'shelve': None})
        self._wait_for_action_fail_completion(self.server, 'shelve', 'compute_shelve_instance')
        server = self.wait_for_task(self.server)
        self.assertIn(REFUSED % 'shelved', self.latest_fault(server))
        self.assert_running_unrestored(server)
        self.assertEqual(images_before, set(self.glance.images))

    def withdraw_the_base(self):
        """The destination can neither find the base in its store nor fetch it: the image deactivated."""
        shutil.rmtree(launch.base_store().path(self.base_images.base_id))
        self.glance.images[self.base_images.disk_id]['status'] = 'deactivated'

    def test_live_migration_refused_when_the_destination_cannot_get_the_base(self):
        self.start_compute('compute2')
        self.withdraw_the_base()
        self.admin_api.post_server_action(self.server['id'], {'os-migrateLive': {
            'host': 'compute2', 'block_migration': 'auto'}})
        # The destination's pre-check refuses; nova's scheduler loop then finds
        # no other host: the fault says NoValidHost, the action event says why.
        event = self._wait_for_instance_action_event(
            self.server, 'live-migration', 'compute_check_can_live_migrate_destination', 'Error')
        self.assertIn(CANNOT_GET_BASE, event['details'])
        server = self.wait_for_task(self.server)
        self.assertEqual('compute1', server['OS-EXT-SRV-ATTR:host'])
        self.assert_running_unrestored(server)

    def test_forced_live_migration_refused_when_the_destination_cannot_get_the_base(self):
        self.start_compute('compute2')
        self.withdraw_the_base()
        self.admin_api.microversion = '2.67'      # the last with 'force'
        self.admin_api.post_server_action(self.server['id'], {'os-migrateLive': {
            'host': 'compute2', 'block_migration': 'auto', 'force': True}})
        self._wait_for_migration_status(self.server, ['error'])
        server = self.wait_for_task(self.server)
        self.assertEqual('compute1', server['OS-EXT-SRV-ATTR:host'])
        for _ in range(20):     # the conductor records the fault after the migration status
            if self.latest_fault(server):
                break
            time.sleep(0.25)
        self.assertIn(CANNOT_GET_BASE, self.latest_fault(server))
        self.assert_running_unrestored(server)

    def test_cold_migration_refused_when_the_destination_cannot_get_the_base(self):
        self.start_compute('compute2')
        self.withdraw_the_base()
        self.admin_api.microversion = '2.56'      # migrate with a host
        self.admin_api.post_server_action(self.server['id'], {'migrate': {'host': 'compute2'}})
        # The destination answers the source's prepare_migration (the `cloudlet` RPC topic)
        # before the VM stops: the fault says why, the VM runs on where it was.
        self._wait_for_action_fail_completion(self.server, 'migrate', 'compute_resize_instance')
        server = self.wait_for_task(self.server)
        self.assertEqual(('compute1', 'ACTIVE'), (server['OS-EXT-SRV-ATTR:host'], server['status']))
        fault = self.latest_fault(server)
        self.assertIn('compute2: the destination does not hold base', fault)
        self.assertIn(CANNOT_GET_BASE, fault)
        self.assert_running_unrestored(server)

    def test_evacuate_refused(self):
        self.start_compute('compute2')
        self.computes['compute1'].stop()
        service = self.admin_api.get_services(host='compute1', binary='nova-compute')[0]
        self.admin_api.put_service_force_down(service['id'], True)
        self.admin_api.post_server_action(self.server['id'], {'evacuate': {}})
        server = self._wait_for_state_change(self.server, 'ERROR')
        self.assertIn(REFUSED % 'evacuated', server['fault']['message'])
        self.assertEqual([], self.restores_of(server)[1:])
