"""POST /servers on a base disk image: resume the base, or synthesize from an overlay."""

import json
import os

from lxml import etree

from cloudlet_engine import qcow2
from cloudlet_glance import properties as props
from tests.functional import cloudlet_base


class ResumeBaseTest(cloudlet_base.CloudletTestBase):

    def test_resume_base_restores_under_nova_identity(self):
        server = self.create_cloudlet_server()
        name = self.instance_name(server)

        restores = self.restores_of(server)
        self.assertEqual(1, len(restores))
        self.assertEqual(name, restores[0][0])
        self.assertEqual([], self.boots_of(server))          # restoreFlags, never createWithFlags
        dom = self.domain(server)
        self.assertEqual(name, dom.name())
        self.assertTrue(dom.isActive())

        # The restored domain is the base's, retargeted: nova's disk and console log.
        root = etree.fromstring(dom._fake_xml.encode())
        instance_dir = self.instance_dir(server)
        disk = root.find('devices/disk')
        self.assertEqual(os.path.join(instance_dir, 'disk'), disk.find('source').get('file'))
        self.assertEqual('qcow2', disk.find('driver').get('type'))
        self.assertEqual(os.path.join(instance_dir, 'console.log'),
                         root.find('devices/serial/log').get('file'))
        self.assertEqual(server['id'], root.findtext('uuid'))
        self.assertIn(server['name'], etree.tostring(root.find('metadata'), encoding='unicode'))

        # The root disk is the launch disk: a qcow2 layer over the cached base disk.
        base = self.synthetic.base
        info = qcow2.top_layer_info(os.path.join(instance_dir, 'disk'))
        self.assertTrue(info['backing_file'].endswith(os.path.join(base.base_id, 'disk.raw')))
        self.assertEqual(self.synthetic.disk, self.disk_bytes(os.path.join(instance_dir, 'disk')))
        # The guest's memory is the base's.
        self.assertEqual(self.synthetic.pages, dom._fake_pages)

        # State on disk; no launch files left.
        with open(os.path.join(instance_dir, 'cloudlet.json')) as f:
            record = json.load(f)
        self.assertEqual(base.base_id, record['base_id'])
        self.assertEqual({'kind': 'base', 'ref': None}, record['source'])
        self.assertFalse(os.path.exists(os.path.join(instance_dir, 'cloudlet-launch')))

        # Placement: the compute node has the cloudlet trait (base images require it).
        rp_uuid = self.compute_rp_uuids['compute1']
        traits = self.placement.get('/resource_providers/%s/traits' % rp_uuid,
                                    version='1.6').body['traits']
        self.assertIn(props.TRAIT, traits)

        self._delete_server(server)
        self._wait_until_deleted(server)
        self.assertFalse(os.path.exists(instance_dir))

    def test_flavor_mismatch_is_a_fault(self):
        flavor = self._create_flavor(name='m1.big', memory_mb=512, vcpu=1, disk=1, ephemeral=0)
        server = self.create_cloudlet_server(flavor_id=flavor, expected_state='ERROR')
        self.assertIn('flavor m1.big has 512 MB / 1 vCPUs; base test-base needs 256 MB / 1 vCPUs',
                      server['fault']['message'])
        self.assertEqual([], self.restores_of(server))
        self.assert_no_launch_files(server)

    def test_vcpu_mismatch_is_a_fault(self):
        flavor = self._create_flavor(name='m1.two', memory_mb=256, vcpu=2, disk=1, ephemeral=0)
        server = self.create_cloudlet_server(flavor_id=flavor, expected_state='ERROR')
        self.assertIn('flavor m1.two has 256 MB / 2 vCPUs; base test-base needs 256 MB / 1 vCPUs',
                      server['fault']['message'])


