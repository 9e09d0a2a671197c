"""openstack cloudlet base import | export | list | show | delete.

A base VM lives in Glance as four linked images (cloudlet_glance.model). Its
handle is the base disk image: `id` is that image's id (what `openstack
server create --image` takes), `base_id` the content identity overlays name.
A package given as an http(s) URL is imported by nova-api itself
(POST /os-cloudlet/bases); such an import has a record of its own, which
`base show` and `base delete` also accept by its id.
"""

import os
import urllib.parse

from osc_lib.cli import format_columns
from osc_lib.cli import parseractions
from osc_lib.command import command
from osc_lib import exceptions

from cloudlet_glance import errors as glance_errors
from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_osc import client as client_mod
from cloudlet_osc.errors import one_line_errors
from cloudlet_osc import progress
from cloudlet_osc.v1 import common
from cloudlet_osc import wait

BASE_COLUMNS = ('id', 'name', 'base_id', 'status', 'visibility', 'memory_mb', 'vcpus', 'min_disk_gb',
                'disk_size', 'memory_size', 'machine', 'memory_image_id', 'owner', 'created_at')
IMPORT_COLUMNS = ('id', 'name', 'status', 'progress', 'url', 'visibility', 'base_id', 'image_id',
                  'companion_image_ids', 'error', 'created_at', 'updated_at')
IMPORT_DONE = ('active', 'error')
IMPORT_TIMEOUT = 3600


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def base_row(disk_image, memory_image=None):
    """The base as shown, from its disk image (and memory image, for its size)."""
    return {
        'id': disk_image['id'],
        'name': disk_image.get('name'),
        'base_id': disk_image.get(props.BASE_ID),
        'status': disk_image.get('status'),
        'visibility': disk_image.get('visibility'),
        'memory_mb': _int(disk_image.get(props.MEMORY_MB)),
        'vcpus': _int(disk_image.get(props.VCPUS)),
        'min_disk_gb': _int(disk_image.get(props.MIN_DISK)),
        'disk_size': disk_image.get('size'),
        'memory_size': (memory_image or {}).get('size'),
        'machine': disk_image.get(props.MACHINE),
        'memory_image_id': disk_image.get(props.BASE_MEMORY),
        'owner': disk_image.get('owner'),
        'created_at': disk_image.get('created_at'),
    }


def show_base(images, disk_image):
    """ShowOne output of a base (one more request: the memory image, for its size)."""
    memory_image = None
    memory_id = disk_image.get(props.BASE_MEMORY)
    if memory_id:
        try:
            memory_image = images.get(memory_id)
        except glance_errors.ImageNotFound:
            pass        # an incomplete base still shows; its memory_size stays empty
    row = base_row(disk_image, memory_image)
    return BASE_COLUMNS, tuple(row[c] for c in BASE_COLUMNS)


def show_import(record):
    """ShowOne output of a server-side import record."""
    row = dict(record, progress=format_columns.DictColumn(record.get('progress') or {}),
               companion_image_ids=format_columns.DictColumn(record.get('companion_image_ids') or {}))
    return IMPORT_COLUMNS, tuple(row.get(c) for c in IMPORT_COLUMNS)


def _is_url(text):
    return urllib.parse.urlsplit(text).scheme.lower() in ('http', 'https')


def _base_or_import(ref, on_base, on_import):
    """on_base(ref); for a UUID that no base image has, on_import(ref) (an import record's id)."""
    try:
        return on_base(ref)
    except glance_errors.ImageNotFound as not_a_base:
        if not client_mod.is_uuid(ref):
            raise
        try:
            return on_import(ref)
        except exceptions.NotFound:
            raise not_a_base from None


class ImportBase(command.ShowOne):
    _description = 'Import a base VM package into Glance, from this machine or by URL through nova-api'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('package', metavar='<package-or-url>',
                            help='A base VM package (.zip): a local file, validated and uploaded from '
                                 'here, or an http(s) URL that nova-api downloads and imports')
        parser.add_argument('--name', metavar='<name>',
                            help='Name of the base (default: the name in the package)')
        common.add_visibility_arguments(parser, 'base')
        wait.add_arguments(parser, 'a URL import is done and show the base (a local package is '
                                   'always imported before the command returns)', IMPORT_TIMEOUT)
        common.add_tmp_dir_argument(parser, 'unpack and check a local package')
        progress.add_arguments(parser)
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        if _is_url(parsed_args.package):
            return self._import_url(cloudlet, parsed_args)
        if not os.path.isfile(parsed_args.package):
            raise exceptions.CommandError('%s: no such file (give a base VM package or an http(s) URL)'
                                          % parsed_args.package)
        with progress.reporting(parsed_args, self.app.stderr) as bar:
            result = model.import_base_package(cloudlet.images, parsed_args.package,
                                               name=parsed_args.name, visibility=parsed_args.visibility,
                                               progress=bar, workdir=parsed_args.tmp_dir)
        return show_base(cloudlet.images, cloudlet.images.get(result.disk_id))

    def _import_url(self, cloudlet, parsed_args):
        record = cloudlet.import_base(parsed_args.package, name=parsed_args.name,
                                      visibility=parsed_args.visibility)
        if not parsed_args.wait:
            return show_import(record)
        with progress.reporting(parsed_args, self.app.stderr) as bar:
            def fetch():
                current = cloudlet.get_base_import(record['id'])
                stage = (current.get('progress') or {}).get('stage')
                if current['status'] not in IMPORT_DONE and stage:
                    bar.update(stage, current['progress'].get('bytes_done') or 0,
                               current['progress'].get('bytes_total'))
                return current
            record = wait.until(fetch, lambda r: r['status'] in IMPORT_DONE, parsed_args.timeout,
                                'base import %s' % record['id'])
        if record['status'] == 'error':
            raise exceptions.CommandError('base import %s failed: %s' % (record['id'], record.get('error')))
        columns, data = show_base(cloudlet.images, cloudlet.images.get(record['image_id']))
        return ('import_id',) + columns, (record['id'],) + data


