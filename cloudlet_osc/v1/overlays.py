"""openstack cloudlet overlay create | list | show | download | delete.

An overlay is one Glance image (cloudlet_type=cloudlet_overlay) naming the
base it was made against. `overlay create` asks nova for the
cloudlet-create-overlay action: the compute host captures the server's
changes against its base and uploads them into the image the action returns.
"""

import contextlib
import os
import tempfile

from osc_lib.cli import parseractions
from osc_lib.command import command
from osc_lib import exceptions

from cloudlet_client import errors as client_errors
from cloudlet_client import keys
from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_osc.errors import one_line_errors
from cloudlet_osc import progress
from cloudlet_osc import trust
from cloudlet_osc.v1 import common
from cloudlet_osc import wait

OVERLAY_COLUMNS = ('id', 'name', 'base_id', 'base_name', 'status', 'size', 'codec', 'encryption_key_id',
                   'signing_certificate', 'visibility', 'owner', 'created_at')
CODECS = ('zstd', 'xz')            # api_extensions.schemas.CODECS: what the action accepts
CAPTURE_TIMEOUT = common.CAPTURE_TIMEOUT


def show_overlay(image):
    row = {
        'id': image['id'], 'name': image.get('name'), 'base_id': image.get(props.BASE_ID),
        'base_name': image.get(props.BASE_NAME), 'status': image.get('status'),
        'size': image.get('size'), 'codec': image.get(props.CODEC),
        'encryption_key_id': image.get(props.OVERLAY_KEY_ID),
        'signing_certificate': image.get(props.SIGNATURE_CERTIFICATE),
        'visibility': image.get('visibility'), 'owner': image.get('owner'),
        'created_at': image.get('created_at'),
    }
    return OVERLAY_COLUMNS, tuple(row[c] for c in OVERLAY_COLUMNS)


def _is_base_id(text):
    return len(text) == 64 and all(c in '0123456789abcdef' for c in text)


class CreateOverlay(command.ShowOne):
    _description = "Capture a server's changes against its base as an overlay image"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Server (name or ID), synthesized or resumed from a cloudlet base')
        parser.add_argument('--name', metavar='<name>', required=True, help='Name of the overlay image')
        parser.add_argument('--codec', choices=CODECS,
                            help='Compression of the overlay (default: the cloud\'s, zstd)')
        parser.add_argument('--property', metavar='<key=value>', dest='properties',
                            action=parseractions.KeyValueAction,
                            help='Image property of the overlay (repeat for more; cloudlet_* keys '
                                 'are reserved)')
        trust.add_key_arguments(parser, "Encrypt the overlay (AES-256-GCM) with a new key kept in the project's "
                                        "key manager (Barbican); its ID is the image's encryption_key_id",
                                'Encrypt the overlay with this key manager key (a 256-bit symmetric key)')
        wait.add_arguments(parser, 'the overlay image is active, then show it', CAPTURE_TIMEOUT)
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        server = cloudlet.find_server(parsed_args.server)
        key_id, manager = parsed_args.key_id, None
        if parsed_args.encrypt:
            manager = keys.KeyManager(cloudlet.session, cloudlet.region_name, cloudlet.interface)
            try:
                key_id = manager.new_key('overlay %s' % parsed_args.name)[1]
            except client_errors.ClientError as exc:
                raise exceptions.CommandError(str(exc)) from None
        try:
            image_id = cloudlet.create_overlay(server['id'], parsed_args.name,
                                               metadata=parsed_args.properties, codec=parsed_args.codec,
                                               encryption_key_id=key_id)
        except Exception:
            if manager is not None:       # the key created for this overlay has no use
                with contextlib.suppress(client_errors.ClientError):
                    manager.delete(key_id)
            raise
        if not parsed_args.wait:
            return show_overlay(cloudlet.images.get(image_id))
        return show_overlay(common.wait_for_capture(cloudlet, image_id, server['id'], 'overlay image',
                                                    parsed_args.timeout))


class ListOverlay(command.Lister):
    _description = 'List overlay images'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--base', metavar='<base>',
                            help='Only the overlays of this base (base ID, or a base in Glance: '
                                 'disk image name or ID, unique base ID prefix)')
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        images = common.client(self).images
        base_id = parsed_args.base
        # A full base id needs no base in Glance: its overlays may outlive it.
        if base_id and not _is_base_id(base_id):
            base_id = model.find_base(images, base_id)[props.BASE_ID]
        return (('ID', 'Name', 'Base ID', 'Size', 'Status', 'Codec'),
                [(i['id'], i.get('name'), i.get(props.BASE_ID), i.get('size'), i.get('status'),
                  i.get(props.CODEC)) for i in model.list_overlays(images, base_id)])


class ShowOverlay(command.ShowOne):
    _description = 'Show an overlay image'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('overlay', metavar='<overlay>', help='Overlay (image name or ID)')
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        return show_overlay(model.find_overlay(common.client(self).images, parsed_args.overlay))


class DownloadOverlay(command.Command):
    _description = 'Download an overlay image to a file (or stdout)'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('overlay', metavar='<overlay>', help='Overlay (image name or ID)')
        parser.add_argument('--file', metavar='<file>',
                            help='Where to write the overlay (default: stdout, unless it is a terminal)')
        progress.add_arguments(parser)
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        images = common.client(self).images
        if parsed_args.file is None:
            stdout = getattr(self.app.stdout, 'buffer', self.app.stdout)
            if self.app.stdout.isatty():
                raise exceptions.CommandError('not writing an overlay to a terminal: give --file or '
                                              'redirect stdout')
            with progress.reporting(parsed_args, self.app.stderr) as bar:
                model.download_overlay(images, parsed_args.overlay, stdout, progress=bar)
            stdout.flush()
            return
        # Into a temporary file beside the target: a failed download leaves no partial overlay.
        target = os.path.abspath(parsed_args.file)
        fd, part = tempfile.mkstemp(prefix='.%s.' % os.path.basename(target), suffix='.part',
                                    dir=os.path.dirname(target))
        try:
            with os.fdopen(fd, 'wb') as out, progress.reporting(parsed_args, self.app.stderr) as bar:
                model.download_overlay(images, parsed_args.overlay, out, progress=bar)
            os.replace(part, target)
        except BaseException:
            os.unlink(part)
            raise


class DeleteOverlay(command.Command):
    _description = 'Delete overlay image(s)'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('overlays', metavar='<overlay>', nargs='+',
                            help='Overlay(s) to delete (image name or ID)')
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        images = common.client(self).images
        common.delete_each('overlay', parsed_args.overlays,
                           lambda ref: images.delete(model.find_overlay(images, ref)['id']))
