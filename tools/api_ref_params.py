"""Write api-ref/source/parameters.yaml from api_extensions/schemas.py.

    PYTHONPATH=. OS_NOVA_DISABLE_EVENTLET_PATCHING=1 python tools/api_ref_params.py [--check] [FILE]

Every body parameter (request and response) comes from a JSON schema: its
name, whether it is required, its type and, for enums, its values. The
description is the schema's own 'description' if it has one, else the one in
DESCRIPTIONS below. Path parameters are written from PATH_PARAMETERS. Keys
are `request.<path>` and `response.<path>` (`<path>` as in the JSON body);
the items of a list response share the keys of the single object
(`response.base.*` for `bases`). A schema field without a description, or a
description for no field, is an error: a schema change shows up here.

tests/unit/api/test_api_ref.py fails when the committed file is not what this
writes; --check does the same from the command line.
"""

import argparse
import os
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(REPO, 'api-ref', 'source', 'parameters.yaml')

# schema name in api_extensions.schemas -> top of its keys
REQUESTS = {
    'create_base': 'request',
    'create_overlay': 'request',
    'handoff': 'request',
    'heartbeat': 'request',
    'base_import': 'request',
    'negotiate': 'request',
}
RESPONSES = {
    'capture_response': 'response',
    'handoff_response': 'response',
    'heartbeat_response': 'response',
    'discovery_response': 'response',
    'base_show_response': 'response',
    'base_import_response': 'response',
    'base_list_response': 'response',
    'negotiate_response': 'response',
    'residue_status_response': 'response',
}
# Schemas with no parameter of their own to document, and why.
NOT_DOCUMENTED = {
    'create_base_alias': 'the same body as create_base under "cloudlet-base" (documented there)',
    'discovery_query': 'no query parameter (any is a 400)',
    'base_list_query': 'no query parameter (any is a 400)',
    'base_delete_response': 'no body (204)',
}
# A list whose items are documented as the single object (same keys).
ITEMS_AS = {'bases': 'base'}

PATH_PARAMETERS = {
    'path.base_import_id': 'The ID of the base import (``base.id`` in the response of the import).',
    'path.server_id': 'The UUID of the server.',
}

_METADATA = ('Image properties to set on the new image, as in ``createImage``: keys of 1 to 255 '
             'characters from letters, digits, space and ``-_:.``, string values of at most 255 '
             'characters. Keys starting with ``cloudlet_`` are reserved (400).')
_LINKS = 'The ``self`` and ``bookmark`` links of the resource.'