class SynthesisTest(cloudlet_base.CloudletTestBase):

    def setUp(self):
        super().setUp()
        self.disk, self.pages = self.synthetic.changed()
        self.overlay_dir = os.path.join(self.work, 'www')
        os.makedirs(self.overlay_dir)
        self.overlay_path = self.synthetic.make_overlay(os.path.join(self.overlay_dir, 'app.clo'),
                                                        self.disk, self.pages)

    def assert_synthesized(self, server):
        self.assertEqual(1, len(self.restores_of(server)))
        self.assertEqual([], self.boots_of(server))
        instance_dir = self.instance_dir(server)
        self.assertEqual(self.disk, self.disk_bytes(os.path.join(instance_dir, 'disk')))
        self.assertEqual(self.pages, self.domain(server)._fake_pages)
        self.assertFalse(os.path.exists(os.path.join(instance_dir, 'cloudlet-launch')))

    def test_synthesis_from_glance_overlay(self):
        overlay_id = self.upload_overlay(self.overlay_path, self.synthetic.base.base_id)
        server = self.create_cloudlet_server(metadata={props.META_OVERLAY_ID: overlay_id})
        self.assert_synthesized(server)
        with open(os.path.join(self.instance_dir(server), 'cloudlet.json')) as f:
            self.assertEqual({'kind': 'glance', 'ref': overlay_id}, json.load(f)['source'])

    def test_synthesis_from_url(self):
        http = self.useFixture(cloudlet_base.OverlayHTTPServer(self.overlay_dir))
        server = self.create_cloudlet_server(metadata={props.META_OVERLAY_URL: http.url('app.clo')})
        self.assert_synthesized(server)

    def _refused(self, metadata, message):
        server = self.create_cloudlet_server(metadata=metadata, expected_state='ERROR')
        self.assertIn(message, server['fault']['message'])
        self.assertEqual([], self.restores_of(server))
        self.assert_no_launch_files(server)
        return server

    def test_wrong_base(self):
        other = cloudlet_base.SyntheticBase(os.path.join(self.work, 'other'), seed=2, name='other')
        self.upload_base(other)
        path = other.make_overlay(os.path.join(self.work, 'other.clo'), *other.changed())
        overlay_id = self.upload_overlay(path, other.base.base_id)
        self._refused({props.META_OVERLAY_ID: overlay_id}, 'overlay does not fit the base')

    def test_wrong_base_over_url(self):
        other = cloudlet_base.SyntheticBase(os.path.join(self.work, 'other'), seed=2, name='other')
        other.make_overlay(os.path.join(self.overlay_dir, 'other.clo'), *other.changed())
        http = self.useFixture(cloudlet_base.OverlayHTTPServer(self.overlay_dir))
        self._refused({props.META_OVERLAY_URL: http.url('other.clo')},
                      'overlay does not fit the base: overlay was made for base')

    def test_corrupt_overlay(self):
        with open(self.overlay_path, 'rb') as f:
            blob = bytearray(f.read())
        blob[len(blob) // 2] ^= 0xff
        with open(os.path.join(self.overlay_dir, 'bad.clo'), 'wb') as f:
            f.write(blob)
        http = self.useFixture(cloudlet_base.OverlayHTTPServer(self.overlay_dir))
        self._refused({props.META_OVERLAY_URL: http.url('bad.clo')}, 'overlay is corrupt')

    def test_corrupt_glance_overlay(self):
        overlay_id = self.upload_overlay(self.overlay_path, self.synthetic.base.base_id)
        blob = bytearray(self.image_data(overlay_id))
        self.glance._imagedata[overlay_id] = bytes(blob[:len(blob) // 2])
        self._refused({props.META_OVERLAY_ID: overlay_id}, 'overlay is truncated')

    def test_unreachable_url(self):
        port = cloudlet_base.free_port()
        self._refused({props.META_OVERLAY_URL: 'http://127.0.0.1:%d/app.clo' % port},
                      'cannot fetch the overlay: cannot reach http://127.0.0.1:%d/app.clo' % port)

    def test_missing_url(self):
        http = self.useFixture(cloudlet_base.OverlayHTTPServer(self.overlay_dir))
        self._refused({props.META_OVERLAY_URL: http.url('nothing.clo')}, 'HTTP 404')

    def test_file_url_refused(self):
        self._refused({props.META_OVERLAY_URL: 'file://' + self.overlay_path},
                      "overlay_url scheme 'file' is not allowed")

    def test_host_not_allowed(self):
        self._refused({props.META_OVERLAY_URL: 'http://overlays.example.com/app.clo'},
                      'overlay_url host overlays.example.com is not allowed')

    def test_outbound_policy_refuses_loopback_and_the_metadata_service(self):
        self.flags(outbound_allowed_networks=[], group='cloudlet')       # the default
        http = self.useFixture(cloudlet_base.OverlayHTTPServer(self.overlay_dir))
        for url in (http.url('app.clo'), 'http://169.254.169.254/latest/meta-data/'):
            self._refused({props.META_OVERLAY_URL: url},
                          'overlay_url refused by policy: host %s' % url.split('/')[2].split(':')[0])

    def test_not_an_overlay_image(self):
        self._refused({props.META_OVERLAY_ID: self.base_images.memory_id},
                      'is not a cloudlet overlay')

    def test_overlay_metadata_on_an_ordinary_image(self):
        body = self._build_server(image_uuid='155d900f-4e14-4e4c-a73d-069cbf4541e6',
                                  flavor_id=self.flavor_id, networks='none')
        body['metadata'] = {props.META_OVERLAY_URL: 'http://127.0.0.1/x.clo'}
        server = self._wait_for_state_change(self.api.post_server({'server': body}), 'ERROR')
        self.assertIn('is not a cloudlet base disk', server['fault']['message'])
