"""The receiving end of a handoff in this cloud's compute API (doc/handoff.md, "Flow").

    GET /servers/{server_id}/cloudlet-residue    is the destination ready?
    PUT /servers/{server_id}/cloudlet-residue    the residue, streamed (chunked)

Both need the header `X-Cloudlet-Handoff-Id`, equal to the server's
`cloudlet_handoff_id` metadata (the source cloud created the server with
it), and the policy `cloudlet:handoff:receive` (default: the server's
project member, or admin). The source cloud calls them with the user's
credential for this cloud: what crosses the WAN goes through this
authenticated endpoint only, never to a compute host's port.

nova-api relays the body to the server's compute host, where the spawn
applies it as it arrives (cloudlet_nova.handoff.inbox), in `residue_data`
RPC calls on topic `cloudlet`: a reader takes the body's chunks as they come
and one relay thread sends whatever has gathered meanwhile (up to
RELAY_BYTES) in each call, so the calls batch at high rates and the last
bytes, after the source VM paused, leave at once. The compute host's inbox
paces the relay (a call returns once its bytes are buffered there), and the
relay paces the body.

The body is read with uwsgi's chunked-input API under uwsgi (nova-api needs
`http-chunked-input`, as Glance does for uploads), else from wsgi.input.
Answers: GET 200 {"residue": {"state", "bytes_received", "reason"}}; PUT 204
once the compute host has the last byte; 400 bad header or a body that broke
off, 403 policy, 404 server, 409 not a handoff destination of that id or the
destination gave the residue up (the reason in the message), 503 the compute
host did not answer in time (ask again).
"""

import collections
import threading
import time

from oslo_log import log as logging
import oslo_messaging as messaging
import webob
import webob.dec
from webob import exc

from nova.compute import api as compute
from nova.compute import vm_states
from nova import exception

from cloudlet_glance import properties
from cloudlet_nova.handoff import inbox as inbox_mod
from cloudlet_nova.handoff import remote
from cloudlet_nova.handoff import rpc as handoff_rpc

from api_extensions import policies
from api_extensions import policy

try:        # the chunked request body API of uwsgi, inside uwsgi only
    import uwsgi
except ImportError:
    uwsgi = None

LOG = logging.getLogger(__name__)

PATH = '/servers/{server_id}/cloudlet-residue'
READ_BYTES = 256 << 10
READ_TIMEOUT = 120           # seconds a body may stay silent (the source's own stall limit is lower)
WAIT_POLL_SECONDS = 0.2      # while the destination's spawn is not ready yet
WAIT_READY_SECONDS = 900     # a body that waits longer for the spawn is refused
HOLD_BYTES = 32 << 20        # of a body, held here while the spawn gets ready


def body_chunks(environ):
    """The request body's chunks as they arrive; IOError when it breaks off."""
    if uwsgi is not None and 'chunked' in environ.get('HTTP_TRANSFER_ENCODING', '').lower():
        while True:
            data = uwsgi.chunked_read(READ_TIMEOUT)
            if not data:
                return
            yield data
    stream = environ['wsgi.input']
    length = environ.get('CONTENT_LENGTH')
    remaining = int(length) if length else None
    while remaining is None or remaining > 0:
        data = stream.read(READ_BYTES if remaining is None else min(READ_BYTES, remaining))
        if not data:
            if remaining:
                raise IOError('the body ended %d bytes early' % remaining)
            return
        if remaining is not None:
            remaining -= len(data)
        yield data