DESCRIPTIONS = {
    # POST /servers/{server_id}/action: cloudlet-create-base
    'request.cloudlet-create-base': 'Capture the server as a base VM (alias ``cloudlet-base``).',
    'request.cloudlet-create-base.name': (
        'The name of the base disk image; its hidden companion images are named after it '
        '(``<name>-memory``, ``<name>-diskhash``, ``<name>-memhash``).'),
    'request.cloudlet-create-base.metadata': _METADATA,
    # cloudlet-create-overlay
    'request.cloudlet-create-overlay': (
        'Capture the overlay of a server synthesized or resumed from a base VM.'),
    'request.cloudlet-create-overlay.name': 'The name of the overlay image.',
    'request.cloudlet-create-overlay.metadata': _METADATA,
    'request.cloudlet-create-overlay.options': 'Options of the capture.',
    'request.cloudlet-create-overlay.options.codec': (
        'The codec of the overlay\'s data. Default: the compute host\'s ``[cloudlet] '
        'overlay_codec`` (``zstd``).'),
    'request.cloudlet-create-overlay.options.encryption_key_id': (
        'Encrypt the overlay (AES-256-GCM, overlay format version 2) with this key: the id of a '
        '256-bit symmetric key in the key manager (Barbican), readable by the caller\'s project. '
        'The compute host reads it with the caller\'s credentials; the overlay image gets '
        '``cloudlet_overlay_key_id``. See doc/trust.md.'),
    # cloudlet-handoff
    'request.cloudlet-heartbeat': (
        'Renew the server\'s lease: it now runs out ``seconds`` from now. An empty object '
        'renews with the lease\'s length.'),
    'request.cloudlet-heartbeat.seconds': (
        'The lease\'s new length in seconds, within the cloud\'s bounds (``lease`` in the '
        'discovery document; else 400). Starts a lease on a server that has none.'),
    'response.lease': 'The server\'s lease after the heartbeat.',
    'response.lease.seconds': 'The lease\'s length in seconds.',
    'response.lease.expires_at': (
        'When the lease runs out (ISO 8601, UTC). ``cloudlet-reaper`` deletes the server once '
        'this time and the grace period have passed without a heartbeat.'),
    'request.cloudlet-handoff': 'Hand the server off to another OpenStack cloud.',
    'request.cloudlet-handoff.destination': (
        'The destination cloud: exactly one of ``auth_url``, ``compute_endpoint`` or ``cloud``, '
        'with ``region_name``, ``interface`` and ``flavor`` optionally.'),
    'request.cloudlet-handoff.destination.auth_url': (
        'The destination\'s Keystone v3 URL (``http://`` or ``https://``).'),
    'request.cloudlet-handoff.destination.compute_endpoint': (
        'The destination\'s compute (nova) endpoint (``http://`` or ``https://``); its Keystone '
        'URL is discovered from the ``WWW-Authenticate`` header of an unauthenticated request.'),
    'request.cloudlet-handoff.destination.cloud': (
        'The name of a destination the operator configured in ``[cloudlet_handoff] '
        'destinations`` (listed in ``GET /os-cloudlet``).'),
    'request.cloudlet-handoff.destination.region_name': 'The region of the destination cloud.',
    'request.cloudlet-handoff.destination.interface': (
        'The endpoint interface used at the destination. Default: ``public``.'),
    'request.cloudlet-handoff.destination.flavor': (
        'A flavor ID on the destination. Default: the destination flavor with exactly the base '
        'VM\'s RAM and vCPUs, the smallest disk first.'),
    'request.cloudlet-handoff.credential': (
        'How the source cloud authenticates to the destination: exactly one of ``token`` or '
        '``application_credential``. Sent to the compute host only; never stored or logged.'),
    'request.cloudlet-handoff.credential.token': (
        'A project-scoped Keystone token of the destination.'),
    'request.cloudlet-handoff.credential.application_credential': (
        'An application credential of the destination (``id`` and ``secret``).'),
    'request.cloudlet-handoff.credential.application_credential.id': (
        'The application credential\'s ID.'),
    'request.cloudlet-handoff.credential.application_credential.secret': (
        'The application credential\'s secret.'),
    'request.cloudlet-handoff.name': 'The name of the destination server.',
    'request.cloudlet-handoff.options': 'Options of the handoff.',
    'request.cloudlet-handoff.options.codec': (
        'The codec of the residue. Default: ``auto`` (chosen per segment from the measured '
        'bandwidth).'),
    # POST /os-cloudlet/bases
    'request.base': 'The base VM package to import.',
    'request.base.url': (
        'The ``http://`` or ``https://`` URL of the base VM package (zip). nova-api downloads '
        'it: ``[cloudlet] overlay_url_schemes`` and ``overlay_url_allowed_hosts`` apply, and the '
        'outbound policy: a host that is or resolves to an address that is not public (loopback, '
        'link-local, private, ...) is refused (400, "refused by policy") unless '
        '``outbound_allowed_hosts`` or ``outbound_allowed_networks`` allows it.'),
    'request.base.name': 'The name of the base disk image. Default: the name in the package.',
    'request.base.visibility': (
        'The visibility of the base\'s images. Default: ``private``. ``public`` needs the policy '
        '``cloudlet:base:import:public`` (admin).'),
    # POST /os-cloudlet/negotiate
    'request.overlay': (
        'The overlay\'s header fields (``doc/overlay-format.md``). Give ``overlay`` or '
        '``overlay_url``, not both.'),
    'request.overlay.base_id': 'The overlay\'s ``base_id``: the base VM\'s identity (SHA-256, hex).',
    'request.overlay.format_version': (
        'The overlay\'s format version. One this cloud does not read is answered with '
        '``acceptable`` false.'),
    'request.overlay.codec': (
        'The overlay\'s codec (``zstd``, ``xz``). One this cloud does not read is answered with '
        '``acceptable`` false.'),
    'request.overlay.memory_mb': (
        'The memory the overlay\'s VM had, in MB; it must be the base\'s. Needed only for a base '
        'image without ``cloudlet_memory_mb``.'),
    'request.overlay.vcpus': (
        'The vCPUs the overlay\'s VM had; it must be the base\'s. Needed only for a base image '
        'without ``cloudlet_vcpus``.'),
    'request.overlay.size_bytes': (
        'The overlay\'s size in bytes, for the time estimate (without it ``estimated_seconds`` is '
        '``null``) and the size limit.'),
    'request.overlay_url': (
        'The ``http://`` or ``https://`` URL of an overlay: nova-api reads its header only (at '
        'most 1 MiB), and its size from ``Content-Length``. ``[cloudlet] overlay_url_schemes`` '
        'and ``overlay_url_allowed_hosts`` apply, and the outbound policy: a host that is or '
        'resolves to an address that is not public is refused (400, "refused by policy") unless '
        '``outbound_allowed_hosts`` or ``outbound_allowed_networks`` allows it.'),

    # 202 of the capture actions
    'response.image_id': (
        'The ID of the new Glance image: the base disk image (its companion images are hidden) '
        'or the overlay image. The capture runs on the compute host; the image becomes '
        '``active`` when it ends.'),
    # 202 of cloudlet-handoff
    'response.handoff_id': (
        'The ID of the handoff. The destination server has it as metadata '
        '``cloudlet_handoff_id``; the source server\'s instance action ``cloudlet-handoff`` '
        'records how it ended (event ``cloudlet_handoff``).'),
    # GET /os-cloudlet
    'response.cloudlet': 'What this cloud\'s cloudlet API offers.',
    'response.cloudlet.version': 'The version of the cloudlet API (``1.1``: ``cloudlet-handoff``).',
    'response.cloudlet.min_version': 'The oldest version of the cloudlet API this cloud serves.',
    'response.cloudlet.actions': 'The server actions of the cloudlet API.',
    'response.cloudlet.action_aliases': 'Other names of server actions: alias to action.',
    'response.cloudlet.server_metadata_keys': (
        'The server metadata keys that make ``POST /servers`` synthesize: ``overlay_url`` '
        '(an overlay\'s URL) and ``cloudlet_overlay_id`` (an overlay image\'s ID).'),
    'response.cloudlet.image_property_keys': (
        'The image properties the cloudlet model sets on base and overlay images.'),
    'response.cloudlet.codecs': 'The codecs an overlay can be created with.',
    'response.cloudlet.overlay_format_version': (
        'The overlay format version this cloud writes for a plain overlay (an encrypted one is '
        'version 2).'),
    'response.cloudlet.overlay_format_versions': (
        'The overlay format versions this cloud reads: 1 (plain) and 2 (encrypted, AES-256-GCM; '
        'new in 1.3).'),
    'response.cloudlet.base_package_format_version': (
        'The newest base VM package format version this cloud imports and exports.'),
    'response.cloudlet.limits': 'Limits of this cloud.',
    'response.cloudlet.limits.max_overlay_bytes': (
        'The largest overlay or base VM package accepted, in bytes (``[cloudlet] '
        'max_overlay_bytes``).'),
    'response.cloudlet.limits.overlay_url_schemes': (
        'The URL schemes allowed for ``overlay_url`` and base package URLs.'),
    'response.cloudlet.handoff': 'What ``cloudlet-handoff`` accepts here.',
    'response.cloudlet.handoff.codecs': 'The values of ``options.codec``.',
    'response.cloudlet.handoff.destinations': (
        'The names that ``destination.cloud`` may give (``[cloudlet_handoff] destinations``).'),
    'response.cloudlet.handoff.credential_kinds': 'The kinds of ``credential``.',
    'response.cloudlet.lease': (
        'The bounds of a lease (server metadata ``cloudlet_lease_seconds`` at create, '
        '``cloudlet-heartbeat``).'),
    'response.cloudlet.lease.min_seconds': 'The shortest lease, in seconds.',
    'response.cloudlet.lease.max_seconds': 'The longest lease, in seconds.',
    'response.cloudlet.lease.grace_seconds': (
        'Seconds after a lease ran out before the server is deleted.'),
    'response.cloudlet.links': (
        'Links to the discovery document, to the base imports and to the negotiation call.'),
    # /os-cloudlet/bases
    'response.base': 'A base VM package import.',
    'response.bases': 'The base imports of the caller\'s project (an admin\'s: all).',
    'response.base.id': 'The ID of the import.',
    'response.base.name': (
        'The name given to the import, or ``null``; once ``active``, the base disk image\'s name.'),
    'response.base.url': 'The package URL, its user name and password left out.',
    'response.base.visibility': 'The visibility of the base\'s images.',
    'response.base.status': (
        'The state of the import, in this order; ``active`` and ``error`` are final.'),
    'response.base.progress': 'Progress of the current stage.',
    'response.base.progress.stage': 'The current stage, or ``null``.',
    'response.base.progress.bytes_done': 'Bytes done in the current stage.',
    'response.base.progress.bytes_total': 'Bytes of the current stage, or ``null`` if not known.',
    'response.base.error': 'Why the import failed (status ``error``), else ``null``.',
    'response.base.base_id': 'The base identity (SHA-256, hex) once ``active``, else ``null``.',
    'response.base.image_id': 'The base disk image\'s ID once ``active``, else ``null``.',
    'response.base.companion_image_ids': (
        'The IDs of the base\'s hidden companion images once ``active``, by ``cloudlet_type``.'),
    'response.base.project_id': 'The project that asked for the import.',
    'response.base.user_id': 'The user that asked for the import.',
    'response.base.created_at': 'When the import was asked for (UTC, ISO 8601).',
    'response.base.updated_at': 'When the import record last changed (UTC, ISO 8601).',
    'response.base.links': _LINKS,
    # 200 of POST /os-cloudlet/negotiate
    'response.negotiation': 'Whether this cloud can run the overlay now, and how.',
    'response.negotiation.acceptable': (
        'Whether this cloud can run the overlay now: the base is here, a flavor fits it and a '
        'compute host has room for that flavor (a snapshot: nothing is reserved).'),
    'response.negotiation.reason': (
        'Why not, in one sentence, when ``acceptable`` is false (the first obstacle of: format '
        'version or codec not supported, overlay over the size limit, unknown base, no flavor '
        'with exactly the base\'s memory and vCPUs, no capacity); else ``null``.'),
    'response.negotiation.base_id': 'The overlay\'s ``base_id``.',
    'response.negotiation.base_image_id': (
        'The base disk image the server would boot from (the ``imageRef`` of ``POST '
        '/servers``), or ``null`` when the base is unknown or was not looked up.'),
    'response.negotiation.flavor_id': (
        'The flavor it would use (the one with the smallest disk, among those with exactly the '
        'base\'s memory and vCPUs and room on a host), or ``null``.'),
    'response.residue': 'The destination side of a handoff, on the server\'s compute host.',
    'response.residue.state': (
        'Where the residue of the handoff is: ``waiting`` (the server is still scheduled or its '
        'compute host is fetching the base), ``ready`` (the base is in place: the source may send the '
        'VM\'s memory), ``receiving``, ``received`` (applied; the server is being restored), '
        '``failed``.'),
    'response.residue.bytes_received': 'Bytes of the residue the compute host has taken so far.',
    'response.residue.reason': 'Why the residue was given up (``failed``), else null.',
    'response.negotiation.estimated_seconds': (
        'An estimate of the synthesis time on the compute host, from fetch to VM resumed '
        '(scheduling and networking not included): the overlay\'s size over ``[cloudlet] '
        'negotiate_link_mbps``, plus apply and restore times measured in '
        '``doc/benchmarks.md``. ``null`` when not acceptable or the size is not known.'),
    'response.negotiation.format_version': 'The overlay\'s format version.',
    'response.negotiation.codec': (
        'The overlay\'s codec (``auto`` for a header that names none: each segment names '
        'its own).'),
}


