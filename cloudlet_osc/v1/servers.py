"""openstack cloudlet server synthesize | resume-base: stock POST /servers on a base disk image.

CloudletDriver restores the base's memory instead of booting the image; the
server metadata overlay_url (an http(s) URL the compute host streams) or
cloudlet_overlay_id (an overlay image) makes it apply an overlay first.
"""

import os

from osc_lib.cli import parseractions
from osc_lib.command import command
from osc_lib import exceptions

from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_osc import client as client_mod
from cloudlet_osc.errors import one_line_errors
from cloudlet_osc import flavors
from cloudlet_osc import overlay_source
from cloudlet_osc import progress
from cloudlet_osc import trust
from cloudlet_osc.v1 import common
from cloudlet_osc import wait

SERVER_COLUMNS = ('id', 'name', 'status', 'flavor', 'base', 'base_image_id', 'overlay', 'fault')
SERVER_DONE = ('ACTIVE', 'ERROR')
SERVER_TIMEOUT = 1800
RESERVED_METADATA = (props.META_OVERLAY_URL, props.META_OVERLAY_ID, props.OVERLAY_KEY_ID)


def parse_networks(values):
    """--network values -> nova's "networks": "auto" (the default, as `openstack server
    create`: the project's network), "none", or [{"uuid": ...}].
    """
    values = list(values or ['auto'])
    if len(values) == 1 and values[0] in ('none', 'auto'):
        return values[0]
    wrong = [v for v in values if not client_mod.is_uuid(v)]
    if wrong:
        raise exceptions.CommandError('--network takes none or auto (alone) or network IDs, not %s'
                                      % ', '.join(wrong))
    return [{'uuid': v} for v in values]


def show_server(server, base_image):
    metadata = server.get('metadata') or {}
    image = server.get('image') or {}
    row = {
        'id': server['id'],
        'name': server.get('name'),
        'status': server.get('status'),
        'flavor': (server.get('flavor') or {}).get('original_name'),
        'base': base_image.get('name'),
        'base_image_id': image.get('id') if isinstance(image, dict) else image,
        'overlay': metadata.get(props.META_OVERLAY_URL) or metadata.get(props.META_OVERLAY_ID),
        'fault': (server.get('fault') or {}).get('message'),
    }
    return SERVER_COLUMNS, tuple(row[c] for c in SERVER_COLUMNS)


class _CloudletServerCommand(command.ShowOne):
    """Both commands: name, flavor choice, networks, metadata, the request, --wait."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--name', metavar='<name>', required=True, help='Name of the new server')
        parser.add_argument('--flavor', metavar='<flavor>',
                            help="Flavor (name or ID); default: the smallest with the base's RAM and "
                                 "vCPUs and a root disk that holds it")
        parser.add_argument('--network', metavar='<network>', dest='networks', action='append',
                            help='auto (default: the project\'s network), none, or a network ID (repeat for more '
                                 'networks)')
        parser.add_argument('--property', metavar='<key=value>', dest='properties',
                            action=parseractions.KeyValueAction,
                            help='Server metadata (repeat for more)')
        wait.add_arguments(parser, 'the server is ACTIVE (fails with its fault if it goes to ERROR)',
                           SERVER_TIMEOUT)
        return parser

    @staticmethod
    def _request(parsed_args):
        """(networks, metadata) of the request, checked before anything is uploaded."""
        metadata = dict(parsed_args.properties or {})
        reserved = sorted(set(metadata) & set(RESERVED_METADATA))
        if reserved:
            raise exceptions.CommandError('--property %s: set by this command from its arguments'
                                          % ', '.join(reserved))
        return parse_networks(parsed_args.networks), metadata

    def _create(self, cloudlet, parsed_args, base_image, networks, metadata, flavor):
        """POST /servers; returns the new server's id."""
        return cloudlet.create_server(parsed_args.name, base_image['id'], flavor['id'],
                                      networks=networks, metadata=metadata,
                                      trusted_certificates=getattr(parsed_args, 'trusted_certificates', None)
                                      )['id']

    def _show(self, cloudlet, parsed_args, server_id, base_image):
        """The server as it is now, or, with --wait, once ACTIVE (CommandError on ERROR)."""
        if not parsed_args.wait:
            return show_server(cloudlet.get_server(server_id), base_image)
        server = wait.until(lambda: cloudlet.get_server(server_id),
                            lambda s: s.get('status') in SERVER_DONE, parsed_args.timeout,
                            'server %s' % server_id)
        if server['status'] == 'ERROR':
            raise exceptions.CommandError(
                'server %s (%s) is in ERROR: %s' % (parsed_args.name, server_id,
                                                    (server.get('fault') or {}).get('message')
                                                    or 'nova recorded no fault'))
        return show_server(server, base_image)


class SynthesizeServer(_CloudletServerCommand):
    _description = 'Create a server from an overlay: its base resumes from memory with the overlay applied'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('overlay', metavar='<overlay>',
                            help='Overlay: an http(s) URL (fetched by the compute host), a local '
                                 'file (uploaded to Glance first) or an overlay image (name or ID)')
        parser.add_argument('--base', metavar='<base>',
                            help='Base to synthesize on (default: the one the overlay names; give it '
                                 'when this machine cannot reach the overlay URL)')
        trust.add_arguments(parser)
        progress.add_arguments(parser)
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        images = cloudlet.images
        networks, metadata = self._request(parsed_args)
        overlay = overlay_source.resolve(images, parsed_args.overlay, read_url=not parsed_args.base)
        signing_key = trust.check(parsed_args, overlay.kind == overlay_source.FILE)
        base_image = overlay_source.base_image(images, overlay, parsed_args.base)
        flavor = flavors.select(cloudlet, parsed_args.flavor, base_image)
        if overlay.kind != overlay_source.FILE:
            metadata[props.META_OVERLAY_URL if overlay.kind == overlay_source.URL
                     else props.META_OVERLAY_ID] = overlay.location
            if parsed_args.key_id:
                metadata[props.OVERLAY_KEY_ID] = parsed_args.key_id
            server_id = self._create(cloudlet, parsed_args, base_image, networks, metadata, flavor)
            return self._show(cloudlet, parsed_args, server_id, base_image)
        with trust.prepared_file(cloudlet, parsed_args, overlay.location, signing_key) as (path, extra):
            with progress.reporting(parsed_args, self.app.stderr) as bar:
                uploaded = model.upload_overlay(images, path, os.path.basename(overlay.location),
                                                base_image[props.BASE_ID], extra_properties=extra,
                                                progress=bar)
            metadata[props.META_OVERLAY_ID] = uploaded
            try:
                server_id = self._create(cloudlet, parsed_args, base_image, networks, metadata, flavor)
            except exceptions.ClientException:
                # nova refused the request: the image uploaded for it has no user.
                model.delete_quietly(images, [uploaded])
                raise
        return self._show(cloudlet, parsed_args, server_id, base_image)


class ResumeBaseServer(_CloudletServerCommand):
    _description = 'Create a server that resumes a base VM from its memory (no overlay)'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('base', metavar='<base>',
                            help='Base (disk image name or ID, base ID or unique prefix of one)')
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        networks, metadata = self._request(parsed_args)
        base_image = model.find_base(cloudlet.images, parsed_args.base)
        flavor = flavors.select(cloudlet, parsed_args.flavor, base_image)
        server_id = self._create(cloudlet, parsed_args, base_image, networks, metadata, flavor)
        return self._show(cloudlet, parsed_args, server_id, base_image)
