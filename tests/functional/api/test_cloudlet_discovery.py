"""GET /os-cloudlet through nova-api loaded from etc/nova/api-paste.ini."""

from cloudlet_glance import properties

from tests.functional.api import base


class DiscoveryTest(base.CloudletAPITestBase):

    def test_discovery_document(self):
        self.flags(max_overlay_bytes=12345, overlay_url_schemes=['https', 'http', 'file'],
                   group='cloudlet')
        resp = self.api.api_get('/os-cloudlet')
        self.assertEqual(200, resp.status)
        doc = resp.body['cloudlet']
        self.assertEqual('1.3', doc['version'])
        self.assertEqual('1.0', doc['min_version'])
        self.assertEqual(['cloudlet-create-base', 'cloudlet-create-overlay', 'cloudlet-handoff',
                          'cloudlet-heartbeat'], doc['actions'])
        self.assertEqual({'cloudlet-base': 'cloudlet-create-base'}, doc['action_aliases'])
        self.assertEqual(['overlay_url', 'cloudlet_overlay_id', 'cloudlet_lease_seconds'],
                         doc['server_metadata_keys'])
        self.assertEqual({'min_seconds': 30, 'max_seconds': 86400, 'grace_seconds': 45}, doc['lease'])
        for key in (properties.CLOUDLET_TYPE, properties.BASE_ID, 'cloudlet_base_memory',
                    'cloudlet_codec', properties.TRAIT_PROPERTY):
            self.assertIn(key, doc['image_property_keys'])
        self.assertEqual(['zstd', 'xz'], doc['codecs'])
        self.assertEqual(1, doc['overlay_format_version'])
        # file:// is never offered, whatever the configuration says.
        self.assertEqual({'max_overlay_bytes': 12345, 'overlay_url_schemes': ['https', 'http']},
                         doc['limits'])
        self.assertEqual({'codecs': ['auto', 'zstd', 'xz'], 'destinations': [],
                          'credential_kinds': ['token', 'application_credential']}, doc['handoff'])
        links = {link['rel']: link['href'] for link in doc['links']}
        self.assertTrue(links['self'].endswith('/v2.1/os-cloudlet'), links)
        self.assertTrue(links['bases'].endswith('/v2.1/os-cloudlet/bases'), links)
        self.assertTrue(links['negotiate'].endswith('/v2.1/os-cloudlet/negotiate'), links)

    def test_handoff_destinations_by_name_only(self):
        self.flags(destinations={'edge-b': 'https://edge-b.internal:5000/v3',
                                 'core': 'https://core.internal/identity/v3'},
                   group='cloudlet_handoff')
        doc = self.api.api_get('/os-cloudlet').body['cloudlet']
        self.assertEqual(['core', 'edge-b'], doc['handoff']['destinations'])
        self.assertNotIn('internal', repr(doc))

    def test_any_authenticated_user_and_any_microversion(self):
        self.api.microversion = None   # no microversion header: 2.1
        self.assertEqual(200, self.api.api_get('/os-cloudlet').status)
        other = self.api_fixture.other_api   # role "other" only
        self.assertEqual(200, other.api_get('/os-cloudlet').status)
        self.assertEqual(200, self.api_fixture.reader_api.api_get('/os-cloudlet').status)

    def test_project_id_in_url(self):
        resp = self.api.api_request('/%s/os-cloudlet' % self.api.project_id)
        self.assertEqual(200, resp.status_code)

    def test_policy_forbids(self):
        self.cloudlet_policy.set_rules({'cloudlet:discover': '!'})
        resp = self.api.api_request('/os-cloudlet')
        self.assertEqual(403, resp.status_code)

    def test_unknown_query_parameter_refused(self):
        resp = self.api.api_request('/os-cloudlet?verbose=1')
        self.assertEqual(400, resp.status_code)

    def test_stock_routes_still_served(self):
        # The router is nova's: a stock resource answers as before.
        self.assertEqual(200, self.api.api_get('/flavors').status)
