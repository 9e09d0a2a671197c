"""openstack cloudlet server lease | heartbeat: a leased server's lease (cloudlet_client.lease).

A server created with the metadata `cloudlet_lease_seconds` is deleted by
the cloud once its lease runs out (`cloudlet_lease_expires_at`); the
`cloudlet-heartbeat` action renews it. `lease` shows it from the server's
metadata (`--seconds N` sets or changes its length, through a heartbeat);
`heartbeat` renews it now.
"""

from osc_lib.command import command
from osc_lib import exceptions

from cloudlet_client import lease as lease_mod
from cloudlet_osc.errors import one_line_errors
from cloudlet_osc.v1 import common

COLUMNS = ('server_id', 'name', 'seconds', 'expires_at', 'remaining_seconds')


def _seconds(text):
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def show_lease(server, lease):
    remaining = lease.remaining()
    return COLUMNS, (server['id'], server.get('name'), lease.seconds, lease.expires_at,
                     int(remaining) if remaining is not None else None)


class _LeaseCommand(command.ShowOne):

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>', help='Server (name or ID)')
        return parser

    def _heartbeat(self, cloudlet, server, seconds=None):
        return show_lease(server, lease_mod.Lease.from_answer(cloudlet.heartbeat(server['id'], seconds)))


class ShowLease(_LeaseCommand):
    _description = ("Show a server's lease: its length, when it runs out and the seconds left "
                    "(negative once it has); --seconds sets or changes it")

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--seconds', metavar='<seconds>', type=_seconds,
                            help='Set the lease to this many seconds from now (starts one on a server '
                                 'without a lease; the cloud bounds it)')
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        server = cloudlet.find_server(parsed_args.server)
        if parsed_args.seconds is not None:
            return self._heartbeat(cloudlet, server, parsed_args.seconds)
        lease = lease_mod.Lease.from_metadata(server.get('metadata'))
        if lease is None:
            raise exceptions.CommandError('server %s has no lease (--seconds N starts one)'
                                          % parsed_args.server)
        return show_lease(server, lease)


class HeartbeatServer(_LeaseCommand):
    _description = "Renew a leased server's lease now (the cloud deletes a server whose lease runs out)"

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        return self._heartbeat(cloudlet, cloudlet.find_server(parsed_args.server))