def _types(schema):
    kind = schema.get('type')
    kinds = kind if isinstance(kind, list) else [kind]
    named = [k for k in kinds if k and k != 'null']
    if not named and 'oneOf' in schema:
        named = sorted({b.get('type') for b in schema['oneOf']} - {None})
    return ' or '.join(named) or 'object'


def _branches(schema):
    """The object schemas whose properties a body may carry (oneOf: each branch)."""
    if 'oneOf' in schema:
        return schema['oneOf']
    return [schema]


def _properties(schema):
    """{name: (schema, required)}: required only if every branch requires it."""
    branches = _branches(schema)
    found = {}
    for branch in branches:
        for name, sub in branch.get('properties', {}).items():
            found.setdefault(name, sub)
    return {name: (sub, all(name in b.get('required', ()) for b in branches))
            for name, sub in found.items()}


def _facts(schema, request):
    """What the schema fixes that a reader needs: enum values, lengths (requests)."""
    facts = []
    if 'enum' in schema:
        facts.append('One of ' + ', '.join('``%s``' % v for v in schema['enum']) + '.')
    if request and 'maxLength' in schema:
        facts.append('%d to %d characters.' % (schema.get('minLength', 0), schema['maxLength']))
    return facts


def walk(schema, path, required, request, out):
    """Add the entries of `schema` (the value at `path`) and of everything under it."""
    entry = {'in': 'body', 'required': required, 'type': _types(schema),
             'schema': schema, 'request': request}
    if path in out and out[path]['schema'] is not schema:
        raise ValueError('%s: two different schemas under one key' % path)
    out[path] = entry
    if schema.get('type') == 'array' and path.rsplit('.', 1)[-1] in ITEMS_AS:
        items = schema.get('items', {})
        prefix = path.rsplit('.', 1)[0] + '.' + ITEMS_AS[path.rsplit('.', 1)[-1]]
        for name, (sub, sub_required) in _properties(items).items():
            walk(sub, prefix + '.' + name, sub_required, request, out)
        return
    for name, (sub, sub_required) in _properties(schema).items():
        walk(sub, path + '.' + name, sub_required, request, out)


