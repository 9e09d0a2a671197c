"""api_extensions.residue: the destination of a handoff in the compute API (GET, PUT
/servers/{server_id}/cloudlet-residue) with nova's fake instances, the cloudlet
policy, and the compute host's RPC (residue_status, residue_data, residue_abort) mocked."""

import io
import threading
import time
from unittest import mock

import oslo_messaging as messaging
import pytest
import webob

from nova.compute import vm_states
from nova import context as nova_context
from nova import exception
from nova import objects
from nova import test
from nova.tests.unit import fake_instance

from cloudlet_glance import properties as props
from cloudlet_nova.handoff import inbox as inbox_mod
from cloudlet_nova.handoff import remote
from cloudlet_nova.handoff import rpc as handoff_rpc

from api_extensions import policies
from api_extensions import policy
from api_extensions import residue

PROJECT, OTHER = 'p' * 32, 'o' * 32
SERVER = 'c1a0d1e7-0000-4000-8000-0000000000aa'
HANDOFF_ID = 'h-1'
HOST = 'compute-1'


def ctx(roles=('reader', 'member'), project=PROJECT):
    return nova_context.RequestContext('user', project, roles=list(roles), is_admin='admin' in roles)


def remote_error(exc_type, message):
    """What the RPC client raises for an exception of the compute host outside nova.exception."""
    return messaging.RemoteError(exc_type, message, 'Traceback (most recent call last): ...')


