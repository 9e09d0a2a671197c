"""api_extensions.handoff: validation errors never quote the credential; the
controller keeps the credential in the key manager (castellan's API patched
with tests/fixtures/fake_key_manager.py) and casts only its reference.
"""

import json
from unittest import mock

from castellan.common import exception as castellan_exc
import fixtures
import oslo_messaging as messaging
import pytest
from webob import exc

from nova.compute import task_states
from nova.compute import vm_states
import nova.conf
from nova import context as nova_context
from nova import exception
from nova import test
from nova.tests.unit.api.openstack import fakes
from nova.tests.unit import fake_instance

from cloudlet_nova.handoff import credentials
from cloudlet_nova.handoff import rpc as handoff_rpc
from tests.fixtures import fake_key_manager

from api_extensions import handoff
from api_extensions import router

CONF = nova.conf.CONF

SECRET = 'sup3r-s3cret-value'
TOKEN = 'gAAAAABtoken-value-0123'


class FakeRequest:
    """What nova's validation helper reads from a request."""

    api_version_request = mock.Mock(matches=lambda *a: True)

    @staticmethod
    def is_legacy_v2():
        return False


@handoff.schema_without_secrets(handoff.schemas.handoff)
def action(req, id, body):
    return 'called'


def body(credential, **extra):
    entity = {'destination': {'auth_url': 'https://edge-b.example/v3'}, 'credential': credential,
              'name': 'app-b'}
    entity.update(extra)
    return {'cloudlet-handoff': entity}


def refuse(request_body):
    with pytest.raises(exception.ValidationError) as info:
        action(req=FakeRequest(), id='server', body=request_body)
    return info.value.format_message()


def test_valid_body_reaches_the_action():
    assert action(req=FakeRequest(), id='s', body=body({'token': TOKEN})) == 'called'


@pytest.mark.parametrize('credential', [
    {'token': TOKEN, 'application_credential': {'id': 'app-id-1', 'secret': SECRET}},  # both
    {'application_credential': {'id': 'app-id-1', 'secret': SECRET, 'extra': 'x'}},
    {'token': TOKEN, 'password': SECRET},
    {'token': [TOKEN, SECRET]},
])
def test_refused_credentials_are_not_echoed(credential):
    message = refuse(body(credential))
    assert 'Invalid input' in message or 'is not valid' in message
    assert SECRET not in message and TOKEN not in message
    assert '***' in message


def test_other_errors_with_a_credential_around_are_masked_too():
    message = refuse(body({'token': TOKEN}, name=''))
    assert TOKEN not in message
    message = refuse(body({'token': TOKEN}, options={'codec': 'lz4'}))
    assert 'lz4' in message and TOKEN not in message


def test_escaped_secret_is_masked():
    odd = "it's-a\\secret"
    message = refuse(body({'token': odd, 'x': 1}))
    assert odd not in message and repr(odd)[1:-1] not in message


@pytest.mark.parametrize('request_body, found', [
    (body({'token': TOKEN}), [TOKEN]),
    (body({'application_credential': {'id': 'app-id-1', 'secret': SECRET}}), [SECRET, 'app-id-1']),
    (body({'token': 'abc'}), []),                     # too short to mask meaningfully
    ({'cloudlet-handoff': 'x'}, []),
    (None, []),
])
def test_credential_values(request_body, found):
    assert handoff.credential_values(request_body) == found


# -- the controller: the credential in the key manager, its reference in the RPC ----------

PROJECT = 'p' * 32
SERVER = 'c1a0d1e7-0000-4000-8000-0000000000bb'
HOST = 'compute-1'
APP_ID = '9f8e7d6c5b4a39281706f5e4d3c2b1a0'
APP_CREDENTIAL = {'application_credential': {'id': APP_ID, 'secret': SECRET}}


def entity(credential=None, **extra):
    return body(credential or APP_CREDENTIAL, options={'codec': 'xz'}, **extra)[handoff.ACTION]


