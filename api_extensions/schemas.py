"""JSON schemas of the cloudlet API: request bodies, query strings, responses.

Every object sets `additionalProperties` (nova's validator insists, and an
unknown key is a client error, not something to ignore). nova validates
response bodies in its tests (`[api] response_validation = error`), so each
method has a response schema too.
"""

import copy

from nova.api.validation import parameter_types

CODECS = ('zstd', 'xz')
HANDOFF_CODECS = ('auto',) + CODECS
INTERFACES = ('public', 'internal')
VISIBILITIES = ('private', 'shared', 'community', 'public')
STATUSES = ('queued', 'downloading', 'validating', 'uploading', 'active', 'error')
RUNNING_STATUSES = ('queued', 'downloading', 'validating', 'uploading')

# Free-form image properties, exactly as createImage takes them (keys
# ^[a-zA-Z0-9-_:. ]{1,255}$, string values of at most 255 characters).
# The cloudlet_* keys are refused by the controller with a clear message.
_metadata = parameter_types.metadata

_capture = {
    'type': 'object',
    'properties': {
        'name': parameter_types.name,
        'metadata': _metadata,
    },
    'required': ['name'],
    'additionalProperties': False,
}

_overlay = copy.deepcopy(_capture)
_overlay['properties']['options'] = {
    'type': 'object',
    'properties': {
        'codec': {'type': 'string', 'enum': list(CODECS)},
        # A key manager (Barbican) secret of the caller: the compute host encrypts
        # the overlay with it (doc/trust.md).
        'encryption_key_id': {'type': 'string', 'format': 'uuid'},
    },
    'additionalProperties': False,
}


def _action(name, entity):
    return {
        'type': 'object',
        'properties': {name: entity},
        'required': [name],
        'additionalProperties': False,
    }


# POST /servers/{id}/action
create_base = _action('cloudlet-create-base', _capture)
create_base_alias = _action('cloudlet-base', _capture)     # OpenStack++'s name
create_overlay = _action('cloudlet-create-overlay', _overlay)

# POST /servers/{id}/action {"cloudlet-heartbeat": {}} (api_extensions.leases);
# the bounds of "seconds" are the cloud's ([cloudlet_lease]), checked by the controller.
heartbeat = _action('cloudlet-heartbeat', {
    'type': 'object',
    'properties': {
        'seconds': {'type': 'integer', 'minimum': 1},
    },
    'additionalProperties': False,
})

heartbeat_response = {
    'type': 'object',
    'properties': {
        'lease': {
            'type': 'object',
            'properties': {
                'seconds': {'type': 'integer', 'minimum': 1},
                'expires_at': {'type': 'string', 'format': 'date-time'},
            },
            'required': ['seconds', 'expires_at'],
            'additionalProperties': False,
        },
    },
    'required': ['lease'],
    'additionalProperties': False,
}

capture_response = {
    'type': 'object',
    'properties': {
        'image_id': {'type': 'string', 'format': 'uuid'},
    },
    'required': ['image_id'],
    'additionalProperties': False,
}

# POST /servers/{id}/action {"cloudlet-handoff": ...} (doc/handoff.md). Every
# string the destination sees is bounded; the secret values are not echoed in
# validation errors (api_extensions.handoff masks them).
_url = {'type': 'string', 'minLength': 1, 'maxLength': 2048, 'pattern': '^[hH][tT][tT][pP][sS]?://'}
_short = {'type': 'string', 'minLength': 1, 'maxLength': 255}
_secret = {'type': 'string', 'minLength': 1, 'maxLength': 65536}

_destination_extras = {
    'region_name': _short,
    'interface': {'type': 'string', 'enum': list(INTERFACES)},
    'flavor': _short,                     # a flavor id on the destination
}


def _destination_kind(key, value):
    return {
        'type': 'object',
        'properties': dict({key: value}, **_destination_extras),
        'required': [key],
        'additionalProperties': False,
    }


_handoff_destination = {
    'type': 'object',
    'oneOf': [
        _destination_kind('auth_url', _url),             # the destination's Keystone v3
        _destination_kind('compute_endpoint', _url),     # its nova endpoint (Keystone discovered)
        _destination_kind('cloud', _short),              # [cloudlet_handoff] destinations
    ],
}

