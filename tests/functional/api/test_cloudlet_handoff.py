"""POST /servers/{id}/action {"cloudlet-handoff": ...}: the API side, through the whole nova stack.

The compute runs nova's stock fake driver, so nothing listens on the
`cloudlet` topic here: the RPC client's handoff() is replaced by a recorder
(nova's harness turns casts into calls, which would wait for a reply). What
the compute host does with the message is tests/functional/test_handoff.py.
"""

import uuid

import fixtures
import oslo_messaging

from nova.compute import task_states
from nova import context as nova_context
from nova import objects
from nova.tests import fixtures as nova_fixtures

from cloudlet_glance import properties

from api_extensions import handoff
from tests.functional.api import base
from tests.functional.log_capture import CollectingHandler

SECRET = 'Sup3r-S3cret-application-credential-value'
APP_ID = '9f8e7d6c5b4a39281706f5e4d3c2b1a0'
TOKEN = 'gAAAAABfunctional-keystone-token-of-the-destination'
AUTH_URL = 'https://edge-b.example:5000/v3'


def body(**entity):
    request = {'destination': {'auth_url': AUTH_URL},
               'credential': {'application_credential': {'id': APP_ID, 'secret': SECRET}},
               'name': 'app-b'}
    request.update(entity)
    return {'cloudlet-handoff': {k: v for k, v in request.items() if v is not None}}


