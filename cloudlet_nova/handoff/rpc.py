"""The `cloudlet` RPC topic: nova-api casts `handoff` to the compute host of an instance.

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

The request holds the destination credential: it travels in this message
only; nothing here logs message arguments.
"""

from oslo_log import log as logging
import oslo_messaging as messaging

from nova.objects import base as objects_base
from nova import rpc
from nova import thread_pool_factory

LOG = logging.getLogger(__name__)

TOPIC = 'cloudlet'
VERSION = '1.0'


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


class HandoffEndpoint:
    """Server side (nova-compute): each handoff runs in nova's long-task thread pool.

    `runner(context, instance, handoff_id, request)` does the work and
    handles its own errors; the RPC worker returns at once, as nova's
    snapshot_instance does.
    """

    target = messaging.Target(version=VERSION)

    def __init__(self, runner):
        self._runner = runner

    def handoff(self, context, instance, handoff_id, request):
        LOG.info('handoff %s requested', handoff_id, instance=instance)
        thread_pool_factory.spawn_on(thread_pool_factory.ExecutorType.LONG_TASK, self._runner,
                                     context, instance, handoff_id, request)


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