_handoff_credential = {
    'type': 'object',
    'oneOf': [
        {
            'type': 'object',
            'properties': {'token': _secret},
            'required': ['token'],
            'additionalProperties': False,
        },
        {
            'type': 'object',
            'properties': {
                'application_credential': {
                    'type': 'object',
                    'properties': {'id': _short, 'secret': _secret},
                    'required': ['id', 'secret'],
                    'additionalProperties': False,
                },
            },
            'required': ['application_credential'],
            'additionalProperties': False,
        },
    ],
}

_handoff = {
    'type': 'object',
    'properties': {
        'destination': _handoff_destination,
        'credential': _handoff_credential,
        'name': parameter_types.name,
        'options': {
            'type': 'object',
            'properties': {
                'codec': {'type': 'string', 'enum': list(HANDOFF_CODECS)},
            },
            'additionalProperties': False,
        },
    },
    'required': ['destination', 'credential', 'name'],
    'additionalProperties': False,
}

handoff = _action('cloudlet-handoff', _handoff)

handoff_response = {
    'type': 'object',
    'properties': {
        'handoff_id': {'type': 'string', 'format': 'uuid'},
    },
    'required': ['handoff_id'],
    'additionalProperties': False,
}

# GET /os-cloudlet
_link = {
    'type': 'object',
    'properties': {
        'rel': {'type': 'string'},
        'href': {'type': 'string', 'format': 'uri'},
    },
    'required': ['rel', 'href'],
    'additionalProperties': False,
}

_string_list = {'type': 'array', 'items': {'type': 'string'}}

discovery_query = {
    'type': 'object',
    'properties': {},
    'additionalProperties': False,
}

discovery_response = {
    'type': 'object',
    'properties': {
        'cloudlet': {
            'type': 'object',
            'properties': {
                'version': {'type': 'string'},
                'min_version': {'type': 'string'},
                'actions': _string_list,
                'action_aliases': {
                    'type': 'object',
                    'patternProperties': {'^.+$': {'type': 'string'}},
                    'additionalProperties': False,
                },
                'server_metadata_keys': _string_list,
                'image_property_keys': _string_list,
                'codecs': _string_list,
                'overlay_format_version': {'type': 'integer'},
                'overlay_format_versions': {'type': 'array', 'items': {'type': 'integer'}},
                'base_package_format_version': {'type': 'integer'},
                'limits': {
                    'type': 'object',
                    'properties': {
                        'max_overlay_bytes': {'type': 'integer'},
                        'overlay_url_schemes': _string_list,
                    },
                    'required': ['max_overlay_bytes', 'overlay_url_schemes'],
                    'additionalProperties': False,
                },
                'handoff': {
                    'type': 'object',
                    'properties': {
                        'codecs': _string_list,
                        'destinations': _string_list,
                        'credential_kinds': _string_list,
                    },
                    'required': ['codecs', 'destinations', 'credential_kinds'],
                    'additionalProperties': False,
                },
                'lease': {
                    'type': 'object',
                    'properties': {
                        'min_seconds': {'type': 'integer'},
                        'max_seconds': {'type': 'integer'},
                        'grace_seconds': {'type': 'integer'},
                    },
                    'required': ['min_seconds', 'max_seconds', 'grace_seconds'],
                    'additionalProperties': False,
                },
                'links': {'type': 'array', 'items': _link},
            },
            'required': ['version', 'min_version', 'actions', 'server_metadata_keys',
                         'image_property_keys', 'codecs', 'overlay_format_version',
                         'limits', 'links'],
            'additionalProperties': False,
        },
    },
    'required': ['cloudlet'],
    'additionalProperties': False,
}

# POST /os-cloudlet/bases
base_import = {
    'type': 'object',
    'properties': {
        'base': {
            'type': 'object',
            'properties': {
                'url': {'type': 'string', 'minLength': 1, 'maxLength': 2048},
                'name': parameter_types.name,
                'visibility': {'type': 'string', 'enum': list(VISIBILITIES)},
            },
            'required': ['url'],
            'additionalProperties': False,
        },
    },
    'required': ['base'],
    'additionalProperties': False,
}

# GET /os-cloudlet/bases
base_list_query = {
    'type': 'object',
    'properties': {},
    'additionalProperties': False,
}

_nullable_string = {'type': ['string', 'null']}
_nullable_uuid = {'type': ['string', 'null'], 'format': 'uuid'}

