"""GET /os-cloudlet and POST /os-cloudlet/negotiate (api-ref: cloudlet-discovery,
cloudlet-negotiation): what a client asks before it sends an overlay.
"""

from tempest.lib import decorators
from tempest.lib import exceptions as lib_exc

from cloudlet_tempest_plugin.tests import base

ACTIONS = {'cloudlet-create-base', 'cloudlet-create-overlay', 'cloudlet-handoff'}
UNKNOWN_BASE = '0' * 64


class DiscoveryTest(base.CloudletTest):

    @decorators.idempotent_id('0b7c29d4-31f7-4b89-9d6f-3f3c6a3b1e01')
    def test_discovery_document(self):
        found = self.cloudlet.show_cloudlet()['cloudlet']
        self.assertLessEqual(ACTIONS, set(found['actions']))
        self.assertLessEqual({'overlay_url', 'cloudlet_overlay_id'}, set(found['server_metadata_keys']))
        self.assertIn('zstd', found['codecs'])
        self.assertIn(found['overlay_format_version'], found['overlay_format_versions'])
        self.assertGreater(found['limits']['max_overlay_bytes'], 0)
        major, minor = found['version'].split('.')
        self.assertGreaterEqual((int(major), int(minor)), (1, 0))

    @decorators.idempotent_id('5d0a8a7e-2d0c-4f6c-8e1a-3f0f7b6b9c02')
    def test_overlays_this_cloud_cannot_run_are_an_answer_not_an_error(self):
        codecs = self.cloudlet.show_cloudlet()['cloudlet']['codecs']
        for overlay in ({'base_id': UNKNOWN_BASE, 'format_version': 1, 'codec': codecs[0]},
                        {'base_id': UNKNOWN_BASE, 'format_version': 1, 'codec': 'no-such-codec'},
                        {'base_id': UNKNOWN_BASE, 'format_version': 65535, 'codec': codecs[0]}):
            answer = self.cloudlet.negotiate(overlay=overlay)['negotiation']
            self.assertFalse(answer['acceptable'], overlay)
            self.assertTrue(answer['reason'], overlay)
            self.assertIsNone(answer['base_image_id'], overlay)

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('c4e1d5b0-6f36-4a4e-b1b9-0e9a4c8b7d03')
    def test_negotiation_bodies_that_are_refused(self):
        for body in ({},                                                    # neither
                     {'overlay': {'base_id': UNKNOWN_BASE, 'format_version': 1, 'codec': 'zstd'},
                      'overlay_url': 'https://overlays.invalid/app.clo'},    # both
                     {'overlay': {'base_id': 'not-hex', 'format_version': 1, 'codec': 'zstd'}},
                     {'overlay': {'base_id': UNKNOWN_BASE, 'format_version': 0, 'codec': 'zstd'}},
                     {'overlay_url': 'ftp://overlays.invalid/app.clo'}):
            self.assertRaises(lib_exc.BadRequest, self.cloudlet.negotiate, **body)

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('2f9b6a41-7c1d-4f0b-9a6e-5b8c7d6e4f04')
    def test_negotiating_an_overlay_url_the_policy_refuses(self):
        # A link-local address (the metadata service): refused before any connection.
        error = self.assertRaises(lib_exc.BadRequest, self.cloudlet.negotiate,
                                  overlay_url='http://169.254.169.254/app.clo')
        self.assertIn('refused', str(error))
