"""Leases through the API: a lease asked for at create, and the heartbeat.

    POST /servers {"server": {..., "metadata": {"cloudlet_lease_seconds": "120"}}}
    POST /servers/{id}/action {"cloudlet-heartbeat": {}}               renew
    POST /servers/{id}/action {"cloudlet-heartbeat": {"seconds": 300}} renew with a new length

The lease is two metadata keys of the server (cloudlet_glance.properties):
its length, and when it runs out, which only this API sets. A bad length is
a 400 before nova does anything; the heartbeat of a server the caller cannot
see is nova's 404. cloudlet-reaper (cloudlet_nova/leases/reaper.py) deletes
the servers whose lease ran out.
"""

import functools

from webob import exc

from nova.api.openstack import common
from nova.api.openstack import wsgi
from nova.api import validation
from nova.compute import api as compute
import nova.conf
from nova import exception

from api_extensions import policies
from api_extensions import policy
from api_extensions import schemas
from cloudlet_glance import properties
from cloudlet_nova.leases import lease

CONF = nova.conf.CONF
ACTION = 'cloudlet-heartbeat'


def _bounded(value):
    try:
        return lease.parse_seconds(value, CONF.cloudlet_lease.min_seconds,
                                   CONF.cloudlet_lease.max_seconds)
    except lease.BadLease as error:
        raise exc.HTTPBadRequest(explanation=str(error))


def lease_on_create(create):
    """nova's ServersController.create, with a lease asked for in the metadata checked
    and its expiry added (the wrapper keeps nova's decorations: response code, schemas).
    """
    @functools.wraps(create)
    def wrapper(req, body):
        server = body.get('server') if isinstance(body, dict) else None
        metadata = server.get('metadata') if isinstance(server, dict) else None
        if isinstance(metadata, dict):
            if properties.META_LEASE_EXPIRES_AT in metadata:
                raise exc.HTTPBadRequest(explanation='%s is set by the cloud, not by the request'
                                                     % properties.META_LEASE_EXPIRES_AT)
            if properties.META_LEASE_SECONDS in metadata:
                seconds = _bounded(metadata[properties.META_LEASE_SECONDS])
                metadata[properties.META_LEASE_SECONDS] = str(seconds)
                metadata[properties.META_LEASE_EXPIRES_AT] = lease.expires_at(seconds)
        return create(req, body=body)
    return wrapper


class CloudletLeaseController(wsgi.Controller):
    """Registered on nova's /servers/{id}/action Resource by api_extensions.router."""

    def __init__(self):
        super().__init__()
        self.compute_api = compute.API()

    @wsgi.response(200)
    @wsgi.expected_errors((400, 403, 404, 409))
    @wsgi.action(ACTION)
    @validation.schema(schemas.heartbeat)
    @validation.response_body_schema(schemas.heartbeat_response)
    def _heartbeat(self, req, id, body):
        """Renew the server's lease (and set its length): 200 {"lease": {...}}."""
        context = req.environ['nova.context']
        entity = body[ACTION] or {}
        instance = common.get_instance(self.compute_api, context, id)
        policy.authorize(context, policies.LEASE, {'project_id': instance.project_id,
                                                   'user_id': instance.user_id})
        if 'seconds' in entity:
            seconds = _bounded(entity['seconds'])
        elif properties.META_LEASE_SECONDS in (instance.metadata or {}):
            seconds = _bounded(instance.metadata[properties.META_LEASE_SECONDS])
        else:
            raise exc.HTTPConflict(explanation='server %s has no lease: give "seconds" to start one' % id)
        changes = {properties.META_LEASE_SECONDS: str(seconds),
                   properties.META_LEASE_EXPIRES_AT: lease.expires_at(seconds)}
        try:
            self.compute_api.update_instance_metadata(context, instance, changes)
        except exception.InstanceInvalidState as state_error:
            common.raise_http_conflict_for_instance_invalid_state(state_error, ACTION, id)
        except exception.InstanceIsLocked as error:
            raise exc.HTTPConflict(explanation=error.format_message())
        except exception.OverQuota as error:
            raise exc.HTTPForbidden(explanation=error.format_message())
        return {'lease': {'seconds': seconds,
                          'expires_at': changes[properties.META_LEASE_EXPIRES_AT]}}
