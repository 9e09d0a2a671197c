"""The `cloudlet` RPC topic: nova-api casts `handoff` to the compute host of an
instance (the source of a handoff), and relays a residue to the compute host
of the destination server (its inbox, cloudlet_nova.handoff.inbox).

nova has no hook for custom compute RPC methods (the compute manager class
is hard-coded in nova/service.py and its RPC endpoints are fixed),
so CloudletDriver.init_host starts its own oslo.messaging server on topic
`cloudlet`, server = the compute host, on nova's transport, and cleanup_host
stops it. Messages carry a nova RequestContext and nova objects, serialized
as nova's own compute RPC does (RequestContextSerializer around
NovaObjectSerializer, inside nova.rpc). The client routes through
`nova.rpc.ClientRouter`, so a context targeted at a cell uses that cell's
message queue.

Versions: 1.0 - handoff(instance, handoff_id, request)
          1.1 - residue_status(instance, handoff_id),
                residue_data(instance, handoff_id, offset, data, end): data in base64
                (messages are JSON), up to RELAY_BYTES decoded,
                residue_abort(instance, handoff_id, reason)
          1.2 - prepare_migration(instance): the destination of a cold migration
                fetches the instance's base (cloudlet_nova/virt/cold_migration.py)

The request holds the destination credential: it travels in this message
only; nothing here logs message arguments.
"""

import base64

from oslo_log import log as logging
import oslo_messaging as messaging

from nova.objects import base as objects_base
from nova import rpc
from nova import thread_pool_factory

from cloudlet_nova.handoff import inbox as inbox_mod

LOG = logging.getLogger(__name__)

TOPIC = 'cloudlet'
VERSION = '1.2'
RELAY_BYTES = 1 << 20
# Below nova's rpc_response_timeout (60 s): a full inbox answers before the call times out.
RECEIVE_WAIT_SECONDS = 30.0


class HandoffAPI:
    """Client side (nova-api): cast `handoff` to the instance's compute host."""

    def __init__(self):
        target = messaging.Target(topic=TOPIC, version=VERSION)
        default_client = rpc.get_client(target, version_cap=VERSION,
                                        serializer=objects_base.NovaObjectSerializer())
        self.router = rpc.ClientRouter(default_client)

    def handoff(self, context, instance, handoff_id, request):
        client = self.router.client(context).prepare(server=instance.host, version='1.0')
        client.cast(context, 'handoff', instance=instance, handoff_id=handoff_id, request=request)

    def _residue_client(self, context, instance, timeout=None):
        return self.router.client(context).prepare(server=instance.host, version='1.1',
                                                   **({'timeout': timeout} if timeout else {}))

    def residue_status(self, context, instance, handoff_id):
        """The destination inbox's status: {'state', 'bytes_received', 'reason'}."""
        return self._residue_client(context, instance).call(
            context, 'residue_status', instance=instance, handoff_id=handoff_id)

    def residue_data(self, context, instance, handoff_id, offset, data, end=False):
        """Relay residue bytes at `offset`; the inbox's status (state 'waiting': not taken)."""
        return self._residue_client(context, instance, timeout=RECEIVE_WAIT_SECONDS * 2).call(
            context, 'residue_data', instance=instance, handoff_id=handoff_id, offset=offset,
            data=base64.b64encode(data).decode('ascii'), end=end)

    def residue_abort(self, context, instance, handoff_id, reason):
        self._residue_client(context, instance).cast(
            context, 'residue_abort', instance=instance, handoff_id=handoff_id, reason=reason)

    def prepare_migration(self, context, instance, host, timeout):
        """Ask compute host `host` to hold the instance's base before a cold migration to it
        (a RemoteError naming the reason when it cannot).
        """
        self.router.client(context).prepare(server=host, version='1.2', timeout=timeout).call(
            context, 'prepare_migration', instance=instance)


class RPCClientUser:
    """For nova-api's controllers: `self.rpcapi`, the HandoffAPI made on first use
    (after nova.rpc.init(), which runs before any request).
    """

    _rpcapi = None

    @property
    def rpcapi(self):
        if self._rpcapi is None:
            self._rpcapi = HandoffAPI()
        return self._rpcapi


class HandoffEndpoint:
    """Server side (nova-compute): each handoff runs in nova's long-task thread pool.

    `runner(context, instance, handoff_id, request)` does the work and
    handles its own errors; the RPC worker returns at once, as nova's
    snapshot_instance does.
    """

    target = messaging.Target(version=VERSION)

    def __init__(self, runner, inboxes=None, prepare_migration=None):
        self._runner = runner
        self._inboxes = inboxes
        self._prepare_migration = prepare_migration

    def handoff(self, context, instance, handoff_id, request):
        LOG.info('handoff %s requested', handoff_id, instance=instance)
        thread_pool_factory.spawn_on(thread_pool_factory.ExecutorType.LONG_TASK, self._runner,
                                     context, instance, handoff_id, request)

    # The receiving side: InboxError (a CloudletError) reaches the caller as a
    # RemoteError naming it; the relay turns it into the API's 409.

    def residue_status(self, context, instance, handoff_id):
        return self._inboxes.status(handoff_id)

    def residue_data(self, context, instance, handoff_id, offset, data, end):
        if len(data) > RELAY_BYTES * 4 // 3 + 4:
            raise inbox_mod.InboxError('residue piece of %d base64 characters: at most %d bytes a call'
                                       % (len(data), RELAY_BYTES))
        return self._inboxes.receive(handoff_id, offset, base64.b64decode(data), end,
                                     timeout=RECEIVE_WAIT_SECONDS)

    def residue_abort(self, context, instance, handoff_id, reason):
        LOG.warning('handoff %s: the residue relay gave up: %s', handoff_id, reason, instance=instance)
        self._inboxes.abort(handoff_id, reason)

    def prepare_migration(self, context, instance):
        self._prepare_migration(context, instance)


class HandoffServer:
    """The RPC server of one compute host on topic `cloudlet`."""

    def __init__(self, host, endpoint):
        self.host = host
        target = messaging.Target(topic=TOPIC, server=host)
        self._server = rpc.get_server(target, [endpoint], objects_base.NovaObjectSerializer())

    def start(self):
        self._server.start()
        LOG.info('cloudlet RPC server listening on topic %s, server %s', TOPIC, self.host)

    def stop(self):
        try:
            self._server.stop()
            self._server.wait()
        except Exception:   # noqa: BLE001 - stopping the service matters more
            LOG.warning('cloudlet RPC server on %s did not stop cleanly', self.host, exc_info=True)
