"""The tempest plugin's hooks: its options, where its tests are, its service client."""

import importlib
import os

import fixtures
from oslo_config import cfg
import testtools

from cloudlet_tempest_plugin import plugin


class PluginTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.plugin = plugin.CloudletTempestPlugin()

    def test_options_register_in_their_groups(self):
        conf = cfg.ConfigOpts()
        self.plugin.register_opts(conf)
        conf([])
        self.assertTrue(conf.service_available.cloudlet)
        self.assertEqual(8080, conf.cloudlet.app_port)
        self.assertIsNone(conf.cloudlet.overlay_serve_address)
        self.assertIsNone(conf.cloudlet.handoff_auth_url)
        listed = dict(self.plugin.get_opt_lists())
        self.assertEqual({'cloudlet', 'service_available'}, set(listed))

    def test_tests_are_found_under_the_package(self):
        test_dir, top_level = self.plugin.load_tests()
        self.assertTrue(os.path.isfile(os.path.join(test_dir, 'api', 'test_discovery.py')))
        self.assertEqual(os.path.join(top_level, 'cloudlet_tempest_plugin', 'tests'), test_dir)

    def test_the_service_client_is_on_the_compute_endpoint(self):
        # The compute group's settings (catalog type, endpoint type, region): the
        # cloudlet API is part of nova's.
        self.useFixture(fixtures.MockPatch('tempest.config.service_client_config',
                                           side_effect=lambda name: {'service': name}))
        params, = self.plugin.get_service_clients()
        self.assertEqual(('cloudlet_v1', 'compute'), (params['name'], params['service']))
        module = importlib.import_module(params['module_path'])
        self.assertTrue(all(hasattr(module, name) for name in params['client_names']))
