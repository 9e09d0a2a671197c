"""POST /os-cloudlet/negotiate through nova-api loaded from etc/nova/api-paste.ini.

A complete base (disk image and its three companions) in nova's Glance
fixture, flavors made through the API, capacity from nova's Placement fixture
(the compute's provider given the trait the base image requires), overlays
served by a local HTTP server.
"""

import io
import json
import os

from cloudlet_engine import format as overlay_format
from cloudlet_glance import properties

from tests.functional.api import base

BASE_ID = 'cd' * 32
BIG_BASE_ID = 'ef' * 32
DISK_ID = 'c1a0d1e7-0000-4000-8000-0000000000d1'
BIG_DISK_ID = 'c1a0d1e7-0000-4000-8000-0000000000e1'


def base_images(base_id, disk_id, memory_mb, vcpus, name):
    """A base disk image and its hidden companions, as nova's Glance fixture stores them."""
    companions = []
    disk_props = {
        properties.CLOUDLET_TYPE: properties.BASE_DISK, properties.BASE_ID: base_id,
        properties.BASE_NAME: name, properties.MEMORY_MB: str(memory_mb),
        properties.VCPUS: str(vcpus), properties.TRAIT_PROPERTY: 'required',
    }
    for n, kind in enumerate(properties.COMPANION_TYPES):
        companion_id = disk_id[:-1] + str(n + 2)      # ...d1 -> ...d2, ...d3, ...d4
        disk_props[kind] = companion_id
        companions.append({
            'id': companion_id, 'name': '%s-%s' % (name, kind), 'status': 'active',
            'visibility': 'public', 'is_public': True, 'os_hidden': True,
            'container_format': 'bare', 'disk_format': 'raw', 'size': 4096,
            'properties': {properties.CLOUDLET_TYPE: kind, properties.BASE_ID: base_id},
        })
    disk = {'id': disk_id, 'name': name, 'status': 'active', 'visibility': 'public',
            'is_public': True, 'container_format': 'bare', 'disk_format': 'raw',
            'size': 1024 * 1024, 'min_ram': memory_mb, 'min_disk': 1, 'properties': disk_props}
    return companions + [disk]


def overlay_file(base_id, codec='zstd'):
    out = io.BytesIO()
    writer = overlay_format.OverlayWriter(out, {'base_id': base_id, 'disk_size': 8 * 4096,
                                                'memory_size': 4096, 'codec': codec})
    writer.add_segment(overlay_format.CODEC_NONE, overlay_format.DELTA_NONE, 0, 0, b'', 0,
                       b'x' * 200000)
    writer.finish()
    return out.getvalue()