class HandoffAPITest(base.CloudletAPITestBase):

    def setUp(self):
        super().setUp()
        self.logs = CollectingHandler()
        self.useFixture(fixtures.LogHandler(self.logs, nuke_handlers=False))
        # The cast as the API makes it with the credential in the message; the key
        # manager mode (the default) is tested on the whole stack in tests/functional/test_handoff.py.
        self.flags(credential_store='rpc_message', group='cloudlet_handoff')
        self.casts = []
        self.cast_error = None
        self.useFixture(fixtures.MonkeyPatch(
            'cloudlet_nova.handoff.rpc.HandoffAPI.handoff', self.record_cast))

    def record_cast(self, rpcapi, context, instance, handoff_id, request):
        if self.cast_error is not None:
            raise self.cast_error
        self.casts.append({'context': context, 'instance': instance, 'handoff_id': handoff_id,
                           'request': request, 'task_state': instance.task_state})

    # --- helpers ---------------------------------------------------------

    def instance(self, server_id):
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(ctxt, server_id)
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            return objects.Instance.get_by_uuid(cctxt, server_id,
                                                expected_attrs=['metadata', 'system_metadata'])

    def set_system_metadata(self, server_id, **items):
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(ctxt, server_id)
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            instance = objects.Instance.get_by_uuid(cctxt, server_id,
                                                    expected_attrs=['system_metadata'])
            instance.system_metadata.update(items)
            instance.save()

    def handoff_actions(self, server_id):
        return [a for a in self.api.get_instance_actions(server_id)
                if a['action'] == handoff.INSTANCE_ACTION]

    def assert_not_started(self, server_id):
        server = self.api.get_server(server_id)
        self.assertEqual('ACTIVE', server['status'])
        self.assertIsNone(server['OS-EXT-STS:task_state'])
        self.assertEqual([], self.casts)
        self.assertEqual([], self.handoff_actions(server_id))

    def assert_no_secret(self, server_id, secrets=(SECRET,)):
        instance = self.instance(server_id)
        for secret in secrets:
            self.assertNotIn(secret, self.logs.text())
            self.assertNotIn(secret, repr(dict(instance.metadata)))
            self.assertNotIn(secret, repr(dict(instance.system_metadata)))

    # --- 202 ---------------------------------------------------------------

    def test_accepted_locked_recorded_and_cast(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], body(options={'codec': 'xz'}))
        self.assertEqual(202, resp.status, resp.body)
        handoff_id = resp.body['handoff_id']
        self.assertEqual(handoff_id, str(uuid.UUID(handoff_id)))
        self.assertEqual(['handoff_id'], list(resp.body))

        [cast] = self.casts
        self.assertEqual(server['id'], cast['instance'].uuid)
        self.assertEqual('compute', cast['instance'].host)
        self.assertEqual(task_states.MIGRATING, cast['task_state'])
        self.assertEqual(handoff_id, cast['handoff_id'])
        self.assertEqual(body(options={'codec': 'xz'})['cloudlet-handoff'], cast['request'])
        # The server is busy (task_state migrating) until the compute host ends the handoff.
        server = self.api.get_server(server['id'])
        self.assertEqual('MIGRATING', server['status'])
        self.assertEqual(task_states.MIGRATING, server['OS-EXT-STS:task_state'])
        [action] = self.handoff_actions(server['id'])
        self.assertEqual(cast['context'].request_id, action['request_id'])
        self.assert_no_secret(server['id'])

        # A second handoff (or any action) while it runs: 409.
        resp = self.action(server['id'], body())
        self.assertEqual(409, resp.status, resp.body)
        self.assertIn('task_state migrating', resp.body['conflictingRequest']['message'])
        self.assertEqual(1, len(self.casts))

    def test_every_destination_and_credential_kind(self):
        for entity in ({'destination': {'compute_endpoint': 'https://nova-b.example/v2.1'}},
                       {'destination': {'cloud': 'edge-b', 'region_name': 'R2',
                                        'interface': 'internal', 'flavor': 'f1'},
                        'credential': {'token': TOKEN}}):
            server = self.create_cloudlet_server()
            resp = self.action(server['id'], body(**entity))
            self.assertEqual(202, resp.status, resp.body)
            self.assertEqual(body(**entity)['cloudlet-handoff'], self.casts[-1]['request'])
            self.assert_no_secret(server['id'], secrets=(SECRET, TOKEN))

    def test_admin_on_another_project_server(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], body(), api=self.admin_api)
        self.assertEqual(202, resp.status, resp.body)

    def test_cast_failure_unlocks_the_server(self):
        server = self.create_cloudlet_server()
        self.cast_error = oslo_messaging.MessageDeliveryFailure('no broker')
        resp = self.action(server['id'], body(), expect=[503])
        self.assertEqual(503, resp.status)
        self.assertIn('could not be sent', resp.body['serviceUnavailable']['message'])
        server = self.api.get_server(server['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assertIsNone(server['OS-EXT-STS:task_state'])
        # The action was recorded, and finished.
        [action] = self.handoff_actions(server['id'])
        ctxt = nova_context.get_admin_context()
        mapping = objects.InstanceMapping.get_by_instance_uuid(ctxt, server['id'])
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            recorded = objects.InstanceAction.get_by_request_id(cctxt, server['id'],
                                                                action['request_id'])
        self.assertIsNotNone(recorded.finish_time)
        self.assert_no_secret(server['id'])
        # And it can be tried again.
        self.cast_error = None
        self.assertEqual(202, self.action(server['id'], body()).status)

    # --- 400 ---------------------------------------------------------------

    def test_bad_bodies(self):
        server = self.create_cloudlet_server()
        app_cred = {'application_credential': {'id': APP_ID, 'secret': SECRET}}
        bad = [
            body(destination=None),                                            # no destination
            body(destination={}),
            body(destination={'auth_url': AUTH_URL, 'cloud': 'edge-b'}),       # both kinds
            body(destination={'auth_url': 'file:///etc/keystone'}),
            body(destination={'auth_url': AUTH_URL, 'interface': 'admin'}),
            body(destination={'auth_url': AUTH_URL, 'password': 'x'}),         # extra key
            body(credential=None),                                             # no credential
            body(credential={}),
            body(credential=dict(app_cred, token=TOKEN)),                      # both kinds
            body(credential={'application_credential': {'id': APP_ID}}),
            body(credential={'application_credential': {'id': APP_ID, 'secret': SECRET,
                                                         'roles': []}}),
            body(credential={'token': ''}),
            body(name=None),
            body(name=''),
            body(name='x' * 256),
            body(options={'codec': 'gzip'}),
            body(options={'codec': 'auto', 'level': 9}),
            body(keep_source=True),                                            # extra key
            dict(body(), extra={}),
            {'cloudlet-handoff': 'edge-b'},
        ]
        for request in bad:
            resp = self.action(server['id'], request)
            self.assertEqual(400, resp.status, (request, resp.body))
            self.assertNotIn(SECRET, repr(resp.body))
            self.assertNotIn(TOKEN, repr(resp.body))
        self.assert_not_started(server['id'])
        self.assert_no_secret(server['id'], secrets=(SECRET, TOKEN))

    def test_refused_credential_is_not_echoed(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], body(credential={
            'token': TOKEN, 'application_credential': {'id': APP_ID, 'secret': SECRET}}))
        self.assertEqual(400, resp.status)
        message = resp.body['badRequest']['message']
        self.assertIn('credential', message)
        self.assertIn('***', message)
        self.assertNotIn(SECRET, message)
        self.assertNotIn(TOKEN, message)
        self.assertNotIn(SECRET, self.logs.text())
        self.assertNotIn(TOKEN, self.logs.text())

    # --- 403 / 404 ---------------------------------------------------------

    def test_unknown_server(self):
        resp = self.action('6a8b8ea1-0000-4000-8000-00000000dead', body())
        self.assertEqual(404, resp.status)
        self.assertEqual([], self.casts)

    def test_other_project_user_like_nova(self):
        server = self.create_cloudlet_server()
        other = self.other_project_api()
        stock = self.action(server['id'], {'createImage': {'name': 's'}}, api=other)
        resp = self.action(server['id'], body(), api=other)
        # nova 34 answers 404: a server of another project does not exist for the caller.
        self.assertEqual(404, stock.status)
        self.assertEqual(stock.status, resp.status, resp.body)
        self.assert_not_started(server['id'])

    def test_reader_cannot_hand_off(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], body(), api=self.api_fixture.reader_api)
        self.assertEqual(403, resp.status, resp.body)
        self.assert_not_started(server['id'])

    def test_policy_override(self):
        server = self.create_cloudlet_server()
        self.cloudlet_policy.set_rules({'cloudlet:handoff': 'role:admin'})
        resp = self.action(server['id'], body())
        self.assertEqual(403, resp.status, resp.body)
        self.assertIn('cloudlet:handoff', resp.body['forbidden']['message'])
        self.assert_not_started(server['id'])
        self.assertEqual(202, self.action(server['id'], body(), api=self.admin_api).status)

    # --- 409 ---------------------------------------------------------------

    def _conflict(self, server, *words):
        resp = self.action(server['id'], body())
        self.assertEqual(409, resp.status, resp.body)
        for word in words:
            self.assertIn(word, resp.body['conflictingRequest']['message'])
        self.assertEqual([], self.casts)
        self.assertEqual([], self.handoff_actions(server['id']))

    def test_not_a_cloudlet_server(self):
        self._conflict(self.create_plain_server(), 'not booted from a cloudlet base VM image')

    def test_server_busy_with_a_task(self):
        server = self.create_cloudlet_server()
        self.set_task_state(server['id'], task_states.IMAGE_SNAPSHOT)
        self._conflict(server, 'task_state image_snapshot')

    def test_stopped_server(self):
        server = self.create_cloudlet_server()
        self._stop_server(server)
        self._conflict(server, 'vm_state stopped')

    def test_locked_server(self):
        server = self.create_cloudlet_server()
        self.api.post_server_action(server['id'], {'lock': {}})
        self._conflict(server, 'is locked')
        self.assertEqual([], self.casts)

    def test_compute_service_down(self):
        server = self.create_cloudlet_server()
        [service] = self.admin_api.get_services(binary='nova-compute', host='compute')
        self.admin_api.put_service(service['id'], {'forced_down': True})
        self._conflict(server, 'compute service', 'is down')
        server = self.api.get_server(server['id'])
        self.assertIsNone(server['OS-EXT-STS:task_state'])

    def test_volume_backed_server(self):
        volume_id = nova_fixtures.CinderFixture.IMAGE_BACKED_VOL
        server = self.api.post_server({'server': {
            'name': 'bfv', 'flavorRef': self.api.get_flavors()[0]['id'], 'imageRef': '',
            'networks': 'none',
            'block_device_mapping_v2': [{'boot_index': 0, 'uuid': volume_id,
                                         'source_type': 'volume', 'destination_type': 'volume'}],
        }})
        server = self._wait_for_state_change(server, 'ACTIVE')
        # As if its volume's image were a base disk image (the cloudlet check passes).
        self.set_system_metadata(server['id'], **{
            properties.system_metadata_key(properties.CLOUDLET_TYPE): properties.BASE_DISK})
        self._conflict(server, 'boots from a volume')

    # --- the destination side of the API ------------------------------------

    def test_destination_server_metadata_is_accepted_by_stock_post_servers(self):
        # The destination's POST /servers carries these keys: the reserved-prefix
        # check of the capture actions does not apply to it.
        request = self._build_server(image_uuid=base.BASE_DISK_IMAGE['id'], networks='none')
        request['metadata'] = {properties.META_OVERLAY_ID: 'c1a0d1e7-0000-4000-8000-0000000000ff',
                               'cloudlet_handoff_id': '0f0e0d0c-0b0a-4909-8807-060504030201'}
        server = self.api.post_server({'server': request})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(request['metadata'], server['metadata'])
