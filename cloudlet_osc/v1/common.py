"""Pieces the command modules share: the client, visibility options, deleting many."""

import logging

from osc_lib import exceptions

LOG = logging.getLogger(__name__)


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
