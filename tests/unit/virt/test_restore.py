"""cloudlet_nova.virt.restore: the per-spawn restore flag, the identity rewrite, the launch disk."""

import os
import threading
import time
import types

import fixtures
from lxml import etree
import testtools

from cloudlet_engine import apply
from cloudlet_engine import errors
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import restore

BASE_XML = """<domain type='kvm'>
  <name>instance-000000ff</name>
  <uuid>11111111-1111-1111-1111-111111111111</uuid>
  <metadata><old/></metadata>
  <memory unit='KiB'>262144</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
      <kernel>/old/kernel</kernel><initrd>/old/ramdisk</initrd></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/old/disk'/>
      <backingStore type='file'><source file='/old/base'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/old/disk.config'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <serial type='pty'><log file='/old/console.log' append='off'/><target port='0'/></serial>
  </devices>
</domain>"""

NOVA_XML = """<domain type='kvm'>
  <uuid>22222222-2222-2222-2222-222222222222</uuid>
  <name>instance-00000001</name>
  <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
    <nova:name>web</nova:name></nova:instance></metadata>
  <memory>262144</memory>
  <vcpu>1</vcpu>
  <os><type machine='pc-i440fx-7.2'>hvm</type>
      <kernel>/inst/kernel</kernel><initrd>/inst/ramdisk</initrd></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/inst/disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/inst/disk.config'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <interface type='bridge'><mac address='fa:16:3e:00:00:01'/><source bridge='br-int'/>
      <model type='virtio'/><target dev='tap1'/></interface>
    <interface type='bridge'><mac address='fa:16:3e:00:00:02'/><source bridge='br-int'/>
      <model type='virtio'/><target dev='tap2'/></interface>
    <serial type='pty'><log file='/inst/console.log' append='off'/><target port='0'/></serial>
  </devices>
</domain>"""


def with_boot_files(xml, directory, tags=('kernel', 'ramdisk')):
    """`xml` with its /inst/ kernel and ramdisk moved to `directory`, where they now exist."""
    for tag in tags:
        with open(os.path.join(directory, tag), 'wb') as f:
            f.write(b'boot file')
        xml = xml.replace('/inst/' + tag, os.path.join(directory, tag))
    return xml


