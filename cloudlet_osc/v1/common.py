"""Pieces the command modules share: the client, visibility options, deleting many, waiting for a capture."""

import logging

from osc_lib import exceptions

from cloudlet_glance import errors as glance_errors
from cloudlet_osc import wait

LOG = logging.getLogger(__name__)
CAPTURE_TIMEOUT = 1800
# Glance states after which an image will never become active.
DEAD_STATUSES = ('killed', 'deleted', 'pending_delete')


def client(command):
    """The CloudletClient of a command (plugin.make_client, built once per run by OSC)."""
    return command.app.client_manager.cloudlet


def add_visibility_arguments(parser, what):
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--public', dest='visibility', action='store_const', const='public',
                       help='Make the %s public (Glance policy decides who may)' % what)
    group.add_argument('--private', dest='visibility', action='store_const', const='private',
                       help='Make the %s private to your project (default)' % what)
    parser.set_defaults(visibility='private')


def add_tmp_dir_argument(parser, what):
    parser.add_argument('--tmp-dir', metavar='<directory>', default=None,
                        help='Where to %s (needs room for the whole base; default: the '
                             'system temporary directory)' % what)


def delete_each(kind, refs, delete):
    """Call delete(ref) for every ref; report each failure; CommandError if any failed.

    Like `openstack image delete`: one bad name does not stop the others.
    """
    failed = 0
    for ref in refs:
        try:
            delete(ref)
        except Exception as exc:      # reported per item; the total decides the exit code
            failed += 1
            LOG.error("Failed to delete %s with name or ID '%s': %s", kind, ref, exc)
    if failed:
        raise exceptions.CommandError('Failed to delete %d of %d %ss.' % (failed, len(refs), kind))


def wait_for_capture(cloudlet, image_id, server_id, what, timeout):
    """The image a capture action (create-overlay, create-base) fills, once active.

    CommandError when the capture failed: nova deletes the image of a failed
    capture, or the image ends in a dead state.
    """
    def fetch():
        try:
            return cloudlet.images.get(image_id)
        except glance_errors.ImageNotFound:
            raise exceptions.CommandError(
                '%s %s is gone: capturing server %s failed (openstack server event list %s shows the '
                'createImage action)' % (what, image_id, server_id, server_id))
    image = wait.until(fetch, lambda i: i.get('status') == 'active' or i.get('status') in DEAD_STATUSES,
                       timeout, '%s %s' % (what, image_id))
    if image.get('status') != 'active':
        raise exceptions.CommandError('%s %s is %s: capturing server %s failed'
                                      % (what, image_id, image.get('status'), server_id))
    return image
