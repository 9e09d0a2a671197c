"""nova's versioned notifications of one event type, as an operator's listener gets them.

The box's controllers publish them on its RabbitMQ vhost (configs.nova:
notification_format = versioned, driver messagingv2), topic
`versioned_notifications` of exchange `nova`. A Listener binds a queue of its
own (its pool) beside any other consumer, from `start()` on:

    with notifications.Listener(box, 'aggregate.cache_images.progress',
                                where={'uuid': aggregate.uuid}) as events:
        ... POST /os-aggregates/{id}/images ...
        reports = events.wait_for_hosts(['vm', 'box-compute2'])   # {host: payload}

The pool's queue outlives a listener (RabbitMQ keeps it, and what arrives
while no listener runs): the next listener of that pool gets those stale
notifications first. `where` keeps only the payloads with those fields, e.g.
the aggregate one pre-cache was asked for.
"""

import threading
import time

from oslo_config import cfg
import oslo_messaging


class Listener:
    def __init__(self, box, event_type, where=None):
        self.event_type, self.payloads, self.lock = event_type, [], threading.Lock()
        self.where = dict(where or {})
        self.arrived = {}          # host -> time.monotonic() of its first notification
        conf = cfg.ConfigOpts()
        conf([], project='cloudlet-box-notifications')
        transport = oslo_messaging.get_notification_transport(conf, url=box.transport_url())
        targets = [oslo_messaging.Target(topic='versioned_notifications', exchange='nova')]
        self.listener = oslo_messaging.get_notification_listener(
            transport, targets, [self], executor='threading', pool='cloudlet-box-%s' % event_type)

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        if event_type == self.event_type:
            data = payload['nova_object.data']
            if any(data.get(key) != value for key, value in self.where.items()):
                return
            with self.lock:
                self.payloads.append(data)
                self.arrived.setdefault(data.get('host'), time.monotonic())

    error = info

    def __enter__(self):
        self.listener.start()
        return self

    def __exit__(self, *exc):
        self.listener.stop()
        self.listener.wait()

    def by_host(self):
        with self.lock:
            return {payload.get('host'): payload for payload in self.payloads}

    def wait_for_hosts(self, host_names, timeout=600):
        """{host: payload} once every host in `host_names` reported; RuntimeError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not set(host_names) <= set(self.by_host()):
            if time.monotonic() > deadline:
                raise RuntimeError('no %s from %s within %d s' % (
                    self.event_type, ', '.join(sorted(set(host_names) - set(self.by_host()))), timeout))
            time.sleep(0.2)
        return self.by_host()
