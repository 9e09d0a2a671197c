"""cloudlet_dashboard.api: the user's token and catalog, one error type with the service's message."""

from unittest import mock

from openstack_auth import utils as auth_utils
from openstack_dashboard.test import helpers
from osc_lib import exceptions as osc_exceptions

from cloudlet_dashboard import api
from cloudlet_engine import errors as engine_errors
from cloudlet_glance import properties as props


class ApiTests(helpers.TestCase):

    def setUp(self):
        super().setUp()
        self.request.user = auth_utils.get_user(self.request)   # the signed-in test user

    def test_requests_carry_the_users_token_and_the_catalogs_endpoints(self):
        auth = api.RequestAuth(self.request)
        self.assertEqual(self.token.id, auth.get_token(None))
        self.assertEqual('http://public.nova.example.com:8774/v2',     # Horizon's test catalog
                         auth.get_endpoint(None, service_type='compute'))
        self.assertIsNone(auth.get_endpoint(None, service_type='no-such-service'))
        self.assertIs(api.client(self.request), api.client(self.request))

    def test_expected_failures_become_one_error_with_the_services_message(self):
        for raised, text in ((osc_exceptions.Conflict(409, 'server is locked'), 'server is locked'),
                             (osc_exceptions.CommandError('no flavor fits'), 'no flavor fits'),
                             (engine_errors.WrongBase('overlay of another base'), 'overlay of another base')):
            with mock.patch.object(api, 'client') as client:
                client.return_value.discover.side_effect = raised
                with self.assertRaises(api.CloudletError) as caught:
                    api.discovery(self.request)
            self.assertEqual(text, str(caught.exception))
        with mock.patch.object(api, 'client') as client:
            client.return_value.discover.side_effect = KeyError('a bug')
            self.assertRaises(KeyError, api.discovery, self.request)

    def test_a_cloudlet_server_is_one_on_a_base_disk_image_looked_up_once_per_request(self):
        server = self.servers.first()
        server.image = {'id': 'img-1'}
        with mock.patch.object(api, 'client') as client:
            client.return_value.images.get.return_value = {props.CLOUDLET_TYPE: props.BASE_DISK}
            self.assertTrue(api.is_cloudlet_server(self.request, server))
            self.assertTrue(api.is_cloudlet_server(self.request, server))
            client.return_value.images.get.assert_called_once_with('img-1')
            client.return_value.images.get.side_effect = Exception('gone')
            server.image = {'id': 'img-2'}
            self.assertFalse(api.is_cloudlet_server(self.request, server))
        server.image = {'id': 'x', props.CLOUDLET_TYPE: props.OVERLAY}
        self.assertFalse(api.is_cloudlet_server(self.request, server))
        server.image = ''                      # booted from a volume
        self.assertFalse(api.is_cloudlet_server(self.request, server))

    def test_free_capacity_from_placement(self):
        cloudlet = mock.Mock()
        cloudlet.compute_hosts.return_value = {'edge-1': {'state': 'up', 'status': 'enabled', 'provider': 'rp'},
                                               'edge-2': {'state': 'down', 'status': 'enabled', 'provider': None}}
        cloudlet.provider_traits.return_value = {'COMPUTE_NET_VIF_MODEL_VIRTIO',
                                                 props.cached_image_trait('img-1')}
        answers = {
            '/resource_providers/rp/inventories': {'inventories': {
                'VCPU': {'total': 4, 'reserved': 0, 'allocation_ratio': 4.0},
                'MEMORY_MB': {'total': 4096, 'reserved': 512, 'allocation_ratio': 1.0}}},
            '/resource_providers/rp/usages': {'usages': {'VCPU': 3, 'MEMORY_MB': 1024}}}
        cloudlet.placement_get.side_effect = answers.__getitem__
        with mock.patch.object(api, 'client', return_value=cloudlet):
            rows = api.hosts(self.request)
        self.assertEqual([{'host': 'edge-1', 'state': 'up', 'status': 'enabled',
                           'cached_traits': [api.trait_of_image('img-1')],
                           'free': {'VCPU': 13, 'MEMORY_MB': 2560}},
                          {'host': 'edge-2', 'state': 'down', 'status': 'enabled', 'cached_traits': [],
                           'free': {}}], rows)
