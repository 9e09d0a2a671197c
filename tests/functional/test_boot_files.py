"""Bases of guests that boot a kernel directly (nova's AMI-style images): the kernel travels with the base.

The reported case: a base captured through nova from such a guest, exported,
deleted, imported again, then POST /servers — the memory snapshot names the
kernel of the long-deleted original server, so nova must provide one.
"""

import os
import zipfile

from lxml import etree

from cloudlet_engine import basevm
from cloudlet_glance import model
from cloudlet_glance import properties as props
from tests.fixtures import boot_files as fake_boot_files
from tests.functional import cloudlet_base

GONE_KERNEL = '/var/lib/nova/instances/0b3a8e2c-1111-4222-8333-000000000001/kernel'


class BootFilesTest(cloudlet_base.CloudletTestBase):

    def boot_base(self, with_boot_files=True):
        return cloudlet_base.SyntheticBase(os.path.join(self.work, 'boot-%s' % with_boot_files), seed=3,
                                           name='demo-base', boots_kernel=True,
                                           with_boot_files=with_boot_files)

    def restored_boot_files(self, server):
        root = etree.fromstring(self.domain(server)._fake_xml.encode())
        return root.findtext('os/kernel'), root.findtext('os/initrd')

    def assert_boots_nova_s_files(self, server):
        """The restored domain boots the kernel and ramdisk nova fetched into its instance directory."""
        instance_dir = self.instance_dir(server)
        kernel, ramdisk = os.path.join(instance_dir, 'kernel'), os.path.join(instance_dir, 'ramdisk')
        self.assertEqual((kernel, ramdisk), self.restored_boot_files(server))
        with open(kernel, 'rb') as f:
            self.assertEqual(fake_boot_files.KERNEL_DATA, f.read())

    def test_captured_exported_deleted_and_imported_base_restores(self):
        synthetic = self.boot_base()
        imported = self.upload_base(synthetic)
        self.assertEqual(imported.kernel_id, self.images.get(imported.disk_id)[props.KERNEL_ID])
        original = self.create_cloudlet_server(image_id=imported.disk_id)
        self.assert_boots_nova_s_files(original)

        # cloudlet-create-base: the new base has its own kernel and ramdisk images.
        captured_id = self.create_image_ok(original, 'demo-base', {props.CLOUDLET_TYPE: props.BASE_DISK})
        captured = model.linked_images(self.images, self.images.get(captured_id), require_active=True)
        disk_image = self.images.get(captured_id)
        self.assertEqual((captured.kernel_id, captured.ramdisk_id),
                         (disk_image[props.KERNEL_ID], disk_image[props.RAMDISK_ID]))
        self.assertNotIn(imported.kernel_id, (captured.kernel_id, captured.ramdisk_id))
        self.assertEqual('root=/dev/vda console=tty0 console=ttyS0', disk_image[props.OS_COMMAND_LINE])
        kernel_image = self.images.get(captured.kernel_id)
        self.assertEqual(('aki', 'aki', True), (kernel_image['disk_format'], kernel_image['container_format'],
                                                kernel_image[props.OS_HIDDEN]))
        self.assertEqual(fake_boot_files.KERNEL_DATA, self.image_data(captured.kernel_id))
        self.assertEqual(fake_boot_files.INITRD_DATA, self.image_data(captured.ramdisk_id))

        # Exported, deleted (its original server long gone), imported again.
        package = model.export_base_package(self.images, captured_id, os.path.join(self.work, 'demo.zip'),
                                            workdir=self.work)
        with zipfile.ZipFile(package) as zf:
            self.assertEqual(sorted(['manifest.json', *basevm.FILES, 'kernel', 'initrd']),
                             sorted(zf.namelist()))
        self._delete_server(original)
        self._wait_until_deleted(original)
        model.delete_base(self.images, captured_id)
        self.assertEqual(set(), set(captured.companion_ids().values()) & set(self.glance.images))
        reimported = model.import_base_package(self.images, package, workdir=self.work)

        server = self.create_cloudlet_server(image_id=reimported.disk_id)
        self.assert_boots_nova_s_files(server)
        self.assertEqual(synthetic.pages, self.domain(server)._fake_pages)
        self.assertIn(imported.kernel_id, self.glance.images)       # the first base's: untouched

    def test_base_without_boot_files_fails_naming_the_kernel(self):
        # Imported from a package made before bases carried boot files: no kernel_id.
        images = self.upload_base(self.boot_base(with_boot_files=False))
        self.assertNotIn(props.KERNEL_ID, self.images.get(images.disk_id))
        server = self.create_cloudlet_server(image_id=images.disk_id, expected_state='ERROR')
        self.assertIn('base demo-base needs the kernel %s, which is not on this host' % GONE_KERNEL,
                      server['fault']['message'])
        self.assertEqual([], self.restores_of(server))
        self.assert_no_launch_files(server)
