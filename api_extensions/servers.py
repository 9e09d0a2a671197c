"""Cloudlet server actions: POST /servers/{id}/action.

    {"cloudlet-create-base": {"name": ..., "metadata": {...}}}       (alias "cloudlet-base")
    {"cloudlet-create-overlay": {"name": ..., "metadata": {...},
                                 "options": {"codec": "zstd", "encryption_key_id": <key manager id>}}}

Both are thin sugar over nova's createImage path:
`compute_api.snapshot()` creates the Glance image record with the extra
properties, puts the instance in task_state image_snapshot_pending (the
concurrency lock), records the `createImage` instance action and casts
`snapshot_instance`; CloudletDriver.snapshot() sees `cloudlet_type` on the
target image and captures a base or an overlay. The response is always
202 {"image_id": ...} (no microversion dependency: we add no microversions).
"""

from webob import exc

from nova.api.openstack import common
from nova.api.openstack import wsgi
from nova.api import validation
from nova.compute import api as compute
from nova.compute import utils as compute_utils
from nova import exception
from nova import objects

from cloudlet_glance import properties

from api_extensions import policies
from api_extensions import policy
from api_extensions import schemas

RESERVED_METADATA_PREFIX = 'cloudlet_'

ACTION_CREATE_BASE = 'cloudlet-create-base'
ACTION_CREATE_BASE_ALIAS = 'cloudlet-base'
ACTION_CREATE_OVERLAY = 'cloudlet-create-overlay'
ACTIONS = (ACTION_CREATE_BASE, ACTION_CREATE_OVERLAY)
ACTION_ALIASES = {ACTION_CREATE_BASE_ALIAS: ACTION_CREATE_BASE}


def check_metadata(metadata):
    """Refuse client-set cloudlet_* properties: they are the driver's contract."""
    reserved = sorted(k for k in metadata if k.lower().startswith(RESERVED_METADATA_PREFIX))
    if reserved:
        raise exc.HTTPBadRequest(
            explanation='metadata keys starting with %r are reserved for openstack-cloudlet: %s'
                        % (RESERVED_METADATA_PREFIX, ', '.join(reserved)))


class CloudletServerActionsController(wsgi.Controller):
    """Registered on nova's /servers/{id}/action Resource by api_extensions.router."""

    def __init__(self):
        super().__init__()
        self.compute_api = compute.API()

    @wsgi.response(202)
    @wsgi.expected_errors((400, 403, 404, 409))
    @wsgi.action(ACTION_CREATE_BASE)
    @validation.schema(schemas.create_base)
    @validation.response_body_schema(schemas.capture_response)
    def _create_base(self, req, id, body):
        """Capture the server as a base VM: 202 {"image_id": <base disk image id>}."""
        return self._capture(req, id, body[ACTION_CREATE_BASE], ACTION_CREATE_BASE)

    @wsgi.response(202)
    @wsgi.expected_errors((400, 403, 404, 409))
    @wsgi.action(ACTION_CREATE_BASE_ALIAS)
    @validation.schema(schemas.create_base_alias)
    @validation.response_body_schema(schemas.capture_response)
    def _create_base_alias(self, req, id, body):
        """OpenStack++'s name for cloudlet-create-base (same body, our response)."""
        return self._capture(req, id, body[ACTION_CREATE_BASE_ALIAS], ACTION_CREATE_BASE)

    @wsgi.response(202)
    @wsgi.expected_errors((400, 403, 404, 409))
    @wsgi.action(ACTION_CREATE_OVERLAY)
    @validation.schema(schemas.create_overlay)
    @validation.response_body_schema(schemas.capture_response)
    def _create_overlay(self, req, id, body):
        """Capture the server's overlay: 202 {"image_id": <overlay image id>}."""
        return self._capture(req, id, body[ACTION_CREATE_OVERLAY], ACTION_CREATE_OVERLAY)

    def _capture(self, req, server_id, entity, action):
        context = req.environ['nova.context']
        metadata = dict(entity.get('metadata') or {})
        check_metadata(metadata)

        instance = common.get_instance(self.compute_api, context, server_id)
        rule = policies.CREATE_BASE if action == ACTION_CREATE_BASE else policies.CREATE_OVERLAY
        policy.authorize(context, rule, {'project_id': instance.project_id,
                                         'user_id': instance.user_id})

        extra = dict(metadata)
        if action == ACTION_CREATE_OVERLAY:
            if not properties.is_cloudlet_instance(instance):
                raise exc.HTTPConflict(
                    explanation='server %s was not booted from a cloudlet base VM image '
                                '(image property %s=%s), so it has no base to make an '
                                'overlay against; use %s to capture it as a base VM'
                                % (server_id, properties.CLOUDLET_TYPE, properties.BASE_DISK,
                                   ACTION_CREATE_BASE))
            extra[properties.CLOUDLET_TYPE] = properties.OVERLAY
            options = entity.get('options') or {}
            if options.get('codec'):
                extra[properties.CODEC] = options['codec']
            if options.get('encryption_key_id'):
                extra[properties.OVERLAY_KEY_ID] = options['encryption_key_id']
        else:
            extra[properties.CLOUDLET_TYPE] = properties.BASE_DISK

        bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(context, instance.uuid)
        if compute_utils.is_volume_backed_instance(context, instance, bdms):
            raise exc.HTTPConflict(
                explanation='server %s boots from a volume: %s needs a server with a local '
                            'image-backed root disk (volume-backed servers are not supported)'
                            % (server_id, action))

        try:
            image = self.compute_api.snapshot(context, instance, common.normalize_name(entity['name']),
                                              extra_properties=extra)
        except exception.InstanceInvalidState as state_error:
            common.raise_http_conflict_for_instance_invalid_state(state_error, action, server_id)
        except (exception.InstanceIsLocked, exception.InstanceQuiesceFailed) as error:
            raise exc.HTTPConflict(explanation=error.format_message())
        except exception.OverQuota as error:
            raise exc.HTTPForbidden(explanation=error.format_message())
        except exception.Invalid as error:
            raise exc.HTTPBadRequest(explanation=error.format_message())
        return {'image_id': image['id']}