def collect(schemas):
    """{key: entry} of every body parameter."""
    out = {}
    for table, prefix in ((REQUESTS, 'request'), (RESPONSES, 'response')):
        for name in table:
            top = getattr(schemas, name)
            for key, (sub, required) in _properties(top).items():
                walk(sub, prefix + '.' + key, required, prefix == 'request', out)
    return out


def undocumented(schemas):
    """Names of schemas in the module that no table here mentions."""
    names = {name for name, value in vars(schemas).items()
             if not name.startswith('_') and isinstance(value, dict)}
    return sorted(names - set(REQUESTS) - set(RESPONSES) - set(NOT_DOCUMENTED))


def _description(key, entry):
    text = entry['schema'].get('description') or DESCRIPTIONS.get(key)
    if not text:
        raise ValueError('%s: no description (add one to DESCRIPTIONS in %s)' % (key, __file__))
    return ' '.join([text] + _facts(entry['schema'], entry['request']))


def _yaml_block(key, where, required, kind, description):
    lines = ['%s:' % key, '  description: |']
    wrapped = textwrap.wrap(description, 92, break_long_words=False, break_on_hyphens=False)
    lines += ['    ' + line for line in wrapped]
    lines += ['  in: %s' % where, '  required: %s' % ('true' if required else 'false'),
              '  type: %s' % kind]
    return '\n'.join(lines)