class PendingRestoresTest(testtools.TestCase):

    def test_flag_lives_only_during_the_spawn(self):
        restores = restore.PendingRestores()
        launch = object()
        self.assertIsNone(restores.get('a'))
        with restores.pending('a', launch):
            self.assertIs(launch, restores.get('a'))
            self.assertIsNone(restores.get('b'))
            self.assertEqual(1, len(restores))
        self.assertIsNone(restores.get('a'))
        self.assertIsNone(restores.claim('a'))
        self.assertEqual(0, len(restores))

    def test_claimed_once(self):
        restores = restore.PendingRestores()
        launch = object()
        with restores.pending('a', launch):
            self.assertIs(launch, restores.claim('a'))
            self.assertIsNone(restores.claim('a'))       # a second _create_guest boots
            self.assertIs(launch, restores.get('a'))      # _create_image still sees it

    def test_cleared_on_failure(self):
        restores = restore.PendingRestores()
        with testtools.ExpectedException(RuntimeError):
            with restores.pending('a', object()):
                raise RuntimeError()
        self.assertIsNone(restores.get('a'))

    def test_one_spawn_per_instance(self):
        restores = restore.PendingRestores()
        with restores.pending('a', object()):
            with testtools.ExpectedException(faults.CloudletSpawnFailed, '.*already running'):
                with restores.pending('a', object()):
                    pass
            self.assertIsNotNone(restores.get('a'))

    def test_parallel_spawns(self):
        restores = restore.PendingRestores()
        barrier = threading.Barrier(8)
        seen = {}

        def spawn(uuid):
            launch = object()
            with restores.pending(uuid, launch):
                barrier.wait(5)
                seen[uuid] = restores.claim(uuid) is launch and restores.claim(uuid) is None
        threads = [threading.Thread(target=spawn, args=('u%d' % i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual({'u%d' % i: True for i in range(8)}, seen)
        self.assertEqual(0, len(restores))


class RestoreXMLTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.instance_dir = self.useFixture(fixtures.TempDir()).path
        self.base_dir = self.useFixture(fixtures.TempDir()).path
        # The base's own copies, as a base store holds them.
        self.base_boot_files = {}
        for name in ('kernel', 'initrd'):
            self.base_boot_files[name] = os.path.join(self.base_dir, name)
            with open(self.base_boot_files[name], 'wb') as f:
                f.write(b'base ' + name.encode())

    def test_identity_and_host_side_are_nova_s(self):
        nova_xml = with_boot_files(NOVA_XML, self.instance_dir)
        root = etree.fromstring(restore.restore_xml(BASE_XML, nova_xml, 'b').encode())
        self.assertEqual('instance-00000001', root.findtext('name'))
        self.assertEqual('22222222-2222-2222-2222-222222222222', root.findtext('uuid'))
        disk, cdrom = root.findall('devices/disk')
        self.assertEqual('/inst/disk', disk.find('source').get('file'))
        self.assertEqual('qcow2', disk.find('driver').get('type'))
        self.assertIsNone(disk.find('backingStore'))
        self.assertEqual('/inst/disk.config', cdrom.find('source').get('file'))
        self.assertEqual('/inst/console.log', root.find('devices/serial/log').get('file'))
        self.assertEqual(os.path.join(self.instance_dir, 'kernel'), root.findtext('os/kernel'))
        self.assertEqual(os.path.join(self.instance_dir, 'ramdisk'), root.findtext('os/initrd'))
        self.assertIn('web', etree.tostring(root.find('metadata'), encoding='unicode'))
        # The devices stay the base's: no NICs (they are hot-plugged), same machine.
        self.assertEqual([], root.findall('devices/interface'))
        self.assertEqual('pc-i440fx-7.2', root.find('os/type').get('machine'))

    def boot_files_chosen(self, nova_xml, base_boot_files):
        root = etree.fromstring(restore.restore_xml(BASE_XML, nova_xml, 'b', base_boot_files).encode())
        return root.findtext('os/kernel'), root.findtext('os/initrd')

    def test_nova_s_boot_files_come_first(self):
        nova_xml = with_boot_files(NOVA_XML, self.instance_dir)
        nova_s = (os.path.join(self.instance_dir, 'kernel'), os.path.join(self.instance_dir, 'ramdisk'))
        self.assertEqual(nova_s, self.boot_files_chosen(nova_xml, self.base_boot_files))

    def test_the_base_s_own_boot_files_when_nova_has_none(self):
        # A base disk image without kernel_id/ramdisk_id: nova's XML boots from the disk.
        nova_xml = NOVA_XML.replace('<kernel>/inst/kernel</kernel><initrd>/inst/ramdisk</initrd>', '')
        self.assertEqual((self.base_boot_files['kernel'], self.base_boot_files['initrd']),
                         self.boot_files_chosen(nova_xml, self.base_boot_files))
        # Also file by file: nova's kernel, but no ramdisk of nova's on this host.
        nova_xml = with_boot_files(NOVA_XML, self.instance_dir, tags=('kernel',))
        self.assertEqual((os.path.join(self.instance_dir, 'kernel'), self.base_boot_files['initrd']),
                         self.boot_files_chosen(nova_xml, self.base_boot_files))

    def test_no_boot_file_anywhere_is_refused_naming_it(self):
        nova_xml = NOVA_XML.replace('<kernel>/inst/kernel</kernel><initrd>/inst/ramdisk</initrd>', '')
        exc = self.assertRaises(errors.BaseVMError, restore.restore_xml, BASE_XML, nova_xml, 'demo-base', {})
        self.assertEqual('base demo-base needs the kernel /old/kernel, which is not on this host', str(exc))
        # nova names a kernel that is not there: no path to a missing file is ever kept.
        self.assertRaises(errors.BaseVMError, restore.restore_xml, BASE_XML, NOVA_XML, 'demo-base', {})

    def test_a_base_that_boots_from_its_disk_needs_no_boot_files(self):
        base_xml = BASE_XML.replace('<kernel>/old/kernel</kernel><initrd>/old/ramdisk</initrd>', '')
        root = etree.fromstring(restore.restore_xml(base_xml, NOVA_XML, 'b').encode())
        self.assertIsNone(root.find('os/kernel'))
        self.assertIsNone(root.find('os/initrd'))

    def test_disks_must_match(self):
        nova = NOVA_XML.replace("<target dev='hda' bus='ide'/>", "<target dev='sda' bus='sata'/>")
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.restore_xml, BASE_XML, nova, 'b1')
        self.assertIn('base b1 has disks hda,vda, the instance needs sda,vda', exc.format_message())

    def test_interfaces(self):
        nics = restore.interfaces(NOVA_XML)
        self.assertEqual(2, len(nics))
        self.assertIn('fa:16:3e:00:00:02', nics[1])
        self.assertEqual([], restore.interfaces(BASE_XML))


class CarriedNicsTest(testtools.TestCase):
    """restore.carried_nics: nova's interfaces for the NICs a handoff residue carries."""

    ADDRESS = {'domain': '0x0000', 'bus': '0x00', 'slot': '0x05', 'function': '0x0'}

    def meta(self, *macs):
        return {'kind': 'handoff-residue',
                'nics': [{'mac': mac, 'address': self.ADDRESS, 'model': 'virtio', 'rom': False} for mac in macs]}

    def test_no_nics_in_the_metadata(self):
        self.assertEqual([], restore.carried_nics(NOVA_XML, {'base_id': 'x'}))
        self.assertEqual([], restore.carried_nics(NOVA_XML, {'nics': []}))
        self.assertEqual([], restore.carried_nics(NOVA_XML, None))

    def test_nova_s_interface_at_the_residue_s_address(self):
        [carried] = restore.carried_nics(NOVA_XML, self.meta('fa:16:3e:00:00:02'))
        iface = etree.fromstring(carried.encode())
        self.assertEqual('fa:16:3e:00:00:02', iface.find('mac').get('address'))
        self.assertEqual('tap2', iface.find('target').get('dev'))
        self.assertEqual('br-int', iface.find('source').get('bridge'))
        self.assertEqual(dict(self.ADDRESS, type='pci'), dict(iface.find('address').attrib))
        self.assertEqual([{'enabled': 'no'}], [dict(r.attrib) for r in iface.findall('rom')])

    def test_in_the_residue_s_order(self):
        meta = self.meta('fa:16:3e:00:00:02', 'fa:16:3e:00:00:01')
        meta['nics'][1] = dict(meta['nics'][1], address=dict(self.ADDRESS, slot='0x06'))
        carried = restore.carried_nics(NOVA_XML, meta)
        self.assertEqual(['fa:16:3e:00:00:02', 'fa:16:3e:00:00:01'],
                         [etree.fromstring(c.encode()).find('mac').get('address') for c in carried])

    def test_a_carried_nic_without_nova_s_port_is_a_spawn_fault_naming_the_mac(self):
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.carried_nics, NOVA_XML,
                                self.meta('fa:16:3e:00:00:01', 'fa:16:3e:00:00:99'))
        message = exc.format_message()
        self.assertIn('the handoff residue carries NIC fa:16:3e:00:00:99', message)
        self.assertIn('fa:16:3e:00:00:01, fa:16:3e:00:00:02', message)          # the ports it has
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.carried_nics, BASE_XML,
                                self.meta('fa:16:3e:00:00:01'))
        self.assertIn('(its ports: none)', exc.format_message())

    def test_bad_metadata_is_a_spawn_fault(self):
        for bad in ('all', [{'mac': 'fa:16:3e:00:00:01'}], [dict(self.meta('fa:16:3e:00:00:01')['nics'][0], rom=True)]):
            exc = self.assertRaises(faults.CloudletSpawnFailed, restore.carried_nics, NOVA_XML,
                                    {'kind': 'handoff-residue', 'nics': bad})
            self.assertIn('cloudlet restore failed: overlay is corrupt: residue metadata', exc.format_message())

    def test_another_model_here_is_a_spawn_fault(self):
        meta = self.meta('fa:16:3e:00:00:01')
        meta['nics'][0]['model'] = 'e1000'
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.carried_nics, NOVA_XML, meta)
        self.assertIn('NIC fa:16:3e:00:00:01 is a virtio here, a e1000 in the residue', exc.format_message())