class ResidueAppTest(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        policy.reset()
        self.addCleanup(policy.reset)
        self.context = ctx()
        self.instance = self.fake_instance()
        self.app = residue.CloudletResidueApp()
        self.rpc = mock.Mock(spec=handoff_rpc.HandoffAPI)
        self.app._rpcapi = self.rpc
        self.rpc.residue_data.side_effect = self.take
        self.rpc.residue_status.return_value = {'state': inbox_mod.READY, 'bytes_received': 0,
                                                'reason': None}
        self.data_calls = []
        self.get = self.stub_compute_get(self.instance)
        self.stub_out('api_extensions.residue.WAIT_POLL_SECONDS', 0.001)

    # -- fakes --

    def fake_instance(self, host=HOST, vm_state=vm_states.BUILDING, handoff_id=HANDOFF_ID, fault=None):
        metadata = {props.HANDOFF_ID: handoff_id} if handoff_id else {}
        instance = fake_instance.fake_instance_obj(
            self.context, uuid=SERVER, project_id=PROJECT, user_id='user', host=host,
            vm_state=vm_state, metadata=metadata, expected_attrs=['metadata'])
        instance.fault = fault
        return instance

    def stub_compute_get(self, *answers):
        """compute API get(): the answers in turn (the request's lookup, then the refreshes
        while the server is not ready), the last one again and again.
        """
        answers = list(answers)

        def get(context, server_id, expected_attrs=None):
            self.assertEqual((SERVER, ['metadata']), (server_id, expected_attrs))
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            if isinstance(answer, Exception):
                raise answer
            return answer

        self.app.compute_api.get = mock.Mock(side_effect=get)
        return self.app.compute_api.get

    def take(self, context, instance, handoff_id, offset, data, end=False):
        """The compute host's inbox: takes everything."""
        self.data_calls.append((instance.host, handoff_id, offset, bytes(data), end))
        return {'state': inbox_mod.RECEIVED if end else inbox_mod.RECEIVING,
                'bytes_received': offset + len(data), 'reason': None}

    # -- requests --

    def request(self, method, body=None, handoff_id=HANDOFF_ID, context=None):
        headers = {remote.RESIDUE_HEADER: handoff_id} if handoff_id else {}
        req = webob.Request.blank('/v2.1/servers/%s/cloudlet-residue' % SERVER, method=method,
                                  headers=headers)
        if body is not None:
            req.body = body
            req.content_type = 'application/octet-stream'
        req.environ['nova.context'] = context or self.context
        req.environ['wsgiorg.routing_args'] = ((), {'server_id': SERVER, 'action': 'x'})
        response = req.get_response(self.app)
        return response.status_int, response.json_body if response.body else None

    def assertFault(self, code, name, message, answer):
        self.assertEqual((code, {name: {'code': code, 'message': message}}), answer)

    # -- the checks, both methods --

    def test_the_handoff_header_is_required(self):
        for method in ('GET', 'PUT'):
            self.assertFault(400, 'badRequest', 'the X-Cloudlet-Handoff-Id header is required',
                             self.request(method, b'', handoff_id=None))
        self.get.assert_not_called()
        self.assertEqual([], self.rpc.mock_calls)

    def test_unknown_server(self):
        self.get = self.stub_compute_get(exception.InstanceNotFound(instance_id=SERVER))
        for method in ('GET', 'PUT'):
            self.assertFault(404, 'itemNotFound', 'Instance %s could not be found.' % SERVER,
                             self.request(method, b'x'))
        self.get.assert_called_with(self.context, SERVER, expected_attrs=['metadata'])
        self.assertEqual([], self.rpc.mock_calls)

    def test_policy(self):
        for context in (ctx(['reader']), ctx(['member'], project=OTHER), ctx([])):
            for method in ('GET', 'PUT'):
                code, body = self.request(method, b'x', context=context)
                self.assertEqual(403, code)
                self.assertIn('cloudlet:handoff:receive', body['forbidden']['message'])
        self.assertEqual([], self.rpc.mock_calls)
        # The project's member and an admin are the defaults.
        self.assertEqual(200, self.request('GET', context=ctx(['admin'], project=OTHER))[0])
        policy.set_rules({policies.HANDOFF_RECEIVE: 'role:admin'})
        self.assertEqual(403, self.request('GET')[0])

    def test_not_the_destination_of_that_handoff(self):
        for instance in (self.fake_instance(handoff_id='h-other'), self.fake_instance(handoff_id=None)):
            self.stub_compute_get(instance)
            for method in ('GET', 'PUT'):
                self.assertFault(409, 'conflictingRequest',
                                 'server %s is not the destination of handoff h-1' % SERVER,
                                 self.request(method, b'x'))
        self.assertEqual([], self.rpc.mock_calls)

    def test_other_methods(self):
        code, body = self.request('POST', b'x')
        self.assertEqual(405, code)
        self.assertEqual(405, body['badMethod']['code'])

    # -- GET --

    def test_get_waiting_while_the_server_has_no_host(self):
        self.stub_compute_get(self.fake_instance(host=None))
        self.assertEqual((200, {'residue': {'state': 'waiting', 'bytes_received': 0, 'reason': None}}),
                         self.request('GET'))
        self.rpc.residue_status.assert_not_called()

    def test_get_asks_the_compute_host(self):
        status = {'state': 'receiving', 'bytes_received': 4096, 'reason': None}
        self.rpc.residue_status.return_value = status
        self.assertEqual((200, {'residue': status}), self.request('GET'))
        self.rpc.residue_status.assert_called_once_with(self.context, self.instance, HANDOFF_ID)

    def test_get_of_a_failed_build(self):
        fault = objects.InstanceFault(message='No valid host was found.')
        self.stub_compute_get(self.fake_instance(vm_state=vm_states.ERROR, fault=fault))
        self.assertFault(409, 'conflictingRequest',
                         'server %s failed to build: No valid host was found.' % SERVER,
                         self.request('GET'))
        self.stub_compute_get(self.fake_instance(vm_state=vm_states.ACTIVE))
        self.assertFault(409, 'conflictingRequest',
                         'server %s is active: it no longer takes a residue' % SERVER, self.request('GET'))
        self.rpc.residue_status.assert_not_called()

    def test_get_when_the_compute_host_fails(self):
        self.rpc.residue_status.side_effect = remote_error('InboxError', 'handoff h-1 already has an inbox')
        self.assertFault(409, 'conflictingRequest', 'handoff h-1 already has an inbox', self.request('GET'))
        self.rpc.residue_status.side_effect = messaging.MessagingTimeout('no answer')
        self.assertFault(503, 'serviceUnavailable', 'the destination compute host did not answer in time',
                         self.request('GET'))
        self.rpc.residue_status.side_effect = remote_error('KeyError', "'x'")
        self.assertFault(409, 'conflictingRequest', 'the destination compute host failed: RemoteError',
                         self.request('GET'))

    # -- PUT --

    def assertRelayed(self, body):
        """The body, in order, at consecutive offsets, in calls of at most RELAY_BYTES; the last ends it."""
        offset = 0
        for host, handoff_id, at, data, end in self.data_calls:
            self.assertEqual((HOST, HANDOFF_ID, offset), (host, handoff_id, at))
            self.assertLessEqual(len(data), handoff_rpc.RELAY_BYTES)
            offset += len(data)
        self.assertEqual(body, b''.join(call[3] for call in self.data_calls))
        self.assertEqual([False] * (len(self.data_calls) - 1) + [True], [call[4] for call in self.data_calls])

    def test_put_relays_the_body_in_order(self):
        self.stub_out('api_extensions.residue.READ_BYTES', 5)
        self.stub_out('cloudlet_nova.handoff.rpc.RELAY_BYTES', 8)
        body = bytes(range(256)) * 3
        self.assertEqual((204, None), self.request('PUT', body))
        self.assertRelayed(body)
        self.assertGreater(len(self.data_calls), len(body) // 8)
        self.rpc.residue_abort.assert_not_called()

    def test_put_splits_pieces_larger_than_a_call(self):
        self.stub_out('api_extensions.residue.READ_BYTES', 20)
        self.stub_out('cloudlet_nova.handoff.rpc.RELAY_BYTES', 8)
        body = b'0123456789' * 5
        self.assertEqual((204, None), self.request('PUT', body))
        self.assertRelayed(body)

    def test_put_of_an_empty_body_still_ends_the_residue(self):
        self.assertEqual((204, None), self.request('PUT', b''))
        self.assertEqual([(HOST, HANDOFF_ID, 0, b'', True)], self.data_calls)

    def test_put_retries_while_the_compute_host_is_waiting(self):
        answers = [{'state': inbox_mod.WAITING, 'bytes_received': 0, 'reason': None}] * 2

        def waiting_first(context, instance, handoff_id, offset, data, end=False):
            if answers:
                self.data_calls.append(('waiting', handoff_id, offset, bytes(data), end))
                return answers.pop(0)
            return self.take(context, instance, handoff_id, offset, data, end)

        self.rpc.residue_data.side_effect = waiting_first
        self.assertEqual((204, None), self.request('PUT', b'residue'))
        waited = [call for call in self.data_calls if call[0] == 'waiting']
        self.assertEqual(2, len(waited))
        self.assertEqual(3, self.get.call_count)     # the lookup, a refresh after each 'waiting'
        # The same piece again, at the same offset, until it is taken.
        self.assertEqual({(HANDOFF_ID, 0, waited[0][3])}, {call[1:4] for call in waited})
        self.data_calls = [call for call in self.data_calls if call[0] != 'waiting']
        self.assertRelayed(b'residue')

    def test_put_waits_for_the_server_to_get_a_host(self):
        get = self.stub_compute_get(self.fake_instance(host=None), self.fake_instance(host=None),
                                    self.fake_instance(host=None), self.instance)
        self.assertEqual((204, None), self.request('PUT', b'residue'))
        self.assertRelayed(b'residue')
        self.assertEqual(4, get.call_count)

    def test_put_fails_when_the_build_fails_meanwhile(self):
        self.rpc.residue_data.side_effect = None
        self.rpc.residue_data.return_value = {'state': inbox_mod.WAITING, 'bytes_received': 0,
                                              'reason': None}
        fault = objects.InstanceFault(message='Build of instance aborted: base image too large')
        self.stub_compute_get(self.instance, self.instance,
                              self.fake_instance(vm_state=vm_states.ERROR, fault=fault))
        message = 'server %s failed to build: Build of instance aborted: base image too large' % SERVER
        self.assertFault(409, 'conflictingRequest', message, self.request('PUT', b'residue'))
        self.rpc.residue_abort.assert_called_once_with(self.context, self.instance, HANDOFF_ID, message)

    def test_put_fails_when_the_build_fails_before_a_host(self):
        self.stub_compute_get(self.fake_instance(host=None),
                              self.fake_instance(host=None, vm_state=vm_states.ERROR))
        self.assertFault(409, 'conflictingRequest', 'server %s failed to build: no fault' % SERVER,
                         self.request('PUT', b'residue'))
        self.rpc.residue_data.assert_not_called()
        self.rpc.residue_abort.assert_not_called()       # no compute host to tell

    def test_put_gives_up_waiting_for_the_server(self):
        self.stub_out('api_extensions.residue.WAIT_READY_SECONDS', 0.01)
        self.stub_out('api_extensions.residue.WAIT_POLL_SECONDS', 0.004)
        self.stub_compute_get(self.fake_instance(host=None))
        self.assertFault(409, 'conflictingRequest',
                         'server %s was not ready for the residue after 0 s' % SERVER,
                         self.request('PUT', b'residue'))

    def test_put_refused_by_the_inbox(self):
        self.stub_out('api_extensions.residue.READ_BYTES', 4)
        self.stub_out('cloudlet_nova.handoff.rpc.RELAY_BYTES', 4)
        message = 'the destination gave up the residue: overlay is corrupt: bad record 3'

        def refuse_the_second(context, instance, handoff_id, offset, data, end=False):
            if offset:
                raise remote_error('InboxError', message)
            return self.take(context, instance, handoff_id, offset, data, end)

        self.rpc.residue_data.side_effect = refuse_the_second
        self.assertFault(409, 'conflictingRequest', message, self.request('PUT', b'residue bytes'))
        self.rpc.residue_abort.assert_called_once_with(self.context, self.instance, HANDOFF_ID, message)

    def test_put_when_the_compute_host_does_not_answer(self):
        self.rpc.residue_data.side_effect = messaging.MessagingTimeout('timed out')
        message = 'the destination compute host did not answer in time'
        self.assertFault(503, 'serviceUnavailable', message, self.request('PUT', b'residue'))
        self.rpc.residue_abort.assert_called_once_with(self.context, self.instance, HANDOFF_ID, message)

    def test_a_failing_abort_still_answers(self):
        self.rpc.residue_data.side_effect = remote_error('InboxError', 'residue piece at offset 0, expected 9')
        self.rpc.residue_abort.side_effect = messaging.MessagingTimeout('gone')
        self.assertFault(409, 'conflictingRequest', 'residue piece at offset 0, expected 9',
                         self.request('PUT', b'residue'))

    def test_a_body_that_breaks_off(self):
        req = webob.Request.blank('/servers/%s/cloudlet-residue' % SERVER, method='PUT',
                                  headers={remote.RESIDUE_HEADER: HANDOFF_ID})
        req.environ.update({'nova.context': self.context, 'wsgi.input': io.BytesIO(b'residue'),
                            'CONTENT_LENGTH': '100',
                            'wsgiorg.routing_args': ((), {'server_id': SERVER})})
        response = req.get_response(self.app)
        message = 'the residue upload broke off after 7 bytes (the body ended 93 bytes early)'
        self.assertEqual((400, {'badRequest': {'code': 400, 'message': message}}),
                         (response.status_int, response.json_body))
        self.rpc.residue_abort.assert_called_once_with(self.context, self.instance, HANDOFF_ID, message)
        self.assertFalse(any(call[4] for call in self.data_calls))     # never ended


# -- the body and the relay, on their own ------------------------------------------


def test_body_chunks_with_a_length():
    environ = {'wsgi.input': io.BytesIO(b'abcdefghij-and-more'), 'CONTENT_LENGTH': '10'}
    with mock.patch.object(residue, 'READ_BYTES', 4):
        assert list(residue.body_chunks(environ)) == [b'abcd', b'efgh', b'ij']


def test_body_chunks_without_a_length_read_to_the_end():
    with mock.patch.object(residue, 'READ_BYTES', 4):
        assert list(residue.body_chunks({'wsgi.input': io.BytesIO(b'abcdefghij')})) == [
            b'abcd', b'efgh', b'ij']


def test_body_chunks_that_end_early():
    chunks = residue.body_chunks({'wsgi.input': io.BytesIO(b'abc'), 'CONTENT_LENGTH': '5'})
    assert next(chunks) == b'abc'
    with pytest.raises(IOError, match='the body ended 2 bytes early'):
        next(chunks)


def test_body_chunks_under_uwsgi():
    reads = [b'resi', b'due', b'']
    fake_uwsgi = mock.Mock(chunked_read=mock.Mock(side_effect=lambda timeout: reads.pop(0)))
    with mock.patch.object(residue, 'uwsgi', fake_uwsgi):
        environ = {'HTTP_TRANSFER_ENCODING': 'chunked', 'wsgi.input': None}
        assert list(residue.body_chunks(environ)) == [b'resi', b'due']
        fake_uwsgi.chunked_read.assert_called_with(residue.READ_TIMEOUT)
        # Not chunked: wsgi.input, under uwsgi too.
        assert list(residue.body_chunks({'wsgi.input': io.BytesIO(b'x'), 'CONTENT_LENGTH': '1'})) == [b'x']


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.001)


def test_relay_batches_what_gathered_during_a_call():
    calls, in_call, release = [], threading.Event(), threading.Event()

    def send(offset, data, end):
        calls.append((offset, data, end))
        in_call.set()
        assert release.wait(10)

    relay = residue._Relay(send)
    relay.put(b'a')
    assert in_call.wait(10)
    for piece in (b'bb', b'ccc', b'dddd'):
        relay.put(piece)
    finisher = threading.Thread(target=relay.finish)
    finisher.start()
    wait_until(lambda: relay._ended)
    release.set()
    finisher.join(10)
    assert relay.finish() is None
    assert calls == [(0, b'a', False), (1, b'bbcccdddd', True)]


def test_relay_holds_at_most_hold_bytes():
    release = threading.Event()
    calls = []

    def send(offset, data, end):
        calls.append((offset, data, end))
        assert release.wait(10)

    with mock.patch.object(residue, 'HOLD_BYTES', 4):
        relay = residue._Relay(send)
        relay.put(b'ab')
        wait_until(lambda: calls)           # taken: the relay holds nothing
        relay.put(b'cd')
        relay.put(b'ef')                    # 4 held: the next put waits
        putter = threading.Thread(target=relay.put, args=(b'g',))
        putter.start()
        putter.join(0.2)
        assert putter.is_alive()
        release.set()
        putter.join(10)
        assert not putter.is_alive()
        assert relay.finish() is None
    assert b''.join(call[1] for call in calls) == b'abcdefg'


def test_relay_error_reaches_the_reader():
    error = remote_error('InboxError', 'no')

    def send(offset, data, end):
        raise error

    relay = residue._Relay(send)
    relay.put(b'a')
    wait_until(lambda: relay.error is not None)
    with pytest.raises(messaging.RemoteError):
        relay.put(b'b')
    assert relay.finish() is error