def render(schemas):
    """The text of parameters.yaml: path, then body; by key within each (os-api-ref's order)."""
    missing = undocumented(schemas)
    if missing:
        raise ValueError('schemas not in REQUESTS, RESPONSES or NOT_DOCUMENTED: %s'
                         % ', '.join(missing))
    body = collect(schemas)
    stale = sorted(set(DESCRIPTIONS) - set(body))
    if stale:
        raise ValueError('DESCRIPTIONS for no schema field: %s' % ', '.join(stale))
    blocks = ['# Written by tools/api_ref_params.py from api_extensions/schemas.py: do not edit.\n'
              '# Change the schemas, or the descriptions in the generator, and run it again.\n']
    for key in sorted(PATH_PARAMETERS, key=str.lower):
        blocks.append(_yaml_block(key, 'path', True, 'string', PATH_PARAMETERS[key]))
    for key in sorted(body, key=str.lower):
        entry = body[key]
        blocks.append(_yaml_block(key, 'body', entry['required'], entry['type'],
                                  _description(key, entry)))
    return '\n'.join(blocks) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 if FILE is not what would be written')
    parser.add_argument('file', nargs='?', default=OUTPUT)
    args = parser.parse_args(argv)
    from api_extensions import schemas
    text = render(schemas)
    if args.check:
        try:
            with open(args.file) as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print('%s is out of date: run tools/api_ref_params.py' % args.file, file=sys.stderr)
            return 1
        return 0
    with open(args.file, 'w') as f:
        f.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