class HandoffControllerTest(test.NoDBTestCase):

    def setUp(self):
        router.register_opts()
        super().setUp()
        self.context = nova_context.RequestContext('user', PROJECT, roles=['reader', 'member'],
                                                   auth_token='the-user-s-own-token')
        self.instance = fake_instance.fake_instance_obj(
            self.context, uuid=SERVER, project_id=PROJECT, user_id='user', host=HOST,
            vm_state=vm_states.ACTIVE, task_state=None)
        self.saves = []
        self.stub_out('nova.objects.Instance.save', self.save)
        self.stub_out('nova.api.openstack.common.get_instance',
                      lambda compute_api, context, server_id: self.instance)
        self.stub_out('api_extensions.policy.authorize', lambda *args, **kwargs: True)
        self.actions = []
        self.stub_out('nova.objects.InstanceAction.action_start',
                      lambda cls, context, uuid, action, want_result=True: self.actions.append(('start', action)))
        self.stub_out('nova.objects.InstanceAction.action_finish',
                      lambda cls, context, uuid, want_result=True: self.actions.append(('finish',)))
        self.controller = handoff.CloudletHandoffController()
        self.stub_out('api_extensions.handoff.CloudletHandoffController._check_server',
                      lambda controller, context, instance, server_id: None)
        self.rpc = mock.Mock(spec=handoff_rpc.HandoffAPI)
        self.controller._rpcapi = self.rpc
        self.casts = []
        self.cast_error = None
        self.rpc.handoff.side_effect = self.cast
        self.keys = fake_key_manager.FakeKeyManager()
        self.key_manager_api = self.useFixture(
            fixtures.MockPatch('castellan.key_manager.API', return_value=self.keys)).mock

    def save(self, instance, expected_task_state=None):
        self.saves.append((instance.task_state, expected_task_state))

    def cast(self, context, instance, handoff_id, request):
        # As it would go out: serialized now (the message is what must hold no secret).
        self.casts.append({'context': context, 'instance': instance.uuid, 'handoff_id': handoff_id,
                           'request': json.loads(json.dumps(request)),
                           'task_state': instance.task_state})
        if self.cast_error is not None:
            raise self.cast_error

    def handoff(self, request_entity=None):
        req = fakes.HTTPRequest.blank('/servers/%s/action' % SERVER)
        req.environ['nova.context'] = self.context
        return self.controller._handoff(req, SERVER, body={handoff.ACTION: request_entity or entity()})

    def refused(self, request_entity=None):
        return self.assertRaises(exc.HTTPServiceUnavailable, self.handoff, request_entity)

    def assert_secret_nowhere_in_the_cast(self, *secrets):
        cast_args = repr(self.rpc.handoff.call_args_list) + json.dumps(
            [cast['request'] for cast in self.casts])
        for secret in secrets or (SECRET, APP_ID):
            self.assertNotIn(secret, cast_args)

    def assert_unlocked(self):
        self.assertEqual((None, [task_states.MIGRATING]), self.saves[-1])
        self.assertIsNone(self.instance.task_state)

    # -- [cloudlet_handoff] credential_store = key_manager (the default) --

    def test_key_manager_is_the_default(self):
        self.assertEqual(credentials.KEY_MANAGER, CONF.cloudlet_handoff.credential_store)

    def test_the_credential_is_stored_and_the_rpc_gets_its_reference(self):
        sent = entity()
        answer = self.handoff(sent)
        handoff_id = answer['handoff_id']
        [(context, ref)] = self.keys.stored
        self.assertIs(self.context, context)            # the user's own context (their project)
        [cast] = self.casts
        self.assertEqual(dict(entity(), credential={'secret_ref': ref}), cast['request'])
        self.assertEqual((SERVER, handoff_id, task_states.MIGRATING),
                         (cast['instance'], cast['handoff_id'], cast['task_state']))
        self.assertIs(self.context, cast['context'])
        # The key manager holds the credential, named for the handoff; nothing is deleted yet.
        stored = self.keys.objects[ref]
        self.assertEqual(APP_CREDENTIAL, json.loads(stored.get_encoded()))
        self.assertEqual('cloudlet-handoff-%s-credential' % handoff_id, stored.name)
        self.assertEqual([], self.keys.deleted)
        self.assert_secret_nowhere_in_the_cast()
        # The request body is left as it was; the server is busy; the action started.
        self.assertEqual(entity(), sent)
        self.assertEqual([(task_states.MIGRATING, [None])], self.saves)
        self.assertEqual([('start', handoff.INSTANCE_ACTION)], self.actions)

    def test_a_token_is_stored_too(self):
        self.handoff(entity({'token': TOKEN}))
        [cast] = self.casts
        self.assertEqual({'secret_ref'}, set(cast['request']['credential']))
        [managed] = self.keys.objects.values()
        self.assertEqual({'token': TOKEN}, json.loads(managed.get_encoded()))
        self.assert_secret_nowhere_in_the_cast(TOKEN)

    def test_each_handoff_its_own_secret(self):
        self.handoff()
        self.instance.task_state = None
        self.handoff()
        refs = [cast['request']['credential']['secret_ref'] for cast in self.casts]
        self.assertEqual(2, len(set(refs)))
        self.assertEqual(set(refs), set(self.keys.objects))

    def test_store_failure_answers_503_and_unlocks_the_server(self):
        self.keys.error = castellan_exc.KeyManagerError(reason='barbican down, had %s' % SECRET)
        error = self.refused()
        self.assertEqual('the key manager could not keep the destination credential; try again later',
                         error.explanation)
        self.assertNotIn(SECRET, str(error))
        self.assert_unlocked()
        self.assertEqual([(task_states.MIGRATING, [None]), (None, [task_states.MIGRATING])], self.saves)
        self.rpc.handoff.assert_not_called()
        self.assertNotIn(('start', handoff.INSTANCE_ACTION), self.actions)
        self.assertEqual({}, self.keys.objects)

    def test_a_key_manager_that_cannot_be_loaded_answers_503_too(self):
        # nova's default key manager without [key_manager] fixed_key: a ValueError when made.
        self.key_manager_api.side_effect = ValueError('keymgr.fixed_key not defined')
        self.refused()
        self.assert_unlocked()
        self.rpc.handoff.assert_not_called()

    def test_rpc_failure_forgets_the_stored_secret(self):
        self.cast_error = messaging.MessageDeliveryFailure('no broker')
        error = self.refused()
        self.assertIn('could not be sent to the compute host of server %s' % SERVER, error.explanation)
        [cast] = self.casts
        ref = cast['request']['credential']['secret_ref']
        self.assertEqual([(self.context, ref)], self.keys.deleted)
        self.assertEqual({}, self.keys.objects)
        self.assert_unlocked()
        self.assertEqual([('start', handoff.INSTANCE_ACTION), ('finish',)], self.actions)

    def test_action_start_failure_forgets_the_stored_secret(self):
        self.stub_out('nova.objects.InstanceAction.action_start',
                      mock.Mock(side_effect=exception.InstanceNotFound(instance_id=SERVER)))
        self.refused()
        self.rpc.handoff.assert_not_called()
        [(_, ref)] = self.keys.stored
        self.assertEqual([(self.context, ref)], self.keys.deleted)
        self.assert_unlocked()

    def test_rpc_failure_with_a_key_manager_that_cannot_delete_still_answers_503(self):
        self.cast_error = messaging.MessageDeliveryFailure('no broker')
        self.useFixture(fixtures.MockPatchObject(
            self.keys, 'delete', side_effect=castellan_exc.KeyManagerError(reason='down')))
        self.refused()
        self.assert_unlocked()
        self.assertEqual(1, len(self.keys.objects))       # left behind: logged, nothing more to do

    # -- [cloudlet_handoff] credential_store = rpc_message --

    def test_rpc_message_mode_sends_the_credential_in_the_message(self):
        self.flags(credential_store=credentials.RPC_MESSAGE, group='cloudlet_handoff')
        handoff_id = self.handoff()['handoff_id']
        [cast] = self.casts
        self.assertEqual(entity(), cast['request'])
        self.assertEqual(handoff_id, cast['handoff_id'])
        self.assertEqual([], self.keys.contexts)           # the key manager is not used

    def test_rpc_message_mode_rpc_failure_touches_no_key_manager(self):
        self.flags(credential_store=credentials.RPC_MESSAGE, group='cloudlet_handoff')
        self.cast_error = messaging.MessageDeliveryFailure('no broker')
        self.refused()
        self.assertEqual([], self.keys.contexts)
        self.assert_unlocked()