class LaunchDiskTest(testtools.TestCase):

    def test_placed_once(self):
        root = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(root, 'launch'))
        launch = types.SimpleNamespace(disk_path=os.path.join(root, 'launch', 'disk.qcow2'))
        with open(launch.disk_path, 'w') as f:
            f.write('qcow2')
        self.assertTrue(restore.place_launch_disk(launch, root))
        self.assertFalse(restore.place_launch_disk(launch, root))
        self.assertEqual(os.path.join(root, 'disk'), launch.disk_path)
        with open(os.path.join(root, 'disk')) as f:
            self.assertEqual('qcow2', f.read())

    def test_vanished(self):
        root = self.useFixture(fixtures.TempDir()).path
        launch = types.SimpleNamespace(disk_path=os.path.join(root, 'gone.qcow2'), streamed=None)
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.place_launch_disk, launch, root)
        self.assertIn('gone.qcow2 vanished', exc.format_message())

    def test_vanished_with_a_failed_residue_apply_reports_its_error(self):
        # The streamed apply removes its launch files when it fails, before its
        # thread has ended: the spawn waits for the apply's error and reports it.
        root = self.useFixture(fixtures.TempDir()).path

        def apply_from(streamed):
            time.sleep(0.2)
            raise errors.CorruptOverlay('overlay is truncated at byte 9')

        launch = types.SimpleNamespace(disk_path=os.path.join(root, 'gone.qcow2'),
                                       streamed=apply.Streamed(apply_from))
        exc = self.assertRaises(faults.CloudletSpawnFailed, restore.place_launch_disk, launch, root)
        self.assertIn('overlay is truncated at byte 9', exc.format_message())


