"""The plugin's CloudletClient: each call's method, path, body and expected code
(the api-ref's), on tempest's own fake auth provider.
"""

import json

import fixtures
from tempest.lib import exceptions as lib_exc
from tempest.tests.lib import fake_auth_provider
from tempest.tests.lib.services import base

from cloudlet_tempest_plugin.services import cloudlet_client

REST = 'tempest.lib.common.rest_client.RestClient.'
SERVER = 'b1c2d3e4-0000-4000-8000-000000000001'


class CloudletClientTest(base.BaseServiceTest):

    def setUp(self):
        super().setUp()
        self.client = cloudlet_client.CloudletClient(fake_auth_provider.FakeAuthProvider(),
                                                     'compute', 'regionOne')

    def sent(self, method, call, answer, status, **kwargs):
        """Call client.`call`(**kwargs) with `method` answering (status, answer); the mock's call."""
        mocked = self.useFixture(fixtures.MockPatch(
            REST + method, return_value=self.create_response(answer, False, status)))
        self.assertEqual(answer, getattr(self.client, call)(**kwargs))
        return mocked.mock.call_args

    def test_discovery(self):
        args = self.sent('get', 'show_cloudlet', {'cloudlet': {'version': '1.3'}}, 200)
        self.assertEqual(('os-cloudlet',), args.args)

    def test_negotiate_posts_the_request(self):
        args = self.sent('post', 'negotiate', {'negotiation': {'acceptable': False}}, 200,
                         overlay_url='https://o.example/a.clo')
        self.assertEqual('os-cloudlet/negotiate', args.args[0])
        self.assertEqual({'overlay_url': 'https://o.example/a.clo'}, json.loads(args.args[1]))

    def test_captures_are_server_actions(self):
        args = self.sent('post', 'create_overlay', {'image_id': 'i'}, 202, server_id=SERVER, name='app')
        self.assertEqual('servers/%s/action' % SERVER, args.args[0])
        self.assertEqual({'cloudlet-create-overlay': {'name': 'app'}}, json.loads(args.args[1]))
        args = self.sent('post', 'create_base', {'image_id': 'i'}, 202, server_id=SERVER, name='b')
        self.assertEqual({'cloudlet-create-base': {'name': 'b'}}, json.loads(args.args[1]))

    def test_handoff_body(self):
        args = self.sent('post', 'handoff', {'handoff_id': 'h'}, 202, server_id=SERVER,
                         destination={'auth_url': 'https://b.example/v3'},
                         credential={'token': 't'}, name='moved')
        self.assertEqual({'cloudlet-handoff': {'destination': {'auth_url': 'https://b.example/v3'},
                                               'credential': {'token': 't'}, 'name': 'moved'}},
                         json.loads(args.args[1]))

    def test_heartbeat_answers_200_with_or_without_seconds(self):
        args = self.sent('post', 'heartbeat', {'lease': {'seconds': 60}}, 200, server_id=SERVER)
        self.assertEqual({'cloudlet-heartbeat': {}}, json.loads(args.args[1]))
        args = self.sent('post', 'heartbeat', {'lease': {'seconds': 60}}, 200, server_id=SERVER, seconds=60)
        self.assertEqual({'cloudlet-heartbeat': {'seconds': 60}}, json.loads(args.args[1]))

    def test_base_imports(self):
        args = self.sent('post', 'import_base', {'base': {'id': 'r'}}, 202, url='https://p.example/b.zip')
        self.assertEqual({'base': {'url': 'https://p.example/b.zip'}}, json.loads(args.args[1]))
        args = self.sent('get', 'list_base_imports', {'bases': []}, 200)
        self.assertEqual(('os-cloudlet/bases',), args.args)
        args = self.sent('delete', 'delete_base_import', {}, 204, base_import_id='r')
        self.assertEqual(('os-cloudlet/bases/r',), args.args)

    def test_residue_calls_name_the_handoff(self):
        args = self.sent('get', 'show_residue', {'residue': {'state': 'ready'}}, 200,
                         server_id=SERVER, handoff_id='h')
        self.assertEqual('servers/%s/cloudlet-residue' % SERVER, args.args[0])
        self.assertEqual('h', args.kwargs['headers'][cloudlet_client.HANDOFF_ID_HEADER])
        args = self.sent('put', 'put_residue', {}, 204, server_id=SERVER, handoff_id='h', data=b'x')
        self.assertEqual('application/octet-stream', args.kwargs['headers']['Content-Type'])

    def test_an_unexpected_success_code_is_an_error(self):
        # The capture actions answer 202: a 200 means another API answered.
        self.useFixture(fixtures.MockPatch(REST + 'post', return_value=self.create_response({}, False, 200)))
        self.assertRaises(lib_exc.InvalidHttpSuccessCode, self.client.create_base, SERVER, 'b')