class _Relay:
    """One PUT's relay thread: batches of the body into `residue_data` calls.

    Up to HOLD_BYTES of the body wait here: the source sends its disk
    pre-copy while the destination's compute host still fetches the base.
    """

    def __init__(self, send):
        self._send = send
        self._cond = threading.Condition()
        self._pieces = collections.deque()
        self._held = 0
        self._ended = False
        self.error = None
        self.offset = 0
        self._thread = threading.Thread(target=self._run, name='cloudlet-residue-relay', daemon=True)
        self._thread.start()

    def put(self, data):
        with self._cond:
            while self.error is None and self._held and self._held + len(data) > HOLD_BYTES:
                self._cond.wait(1.0)
            if self.error is not None:
                raise self.error
            self._pieces.append(data)
            self._held += len(data)
            self._cond.notify_all()

    def finish(self):
        """Send the end and wait for the compute host to take it; the relay's error, if any."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        self._thread.join()
        return self.error

    def abandon(self):
        with self._cond:
            self.error = self.error or IOError('abandoned')
            self._cond.notify_all()

    def _take(self):
        """What gathered meanwhile (at most RELAY_BYTES), and whether the body ended with it."""
        with self._cond:
            while not self._pieces and not self._ended and self.error is None:
                self._cond.wait(1.0)
            if self.error is not None:
                return None, False
            batch, size = [], 0
            while self._pieces and size + len(self._pieces[0]) <= handoff_rpc.RELAY_BYTES:
                batch.append(self._pieces.popleft())
                size += len(batch[-1])
            if not batch and self._pieces:      # a piece larger than a call: split it
                piece = self._pieces.popleft()
                batch.append(piece[:handoff_rpc.RELAY_BYTES])
                self._pieces.appendleft(piece[handoff_rpc.RELAY_BYTES:])
                size = len(batch[0])
            self._held -= size
            self._cond.notify_all()
            return b''.join(batch), self._ended and not self._pieces

    def _run(self):
        try:
            while True:
                data, end = self._take()
                if data is None:
                    return
                self._send(self.offset, data, end)
                self.offset += len(data)
                if end:
                    return
        except Exception as error:   # noqa: BLE001 - reported to the request thread
            with self._cond:
                self.error = error
                self._cond.notify_all()


class CloudletResidueApp(handoff_rpc.RPCClientUser):
    """The WSGI application of PATH (api_extensions.router routes both methods here)."""

    def __init__(self):
        self.compute_api = compute.API()

    @webob.dec.wsgify
    def __call__(self, req):
        try:
            if req.method == 'GET':
                return self._status(req)
            if req.method == 'PUT':
                return self._receive(req)
            raise exc.HTTPMethodNotAllowed(allow=['GET', 'PUT'])
        except exception.Forbidden as error:
            return _fault(exc.HTTPForbidden, error.format_message())
        except exc.HTTPException as error:
            return _fault(type(error), error.explanation or error.title)

    # -- the checks --

    def _instance(self, req):
        context = req.environ['nova.context']
        server_id = req.environ['wsgiorg.routing_args'][1]['server_id']
        handoff_id = req.headers.get(remote.RESIDUE_HEADER)
        if not handoff_id:
            raise exc.HTTPBadRequest(explanation='the %s header is required' % remote.RESIDUE_HEADER)
        try:
            instance = self.compute_api.get(context, server_id, expected_attrs=['metadata'])
        except exception.InstanceNotFound as error:
            raise exc.HTTPNotFound(explanation=error.format_message())
        policy.authorize(context, policies.HANDOFF_RECEIVE, {'project_id': instance.project_id,
                                                             'user_id': instance.user_id})
        if (instance.metadata or {}).get(properties.HANDOFF_ID) != handoff_id:
            raise exc.HTTPConflict(explanation='server %s is not the destination of handoff %s'
                                               % (server_id, handoff_id))
        return context, instance, handoff_id

    @staticmethod
    def _build_failed(instance):
        if instance.vm_state == vm_states.ERROR:
            fault = getattr(instance, 'fault', None)
            raise exc.HTTPConflict(explanation='server %s failed to build: %s'
                                               % (instance.uuid, fault.message if fault else 'no fault'))
        if instance.vm_state != vm_states.BUILDING:
            raise exc.HTTPConflict(explanation='server %s is %s: it no longer takes a residue'
                                               % (instance.uuid, instance.vm_state))

    def _refresh(self, context, instance):
        instance = self.compute_api.get(context, instance.uuid, expected_attrs=['metadata'])
        self._build_failed(instance)
        return instance

    def _remote_error(self, error):
        if isinstance(error, messaging.RemoteError) and error.exc_type == inbox_mod.InboxError.__name__:
            return exc.HTTPConflict(explanation=error.value)
        if isinstance(error, messaging.MessagingTimeout):     # worth asking again
            return exc.HTTPServiceUnavailable(explanation='the destination compute host did not answer '
                                                          'in time')
        return exc.HTTPConflict(explanation='the destination compute host failed: %s'
                                            % type(error).__name__)

    # -- GET --

    def _status(self, req):
        context, instance, handoff_id = self._instance(req)
        self._build_failed(instance)
        if not instance.host:
            status = {'state': inbox_mod.WAITING, 'bytes_received': 0, 'reason': None}
        else:
            try:
                status = self.rpcapi.residue_status(context, instance, handoff_id)
            except Exception as error:   # noqa: BLE001 - answered as a conflict
                raise self._remote_error(error)
        return webob.Response(json_body={'residue': status}, status=200)

    # -- PUT --

    def _receive(self, req):
        context, instance, handoff_id = self._instance(req)
        state = {'instance': instance, 'waited': 0.0}

        def send(offset, data, end):
            while True:
                if state['instance'].host:
                    answer = self.rpcapi.residue_data(context, state['instance'], handoff_id,
                                                      offset, data, end)
                    if answer.get('state') != inbox_mod.WAITING:
                        return
                if state['waited'] > WAIT_READY_SECONDS:
                    raise exc.HTTPConflict(explanation='server %s was not ready for the residue after '
                                                       '%d s' % (instance.uuid, WAIT_READY_SECONDS))
                time.sleep(WAIT_POLL_SECONDS)
                state['waited'] += WAIT_POLL_SECONDS
                state['instance'] = self._refresh(context, state['instance'])

        relay = _Relay(send)
        started, received = time.monotonic(), 0
        try:
            for data in body_chunks(req.environ):
                received += len(data)
                relay.put(data)
        except IOError as error:
            relay.abandon()
            reason = 'the residue upload broke off after %d bytes (%s)' % (received, error)
            self._abort(context, state['instance'], handoff_id, reason)
            raise exc.HTTPBadRequest(explanation=reason)
        except Exception:
            relay.abandon()
            raise self._relay_failure(context, state['instance'], handoff_id, relay.finish())
        error = relay.finish()
        if error is not None:
            raise self._relay_failure(context, state['instance'], handoff_id, error)
        LOG.info('handoff %s: %d residue bytes relayed to %s in %.1f s', handoff_id, received,
                 state['instance'].host, time.monotonic() - started)
        return webob.Response(status=204)

    def _relay_failure(self, context, instance, handoff_id, error):
        failure = error if isinstance(error, exc.HTTPException) else self._remote_error(error)
        self._abort(context, instance, handoff_id, failure.explanation)
        return failure

    def _abort(self, context, instance, handoff_id, reason):
        if not instance.host:
            return
        try:
            self.rpcapi.residue_abort(context, instance, handoff_id, reason)
        except Exception:   # noqa: BLE001 - the spawn's own idle timeout ends it then
            LOG.warning('handoff %s: could not tell %s the residue broke off', handoff_id, instance.host)


def _fault(http_error, message):
    """nova's fault body shape: {"<name>": {"code", "message"}}."""
    error = http_error()
    name = {400: 'badRequest', 403: 'forbidden', 404: 'itemNotFound', 405: 'badMethod',
            409: 'conflictingRequest', 503: 'serviceUnavailable'}.get(error.code, 'computeFault')
    return webob.Response(json_body={name: {'code': error.code, 'message': message}},
                          status=error.code)