# As libvirt's live XML shows it (restore.interfaces serialises through lxml).
NIC = restore.interfaces("<domain><devices><interface type='ethernet'><mac address='fa:16:3e:00:00:01'/>"
                         "<target dev='tap1'/></interface></devices></domain>")[0]


class FakeGuest:
    """Just enough of nova's Guest: a live XML whose NICs come and go (a fake, for unit tests)."""

    def __init__(self, nics, releases=True):
        self.nics, self.releases, self.calls = list(nics), releases, []

    def get_xml_desc(self):
        return '<domain><devices>%s</devices></domain>' % ''.join(self.nics)

    def detach_device(self, device, persistent, live):
        self.calls.append(('detach', device.to_xml(), persistent, live))
        if self.releases:
            self.nics.remove(device.to_xml())

    def attach_device(self, device, persistent, live):
        self.calls.append(('attach', device.to_xml(), persistent, live))
        self.nics.append(device.to_xml())


class FakeVifDriver:
    """nova's plug_vifs / unplug_vifs, recorded (a fake, for unit tests)."""

    def __init__(self, unplug_error=None):
        self.calls, self.unplug_error = [], unplug_error

    def unplug_vifs(self, instance, network_info):
        self.calls.append(('unplug_vifs', network_info))
        if self.unplug_error:
            raise self.unplug_error

    def plug_vifs(self, instance, network_info):
        self.calls.append(('plug_vifs', network_info))


class NicPlugTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.instance = types.SimpleNamespace(get_network_info=lambda: ['vif-1'])

    def test_nics_leave_the_guest_then_the_switch_and_come_back_in_reverse(self):
        guest, driver = FakeGuest([NIC]), FakeVifDriver()
        nics = restore.unplug_nics(driver, self.instance, guest, timeout=1)
        self.assertEqual([NIC], nics)
        self.assertEqual([('detach', NIC, False, True)], guest.calls)
        self.assertEqual([('unplug_vifs', ['vif-1'])], driver.calls)
        restore.replug_nics(driver, self.instance, guest, nics)
        self.assertEqual([('unplug_vifs', ['vif-1']), ('plug_vifs', ['vif-1'])], driver.calls)
        self.assertEqual(('attach', NIC, False, True), guest.calls[-1])
        self.assertEqual([NIC], guest.nics)

    def test_no_nic_touches_nothing(self):
        guest, driver = FakeGuest([]), FakeVifDriver()
        self.assertEqual([], restore.unplug_nics(driver, self.instance, guest, timeout=1))
        restore.replug_nics(driver, self.instance, guest, [])
        self.assertEqual(([], []), (guest.calls, driver.calls))

    def test_a_switch_that_refuses_puts_the_nics_back(self):
        guest, driver = FakeGuest([NIC]), FakeVifDriver(unplug_error=RuntimeError('ovsdb down'))
        error = self.assertRaises(faults.CloudletCaptureFailed, restore.unplug_nics, driver,
                                  self.instance, guest, timeout=1)
        self.assertIn('ovsdb down', str(error))
        self.assertEqual([NIC], guest.nics)

    def test_a_guest_that_keeps_its_nic_fails_the_capture_and_keeps_its_port(self):
        guest, driver = FakeGuest([NIC], releases=False), FakeVifDriver()
        error = self.assertRaises(faults.CloudletCaptureFailed, restore.unplug_nics, driver,
                                  self.instance, guest, timeout=0.3)
        self.assertIn('did not release its network interfaces', str(error))
        self.assertEqual([], driver.calls)
        self.assertEqual([NIC], guest.nics)


class EnsureTapsUpTest(testtools.TestCase):
    """The tap left down by the switch's flag write is brought up (a fake /sys and ip, for unit tests)."""

    def setUp(self):
        super().setUp()
        self.flags, self.enabled = {}, []
        self.useFixture(fixtures.MonkeyPatch('cloudlet_nova.virt.restore._flags', self.flags.get))
        self.useFixture(fixtures.MonkeyPatch('nova.privsep.linux_net.set_device_enabled',
                                             self.enabled.append))

    def test_a_promiscuous_tap_left_down_is_brought_up(self):
        self.flags['tap1'] = 0x1002 | restore._IFF_PROMISC          # the switch opened it: not up
        restore.ensure_taps_up([NIC], settle=5)
        self.assertEqual(['tap1'], self.enabled)

    def test_a_tap_that_is_up_is_left_alone(self):
        self.flags['tap1'] = 0x1003 | restore._IFF_PROMISC
        restore.ensure_taps_up([NIC], settle=5)
        self.assertEqual([], self.enabled)

    def test_waits_for_the_switch_then_mends(self):
        self.flags['tap1'] = 0x1003                              # up, the switch not there yet
        timer = threading.Timer(0.1, lambda: self.flags.update(tap1=0x1002 | restore._IFF_PROMISC))
        timer.start()
        self.addCleanup(timer.cancel)
        restore.ensure_taps_up([NIC], settle=5)
        self.assertEqual(['tap1'], self.enabled)

    def test_no_tap_here_is_nothing_to_do(self):
        restore.ensure_taps_up([NIC], settle=5)
        self.assertEqual([], self.enabled)