_base_record = {
    'type': 'object',
    'properties': {
        'id': {'type': 'string', 'format': 'uuid'},
        'name': _nullable_string,
        'url': {'type': 'string'},
        'visibility': {'type': 'string', 'enum': list(VISIBILITIES)},
        'status': {'type': 'string', 'enum': list(STATUSES)},
        'progress': {
            'type': 'object',
            'properties': {
                'stage': _nullable_string,
                'bytes_done': {'type': 'integer', 'minimum': 0},
                'bytes_total': {'type': ['integer', 'null'], 'minimum': 0},
            },
            'required': ['stage', 'bytes_done', 'bytes_total'],
            'additionalProperties': False,
        },
        'error': _nullable_string,
        'base_id': _nullable_string,
        'image_id': _nullable_uuid,
        'companion_image_ids': {
            'type': 'object',
            'patternProperties': {'^cloudlet_[a-z_]+$': {'type': 'string'}},
            'additionalProperties': False,
        },
        'project_id': {'type': 'string'},
        'user_id': {'type': 'string'},
        'created_at': {'type': 'string', 'format': 'date-time'},
        'updated_at': {'type': 'string', 'format': 'date-time'},
        'links': {'type': 'array', 'items': _link},
    },
    'required': ['id', 'name', 'url', 'visibility', 'status', 'progress', 'error', 'base_id',
                 'image_id', 'project_id', 'user_id', 'created_at', 'updated_at', 'links'],
    'additionalProperties': False,
}

base_show_response = {
    'type': 'object',
    'properties': {'base': _base_record},
    'required': ['base'],
    'additionalProperties': False,
}

base_import_response = base_show_response

base_list_response = {
    'type': 'object',
    'properties': {'bases': {'type': 'array', 'items': _base_record}},
    'required': ['bases'],
    'additionalProperties': False,
}

base_delete_response = {'type': 'null'}

# POST /os-cloudlet/negotiate: exactly one of an overlay's header fields or its
# URL (nova-api reads the header). An unsupported format version or codec is
# an answer ("acceptable": false), not a 400: the schema bounds them only.
_MAX_INT = 0x7FFFFFFF     # nova's flavor columns (nova/db/constants.py)
_negotiate_overlay = {
    'type': 'object',
    'properties': {
        'base_id': {'type': 'string', 'pattern': '^[0-9a-fA-F]{64}$'},
        'format_version': {'type': 'integer', 'minimum': 1, 'maximum': 65535},
        'codec': {'type': 'string', 'minLength': 1, 'maxLength': 32},
        'memory_mb': {'type': 'integer', 'minimum': 1, 'maximum': _MAX_INT},
        'vcpus': {'type': 'integer', 'minimum': 1, 'maximum': _MAX_INT},
        'size_bytes': {'type': 'integer', 'minimum': 0, 'maximum': 2 ** 63 - 1},
    },
    'required': ['base_id', 'format_version', 'codec'],
    'additionalProperties': False,
}

negotiate = {
    'type': 'object',
    'properties': {
        'overlay': _negotiate_overlay,
        'overlay_url': {'type': 'string', 'minLength': 1, 'maxLength': 2048},
    },
    # Exactly one of the two (a flat schema, not oneOf: nova's message then
    # names the field at fault).
    'minProperties': 1,
    'maxProperties': 1,
    'additionalProperties': False,
}

negotiate_response = {
    'type': 'object',
    'properties': {
        'negotiation': {
            'type': 'object',
            'properties': {
                'acceptable': {'type': 'boolean'},
                'reason': _nullable_string,
                'base_id': {'type': 'string'},
                'base_image_id': _nullable_uuid,
                'flavor_id': _nullable_string,
                'estimated_seconds': {'type': ['number', 'null'], 'minimum': 0},
                'format_version': {'type': 'integer'},
                'codec': {'type': 'string'},
            },
            'required': ['acceptable', 'reason', 'base_id', 'base_image_id', 'flavor_id',
                         'estimated_seconds', 'format_version', 'codec'],
            'additionalProperties': False,
        },
    },
    'required': ['negotiation'],
    'additionalProperties': False,
}

residue_status_response = {
    'type': 'object',
    'properties': {
        'residue': {
            'type': 'object',
            'properties': {
                'state': {'type': 'string',
                          'enum': ['waiting', 'ready', 'receiving', 'received', 'failed']},
                'bytes_received': {'type': 'integer', 'minimum': 0},
                'reason': _nullable_string,
            },
            'required': ['state', 'bytes_received', 'reason'],
            'additionalProperties': False,
        },
    },
    'required': ['residue'],
    'additionalProperties': False,
}
