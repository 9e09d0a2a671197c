"""createImage with cloudlet_type: overlays and bases captured through nova's snapshot path."""

import os
import random
from unittest import mock

from lxml import etree

from cloudlet_engine import basestore
from cloudlet_engine import savefile
from cloudlet_glance import model
from cloudlet_glance import properties as props
from tests.functional import cloudlet_base

PAGE = cloudlet_base.PAGE


class CaptureTest(cloudlet_base.CloudletTestBase):

    def change_guest(self, server, seed=11):
        """What an app does in the guest: some RAM pages and a disk chunk change."""
        rng = random.Random(seed)
        dom = self.domain(server)
        pages = list(dom._fake_pages)
        for i in (3, 6):
            block, addr, _ = pages[i]
            pages[i] = (block, addr, rng.randbytes(PAGE))
        dom._fake_pages = pages
        chunk = rng.randbytes(PAGE)
        self.write_disk_chunk(os.path.join(self.instance_dir(server), 'disk'), 5, chunk)
        disk = bytearray(self.synthetic.disk)
        disk[5 * PAGE:6 * PAGE] = chunk
        return bytes(disk), pages

    def test_create_overlay(self):
        server = self.create_cloudlet_server()
        disk, pages = self.change_guest(server)

        image_id = self.create_image_ok(server, 'app-overlay', {props.CLOUDLET_TYPE: props.OVERLAY})

        image = self.glance.show(None, image_id)
        self.assertEqual('active', image['status'])
        self.assertEqual(props.OVERLAY, image['properties'][props.CLOUDLET_TYPE])
        self.assertEqual(self.synthetic.base.base_id, image['properties'][props.BASE_ID])
        self.assertEqual(('raw', 'bare'), (image['disk_format'], image['container_format']))
        blob = self.image_data(image_id)
        self.assertEqual(self.synthetic.base.base_id, self.overlay_reader(blob).meta['base_id'])
        launch_disk, header, launch_pages = self.apply_overlay_blob(blob, self.synthetic.base)
        self.assertEqual(disk, launch_disk)
        self.assertEqual(pages, launch_pages)
        self.assertIn(self.instance_name(server), header.xml)

        # The VM was saved once and restored: it runs on, with its state.
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertIsNone(server['OS-EXT-STS:task_state'])
        dom = self.domain(server)
        self.assertTrue(dom.isActive())
        self.assertEqual(pages, dom._fake_pages)
        self.assertEqual(1, len([s for s in self.fake_libvirt.saves if s[1] == server['id']]))
        self.assertEqual(2, len(self.restores_of(server)))
        self.assertEqual([], [n for n in os.listdir(self.instance_dir(server))
                              if n.startswith('cloudlet-capture')])

        # The overlay synthesizes a new VM with that state.
        clone = self.create_cloudlet_server(metadata={props.META_OVERLAY_ID: image_id})
        self.assertEqual(pages, self.domain(clone)._fake_pages)
        self.assertEqual(disk, self.disk_bytes(os.path.join(self.instance_dir(clone), 'disk')))

    def test_create_overlay_with_a_neutron_port(self):
        server = self.create_cloudlet_server(networks=[{'uuid': self.neutron.network_1['id']}])
        dom = self.domain(server)
        # The base has no NIC; nova's port was hot-plugged after the restore.
        self.assertEqual(1, len(dom._fake_ifaces))
        self.assertEqual(1, len(dom._def['devices']['nics']))
        mac = etree.fromstring(dom._fake_ifaces[0].encode()).find('mac').get('address')
        self.assertTrue(mac)

        image_id = self.create_image_ok(server, 'o', {props.CLOUDLET_TYPE: props.OVERLAY})
        _, header, _ = self.apply_overlay_blob(self.image_data(image_id), self.synthetic.base)
        # Captured without the NIC (the ABI matches the base's); plugged back afterwards.
        self.assertNotIn('<interface', header.xml)
        dom = self.domain(server)
        self.assertEqual([mac], [etree.fromstring(i.encode()).find('mac').get('address')
                                 for i in dom._fake_ifaces])
        self.assertTrue(dom.isActive())

    def test_create_base(self):
        server = self.create_cloudlet_server()
        disk, pages = self.change_guest(server)

        image_id = self.create_image_ok(server, 'new-base', {props.CLOUDLET_TYPE: props.BASE_DISK})

        disk_image = self.images.get(image_id)
        links = model.linked_images(self.images, disk_image, require_active=True)
        self.assertEqual(image_id, links.disk_id)
        self.assertNotEqual(self.synthetic.base.base_id, links.base_id)
        # The instance booted from its disk: no kernel for nova to fetch.
        self.assertEqual((None, None), (links.kernel_id, links.ramdisk_id))
        self.assertNotIn(props.KERNEL_ID, disk_image)
        for companion in (links.memory_id, links.disk_hash_id, links.memory_hash_id):
            self.assertTrue(self.images.get(companion)[props.OS_HIDDEN])
        self.assertEqual(disk, self.image_data(image_id))
        memory = self.image_data(links.memory_id)
        path = os.path.join(self.work, 'captured.save')
        with open(path, 'wb') as f:
            f.write(memory)
        self.assertNotIn('<interface', savefile.read_save_image(path).xml)
        # The new base is cached on this host already.
        store = basestore.BaseStore(os.path.join(self.flags_instances_path(), '_cloudlet', 'bases'))
        self.assertEqual(links.base_id, store.get(links.base_id).base_id)
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertTrue(self.domain(server).isActive())

        # Resume the new base as a new VM: it has the captured state.
        clone = self.create_cloudlet_server(image_id=image_id)
        self.assertEqual(pages, self.domain(clone)._fake_pages)
        self.assertEqual(disk, self.disk_bytes(os.path.join(self.instance_dir(clone), 'disk')))

    def test_plain_create_image_of_a_cloudlet_instance_is_a_base(self):
        # The image inherits cloudlet_type=cloudlet_base_disk from the instance's image.
        server = self.create_cloudlet_server()
        image_id = self.create_image_ok(server, 'snap')
        links = model.linked_images(self.images, self.images.get(image_id), require_active=True)
        self.assertEqual(image_id, links.disk_id)

    def test_overlay_of_an_ordinary_instance_is_refused(self):
        server = self._create_server(image_uuid='155d900f-4e14-4e4c-a73d-069cbf4541e6',
                                     flavor_id=self.flavor_id, networks='none')
        images_before = set(self.glance.images)
        self.create_image(server, 'o', {props.CLOUDLET_TYPE: props.OVERLAY})
        self.assertEqual(images_before, set(self.glance.images))      # deleted by the manager
        self.assertIn('was not booted from a cloudlet base disk image', self.latest_fault(server))

    def test_failed_base_upload_leaves_no_image(self):
        server = self.create_cloudlet_server()
        images_before = set(self.glance.images)
        driver = self.driver()
        # The driver uploads through its inherited _image_api (no public accessor).
        with mock.patch.object(driver._image_api, 'update', side_effect=RuntimeError('glance down')):
            self.create_image(server, 'b', {props.CLOUDLET_TYPE: props.BASE_DISK})
        self.assertEqual(images_before, set(self.glance.images))      # companions deleted too
        self.assertTrue(self.domain(server).isActive())
        self.assertEqual([], [n for n in os.listdir(self.instance_dir(server))
                              if n.startswith('cloudlet-capture')])

    def flags_instances_path(self):
        return cloudlet_base.CONF.instances_path