class NegotiationTest(base.CloudletAPITestBase):

    def setUp(self):
        super().setUp()
        for image in (base_images(BASE_ID, DISK_ID, 256, 1, 'neg-base') +
                      base_images(BIG_BASE_ID, BIG_DISK_ID, 65536, 1, 'neg-big-base')):
            self.glance.create(None, image)
        # A flavor that fits the base (exactly 256 MB, 1 vCPU), one that does not
        # (2 vCPUs), one for the base no host has room for.
        for flavor_id, ram, vcpus in (('cloudlet-256', 256, 1), ('cloudlet-256-2cpu', 256, 2),
                                      ('cloudlet-64g', 65536, 1)):
            self.admin_api.post_flavor({'flavor': {'id': flavor_id, 'name': flavor_id,
                                                   'ram': ram, 'vcpus': vcpus, 'disk': 1}})
        self.www = self.useFixture(base.fixtures.TempDir()).path
        self.http = self.useFixture(base.PackageServer(self.www))
        # The overlay server listens on 127.0.0.1, which the outbound policy refuses by default.
        self.flags(outbound_allowed_networks=['127.0.0.1/32'], group='cloudlet')

    def give_trait(self):
        self.placement.put('/traits/CUSTOM_CLOUDLET_V1', {}, version='1.6')
        providers = self.placement.get('/resource_providers').body['resource_providers']
        self.assertEqual(1, len(providers))     # the one compute node
        self._set_provider_traits(providers[0]['uuid'], ['CUSTOM_CLOUDLET_V1'])

    def negotiate(self, body, api=None):
        resp = (api or self.api).api_request('/os-cloudlet/negotiate', method='POST',
                                             body=json.dumps(body))
        return resp.status_code, resp.json()

    def overlay(self, base_id=BASE_ID, **fields):
        return {'overlay': dict({'base_id': base_id, 'format_version': 1, 'codec': 'zstd'},
                                **fields)}

    def serve(self, name, data):
        with open(os.path.join(self.www, name), 'wb') as f:
            f.write(data)
        return self.http.url(name)

    # --- acceptable --------------------------------------------------------------

    def test_acceptable_from_the_header(self):
        self.give_trait()
        status, body = self.negotiate(self.overlay(memory_mb=256, vcpus=1, size_bytes=20949368))
        self.assertEqual(200, status, body)
        self.assertEqual({'acceptable': True, 'reason': None, 'base_id': BASE_ID,
                          'base_image_id': DISK_ID, 'flavor_id': 'cloudlet-256',
                          'estimated_seconds': 7.7, 'format_version': 1, 'codec': 'zstd'},
                         body['negotiation'])

    def test_acceptable_from_the_url(self):
        self.give_trait()
        data = overlay_file(BASE_ID, codec='xz')
        status, body = self.negotiate({'overlay_url': self.serve('app.clovl', data)})
        self.assertEqual(200, status, body)
        answer = body['negotiation']
        self.assertTrue(answer['acceptable'], answer)
        self.assertEqual(('cloudlet-256', DISK_ID, 'xz', 1),
                         (answer['flavor_id'], answer['base_image_id'], answer['codec'],
                          answer['format_version']))
        self.assertGreater(answer['estimated_seconds'], 0)

    def test_project_id_in_url_and_any_microversion(self):
        self.give_trait()
        self.api.microversion = None
        resp = self.api.api_request('/%s/os-cloudlet/negotiate' % self.api.project_id,
                                    method='POST', body=json.dumps(self.overlay()))
        self.assertEqual(200, resp.status_code, resp.text)

    # --- not acceptable ----------------------------------------------------------

    def test_no_fitting_flavor(self):
        self.give_trait()
        self.admin_api.delete_flavor('cloudlet-256')
        status, body = self.negotiate(self.overlay())
        self.assertEqual(200, status, body)
        answer = body['negotiation']
        self.assertFalse(answer['acceptable'])
        self.assertIn('no flavor has exactly 256 MB and 1 vCPUs', answer['reason'])
        self.assertEqual((DISK_ID, None), (answer['base_image_id'], answer['flavor_id']))

    def test_no_capacity_without_the_trait(self):
        status, body = self.negotiate(self.overlay())
        self.assertEqual(200, status, body)
        self.assertFalse(body['negotiation']['acceptable'])
        self.assertIn('no capacity', body['negotiation']['reason'])
        self.assertEqual('cloudlet-256', body['negotiation']['flavor_id'])

    def test_no_capacity_for_a_big_base(self):
        self.give_trait()
        status, body = self.negotiate(self.overlay(BIG_BASE_ID))
        self.assertEqual(200, status, body)
        self.assertFalse(body['negotiation']['acceptable'])
        self.assertIn('no capacity: no compute host for base neg-big-base has 65536 MB',
                      body['negotiation']['reason'])

    def test_unknown_and_incomplete_bases(self):
        # 'ab' * 32 is the harness's base disk image, whose companions are not in Glance.
        for base_id in ('12' * 32, base.BASE_DISK_IMAGE['properties'][properties.BASE_ID]):
            status, body = self.negotiate(self.overlay(base_id))
            self.assertEqual(200, status, body)
            self.assertFalse(body['negotiation']['acceptable'])
            self.assertIn('unknown base %s' % base_id, body['negotiation']['reason'])

    def test_unsupported_format_and_codec(self):
        for fields, words in (({'format_version': 3}, 'format version 3'),
                              ({'codec': 'lz4'}, "codec 'lz4'")):
            status, body = self.negotiate(self.overlay(**fields))
            self.assertEqual(200, status, body)
            self.assertFalse(body['negotiation']['acceptable'])
            self.assertIn(words, body['negotiation']['reason'])

    # --- 400, 403 ----------------------------------------------------------------

    def test_bad_bodies(self):
        for body, words in (({}, 'should be non-empty'),
                            (dict(self.overlay(), overlay_url='http://h/o'),
                             'has too many properties'),
                            ({'url': 'http://h/o'}, "'url' was unexpected"),
                            ({'overlay': {'codec': 'zstd'}}, "'base_id' is a required property"),
                            (self.overlay(base_id='nothex'), 'base_id'),
                            (self.overlay(size_bytes=-1), 'size_bytes')):
            status, answer = self.negotiate(body)
            self.assertEqual(400, status, answer)
            self.assertIn(words, answer['badRequest']['message'])

    def test_bad_urls(self):
        corrupt = bytearray(overlay_file(BASE_ID))
        corrupt[30] ^= 0xff
        for url, words in (
                ('file:///etc/passwd', 'overlay URL refused'),
                (self.http.url('missing.clovl'), 'HTTP 404'),
                ('http://127.0.0.1:9/o.clovl', 'cannot reach'),
                (self.serve('corrupt.clovl', bytes(corrupt)), 'checksum mismatch'),
                (self.serve('index.html', b'<html></html>' * 10), 'not an openstack-cloudlet overlay'),
        ):
            status, answer = self.negotiate({'overlay_url': url})
            self.assertEqual(400, status, (url, answer))
            self.assertIn(words, answer['badRequest']['message'])

    def test_urls_the_outbound_policy_refuses(self):
        self.flags(outbound_allowed_networks=[], group='cloudlet')       # the default
        for url in (self.serve('o.clovl', overlay_file(BASE_ID)), 'http://169.254.169.254/latest/meta-data/'):
            status, answer = self.negotiate({'overlay_url': url})
            self.assertEqual(400, status, (url, answer))
            self.assertIn('overlay URL refused by policy: host ', answer['badRequest']['message'])

    def test_policy(self):
        status, _ = self.negotiate(self.overlay(), api=self.api_fixture.reader_api)
        self.assertEqual(403, status)
        self.cloudlet_policy.set_rules({'cloudlet:negotiate': '!'})
        status, _ = self.negotiate(self.overlay())
        self.assertEqual(403, status)
