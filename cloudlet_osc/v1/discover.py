"""openstack cloudlet discover: the cloudlets on the local link (DNS-SD `_cloudlet._tcp`), ranked.

No credentials are needed or sent: the command browses for --timeout
seconds, then measures the round-trip time to each cloudlet's Keystone (a TCP
connect) and lists them best first (cloudlet_client.ranking: the base, when
--base names one, then capacity, then the round-trip time). Answers that do
not parse are left out with a warning on stderr.
"""

from osc_lib.command import command
from osc_lib import exceptions

from cloudlet_client import discovery
from cloudlet_client import ranking
from cloudlet_osc.errors import one_line_errors

COLUMNS = ('Name', 'Region', 'Keystone', 'API', 'Bases', 'Free RAM (MB)', 'vCPUs', 'RTT (ms)')
DEFAULT_TIMEOUT = 2.0


def _timeout(text):
    value = float(text)
    if not 0 < value <= 60:
        raise ValueError(text)
    return value


def row(entry):
    advert = entry.cloudlet.advert
    bases = ','.join(advert.bases) + (',…' if advert.bases_more else '')
    rtt = round(entry.rtt * 1000, 1) if entry.rtt is not None else None
    return (entry.cloudlet.name, advert.region, advert.keystone_url, advert.api_version, bases,
            advert.free_ram_mb, advert.free_vcpus, rtt)


class DiscoverCloudlets(command.Lister):
    _description = 'List the cloudlets that advertise themselves on the local link, best first'
    auth_required = False

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--timeout', metavar='<seconds>', type=_timeout, default=DEFAULT_TIMEOUT,
                            help='How long to listen for answers (default: %g s)' % DEFAULT_TIMEOUT)
        parser.add_argument('--base', metavar='<base-id>',
                            help='Rank the cloudlets that advertise this base (its ID or the first 12 hex '
                                 'digits of it) first')
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        base = (parsed_args.base or '').lower() or None
        if base is not None and (len(base) < 12 or any(c not in '0123456789abcdef' for c in base)):
            raise exceptions.CommandError('--base takes a base ID (at least its first 12 hex digits), not %r'
                                          % parsed_args.base)
        found = discovery.browse(parsed_args.timeout)     # a link without multicast: a warning, no rows
        return COLUMNS, [row(entry) for entry in ranking.rank(found, base_id=base)]
