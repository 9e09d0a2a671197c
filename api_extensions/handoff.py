"""The cloudlet-handoff server action: POST /servers/{id}/action (doc/handoff.md).

    {"cloudlet-handoff": {"destination": {"auth_url": ...}, "credential": {...},
                          "name": ..., "options": {"codec": "auto"}}}

The API checks the server, locks it with task_state `migrating` (expected
None: the concurrency lock, as nova's own actions), starts the instance
action `cloudlet-handoff` and casts `handoff` on the `cloudlet` RPC topic to
the server's compute host (cloudlet_nova.handoff.rpc); the compute host does
the rest and records the event `cloudlet_handoff` of that action. The answer
is 202 {"handoff_id": ...}.

The credential is kept in the key manager for the compute host to read
(cloudlet_nova.handoff.credentials; `[cloudlet_handoff] credential_store`),
and the RPC message names it; it is not logged (nova logs request bodies
through `mask_password`, which masks `token` and `secret`), and masked out of
validation errors (nova's validator quotes the values it refuses).
"""

import functools

from oslo_log import log as logging
from oslo_utils import uuidutils
from webob import exc

from nova.api.openstack import common
from nova.api.openstack import wsgi
from nova.api import validation
from nova.compute import api as compute
from nova.compute import task_states
from nova.compute import utils as compute_utils
from nova.compute import vm_states
import nova.conf
from nova import exception
from nova import objects

from cloudlet_glance import properties
from cloudlet_nova.handoff import credentials
from cloudlet_nova.handoff import remote
from cloudlet_nova.handoff import rpc as handoff_rpc

from api_extensions import policies
from api_extensions import policy
from api_extensions import schemas

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

ACTION = 'cloudlet-handoff'
INSTANCE_ACTION = 'cloudlet-handoff'


def credential_values(body):
    """The string values under the request's credential (whatever its shape)."""
    entity = body.get(ACTION) if isinstance(body, dict) else None
    return remote.credential_secrets(entity.get('credential') if isinstance(entity, dict) else None)


def mask_secrets(text, secrets):
    for secret in secrets:
        text = text.replace(secret, '***')
        text = text.replace(repr(secret)[1:-1], '***')     # as a dict's repr quotes it
    return text


def schema_without_secrets(request_body_schema):
    """nova's validation.schema, with the credential's values masked out of its errors."""
    def decorator(func):
        validated = validation.schema(request_body_schema)(func)

        @functools.wraps(validated)
        def wrapper(*args, **kwargs):
            try:
                return validated(*args, **kwargs)
            except exception.ValidationError as error:
                secrets = credential_values(kwargs.get('body'))
                raise exception.ValidationError(
                    detail=mask_secrets(error.format_message(), secrets)) from None
        return wrapper
    return decorator


class CloudletHandoffController(handoff_rpc.RPCClientUser, wsgi.Controller):
    """Registered on nova's /servers/{id}/action Resource by api_extensions.router."""

    def __init__(self):
        super().__init__()
        self.compute_api = compute.API()

    @wsgi.response(202)
    @wsgi.expected_errors((400, 403, 404, 409, 503))
    @wsgi.action(ACTION)
    @schema_without_secrets(schemas.handoff)
    @validation.response_body_schema(schemas.handoff_response)
    def _handoff(self, req, id, body):
        """Hand the server off to another cloud: 202 {"handoff_id": <uuid>}."""
        context = req.environ['nova.context']
        entity = body[ACTION]
        instance = common.get_instance(self.compute_api, context, id)
        policy.authorize(context, policies.HANDOFF, {'project_id': instance.project_id,
                                                     'user_id': instance.user_id})
        self._check_server(context, instance, id)

        instance.task_state = task_states.MIGRATING
        try:
            instance.save(expected_task_state=[None])
        except exception.UnexpectedTaskStateError as error:
            raise exc.HTTPConflict(explanation='server %s is busy: %s' % (id, error.format_message()))
        except exception.InstanceNotFound as error:
            raise exc.HTTPNotFound(explanation=error.format_message())

        handoff_id = uuidutils.generate_uuid()
        request = dict(entity)
        if CONF.cloudlet_handoff.credential_store == credentials.KEY_MANAGER:
            try:
                request['credential'] = credentials.store(context, entity['credential'], handoff_id)
            except credentials.CredentialUnavailable as error:
                self._unlock(context, instance)
                raise exc.HTTPServiceUnavailable(explanation='%s; try again later' % error)
        try:
            objects.InstanceAction.action_start(context, instance.uuid, INSTANCE_ACTION,
                                                want_result=False)
            self.rpcapi.handoff(context, instance, handoff_id, request)
        except Exception as error:   # noqa: BLE001 - nothing was started: unlock the server
            LOG.error('handoff %s of server %s could not be sent to its compute host %s: %s',
                      handoff_id, instance.uuid, instance.host, type(error).__name__)
            credentials.forget(context, request['credential'])
            self._unlock(context, instance)
            raise exc.HTTPServiceUnavailable(
                explanation='the handoff could not be sent to the compute host of server %s; '
                            'try again later' % id)
        LOG.info('handoff %s of server %s sent to compute host %s', handoff_id, instance.uuid,
                 instance.host)
        return {'handoff_id': handoff_id}

    def _check_server(self, context, instance, server_id):
        """409 unless an ACTIVE cloudlet server without a task, unlocked, on a local disk, host up."""
        if not properties.is_cloudlet_instance(instance):
            raise exc.HTTPConflict(
                explanation='server %s was not booted from a cloudlet base VM image (image property '
                            '%s=%s): only cloudlet servers can be handed off'
                            % (server_id, properties.CLOUDLET_TYPE, properties.BASE_DISK))
        if instance.vm_state != vm_states.ACTIVE or instance.task_state is not None:
            raise exc.HTTPConflict(
                explanation='cannot %s server %s while it is in vm_state %s, task_state %s: it must '
                            'be ACTIVE with no task' % (ACTION, server_id, instance.vm_state,
                                                        instance.task_state))
        if instance.locked:
            raise exc.HTTPConflict(explanation='server %s is locked: unlock it to hand it off'
                                               % server_id)
        bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(context, instance.uuid)
        if compute_utils.is_volume_backed_instance(context, instance, bdms):
            raise exc.HTTPConflict(
                explanation='server %s boots from a volume: %s needs a server with a local '
                            'image-backed root disk' % (server_id, ACTION))
        if not instance.host or not self._host_is_up(context, instance.host):
            raise exc.HTTPConflict(
                explanation='the compute service of server %s is down: it cannot hand the server '
                            'off now' % server_id)

    def _host_is_up(self, context, host):
        try:
            service = objects.Service.get_by_compute_host(context.elevated(), host)
        except exception.ComputeHostNotFound:
            return False
        return self.compute_api.servicegroup_api.service_is_up(service)

    @staticmethod
    def _unlock(context, instance):
        try:
            instance.task_state = None
            instance.save(expected_task_state=[task_states.MIGRATING])
        except (exception.UnexpectedTaskStateError, exception.InstanceNotFound) as error:
            LOG.warning('server %s: task_state not reset: %s', instance.uuid,
                        error.format_message())
        try:
            objects.InstanceAction.action_finish(context, instance.uuid, want_result=False)
        except Exception:   # noqa: BLE001 - the action may not exist (action_start failed)
            LOG.debug('server %s: no instance action to finish', instance.uuid)