class ExportBase(command.Command):
    _description = 'Download a base VM from Glance as a base VM package (.zip)'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('base', metavar='<base>',
                            help='Base (disk image name or ID, base ID or unique prefix of one)')
        parser.add_argument('file', metavar='<file>', help='The package to write')
        common.add_tmp_dir_argument(parser, 'download and re-check the base')
        progress.add_arguments(parser)
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        images = common.client(self).images
        with progress.reporting(parsed_args, self.app.stderr) as bar:
            model.export_base_package(images, parsed_args.base, parsed_args.file, progress=bar,
                                      workdir=parsed_args.tmp_dir)


class ListBase(command.Lister):
    _description = 'List the base VMs in Glance (or, with --imports, the imports nova-api runs)'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--imports', action='store_true',
                            help='List the server-side imports of base packages by URL instead')
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        if parsed_args.imports:
            return (('ID', 'Name', 'Status', 'Progress', 'Base ID', 'Image ID', 'Error'),
                    [(r['id'], r.get('name'), r['status'],
                      format_columns.DictColumn(r.get('progress') or {}),
                      r.get('base_id'), r.get('image_id'), r.get('error'))
                     for r in cloudlet.list_base_imports()])
        rows = [base_row(image) for image in model.list_bases(cloudlet.images)]
        columns = ('id', 'name', 'base_id', 'memory_mb', 'vcpus', 'disk_size', 'status', 'visibility')
        headers = ('ID', 'Name', 'Base ID', 'Memory (MB)', 'vCPUs', 'Disk Size', 'Status', 'Visibility')
        return headers, [tuple(row[c] for c in columns) for row in rows]


class CreateBase(command.ShowOne):
    _description = ("Capture a running server as a new base VM (its disk and memory; the server keeps "
                    "running)")

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>', help='Server to capture (name or ID)')
        parser.add_argument('--name', metavar='<name>', required=True, help='Name of the base (disk image)')
        parser.add_argument('--property', metavar='<key=value>', dest='properties',
                            action=parseractions.KeyValueAction,
                            help='Image property of the base disk image (repeat for more; cloudlet_* '
                                 'keys are reserved)')
        wait.add_arguments(parser, 'the base is complete (its disk image active), then show it',
                           common.CAPTURE_TIMEOUT)
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        server = cloudlet.find_server(parsed_args.server)
        image_id = cloudlet.create_base(server['id'], parsed_args.name, metadata=parsed_args.properties)
        if not parsed_args.wait:
            return show_base(cloudlet.images, cloudlet.images.get(image_id))
        # The compute host uploads the companions first and the disk last: an active disk image is a
        # complete base.
        return show_base(cloudlet.images, common.wait_for_capture(cloudlet, image_id, server['id'],
                                                                  'base disk image', parsed_args.timeout))


class ShowBase(command.ShowOne):
    _description = 'Show a base VM (or a server-side import, by its ID)'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('base', metavar='<base>',
                            help='Base (disk image name or ID, base ID or unique prefix of one), '
                                 'or the ID of an import by URL')
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        return _base_or_import(
            parsed_args.base,
            lambda ref: show_base(cloudlet.images, model.find_base(cloudlet.images, ref)),
            lambda ref: show_import(cloudlet.get_base_import(ref)))


class DeleteBase(command.Command):
    _description = 'Delete base VM(s): the disk image and its three companion images'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('bases', metavar='<base>', nargs='+',
                            help='Base(s) to delete (disk image name or ID, base ID or unique prefix '
                                 'of one), or the ID of an import by URL (its record, and its images '
                                 'if it completed)')
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        common.delete_each('base', parsed_args.bases, lambda ref: _base_or_import(
            ref, lambda r: model.delete_base(cloudlet.images, r), cloudlet.delete_base_import))
