"""Resume and synthesis over the base's RAM file ([cloudlet] memory_restore = ram_file), through nova.

The fake libvirt maps the RAM file as QEMU would (fake_libvirt_save.over_ram_file):
what a server ends up with is the file's pages with the sparse stream laid over them.
"""

import json
import os

import nova.conf

from cloudlet_engine import domainxml
from cloudlet_engine import ramfile
from cloudlet_glance import properties as props
from tests.functional import cloudlet_base

CONF = nova.conf.CONF


memory = cloudlet_base.guest_memory


class RamFileTest(cloudlet_base.CloudletTestBase):

    def setUp(self):
        super().setUp()
        # nova's instances carry a virtio balloon unless mem_stats_period_seconds = 0;
        # a base captured from one restores from its full image (the default synthetic base).
        self.lean = cloudlet_base.SyntheticBase(os.path.join(self.work, 'lean'), seed=5, name='lean',
                                                balloon='none')
        self.lean_images = self.upload_base(self.lean)

    def record(self, server):
        with open(os.path.join(self.instance_dir(server), 'cloudlet.json')) as f:
            return json.load(f)

    def ram_file(self, base):
        return ramfile.RamFile(os.path.join(CONF.cloudlet.state_dir, 'bases', base.base_id))

    def test_resume_maps_the_base_ram_file(self):
        server = self.create_cloudlet_server(image_id=self.lean_images.disk_id)
        self.assertEqual('ram_file', self.record(server)['memory_restore'])
        ram = self.ram_file(self.lean.base)
        dom = self.domain(server)
        self.assertEqual(ram.path, domainxml.ram_file(dom._fake_xml, ramfile.BACKEND_ID))
        self.assertEqual(memory(self.lean.pages), memory(dom._fake_pages))
        ram.verify()

        # A capture saves it as any VM: the overlay names the block as the base does and
        # restores (stock, in this check) to the same memory.
        image_id = self.create_image_ok(server, 'lean-overlay', {props.CLOUDLET_TYPE: props.OVERLAY})
        _disk, header, pages = self.apply_overlay_blob(self.image_data(image_id), self.lean.base)
        self.assertIsNone(domainxml.ram_file(header.xml, ramfile.BACKEND_ID))
        self.assertNotIn(ramfile.BACKEND_ID, {block for block, _addr, _data in pages})
        self.assertEqual(memory(self.lean.pages), memory(pages))
        ram.verify()

    def test_synthesis_restores_only_the_changed_pages(self):
        disk, pages = self.lean.changed()
        path = self.lean.make_overlay(os.path.join(self.work, 'lean.clo'), disk, pages)
        overlay_id = self.upload_overlay(path, self.lean.base.base_id)
        server = self.create_cloudlet_server(image_id=self.lean_images.disk_id,
                                             metadata={props.META_OVERLAY_ID: overlay_id})
        self.assertEqual('ram_file', self.record(server)['memory_restore'])
        dom = self.domain(server)
        self.assertEqual(memory(pages), memory(dom._fake_pages))
        restore_path = self.restores_of(server)[0][2]
        self.assertFalse(os.path.exists(restore_path))      # the launch image is gone
        self.ram_file(self.lean.base).verify()

    def test_full_image_when_configured_or_the_base_has_a_balloon(self):
        server = self.create_cloudlet_server()                 # the synthetic base has a balloon
        self.assertEqual('full_image', self.record(server)['memory_restore'])
        self.assertIsNone(domainxml.ram_file(self.domain(server)._fake_xml, ramfile.BACKEND_ID))
        self.assertFalse(os.path.exists(os.path.join(CONF.cloudlet.state_dir, 'bases',
                                                     self.synthetic.base.base_id, ramfile.RAM_FILE)))

        self.flags(memory_restore='full_image', group='cloudlet')
        server = self.create_cloudlet_server(image_id=self.lean_images.disk_id)
        self.assertEqual('full_image', self.record(server)['memory_restore'])
        self.assertEqual(memory(self.lean.pages), memory(self.domain(server)._fake_pages))
