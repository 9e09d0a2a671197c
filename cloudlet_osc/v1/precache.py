"""openstack cloudlet base precache BASE [BASE ...] --aggregate AGG [--wait]

Fetches bases onto every compute host of a host aggregate before anyone asks
for them, so that the first synthesis there restores without a download. It
is nova's own aggregate image pre-cache (POST /os-aggregates/{id}/images,
microversion 2.81, admin only by nova's default policy): nova asks each host
of the aggregate, and CloudletDriver.cache_image fetches the base (disk and
memory) and makes its RAM file.

nova keeps no record of the results to read back (only its versioned
notifications, `aggregate.cache_images.progress`, say per host what failed).
So the command reads what each host reports to Placement: a host holding the
base of an image has the trait CUSTOM_CLOUDLET_IMAGE_<image id> (reported
within the host's update_resources_interval). One row per host and base:
`cached`, `pending`, or `skipped: nova-compute is down`. With --wait it waits
until every host that is up holds the bases, and fails naming those that do
not when the time is up.
"""

from osc_lib.command import command
from osc_lib import exceptions

from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_osc.errors import one_line_errors
from cloudlet_osc.v1 import common
from cloudlet_osc import wait

COLUMNS = ('host', 'base', 'image_id', 'status')
CACHED, PENDING, SKIPPED = 'cached', 'pending', 'skipped: nova-compute is down'
DEFAULT_TIMEOUT = 1800


def host_rows(cloudlet, hosts, bases):
    """One row per (host, base disk image): what the host reports to Placement now."""
    states = cloudlet.compute_hosts()
    rows = []
    for host in hosts:
        state = states.get(host) or {'state': 'down', 'provider': None}
        traits = set()
        if state['state'] == 'up' and state['provider']:
            traits = cloudlet.provider_traits(state['provider'])
        for image in bases:
            if state['state'] != 'up':
                status = SKIPPED
            else:
                status = CACHED if props.cached_image_trait(image['id']) in traits else PENDING
            rows.append({'host': host, 'base': image.get('name') or image.get(props.BASE_ID, '')[:12],
                         'image_id': image['id'], 'status': status})
    return rows


class PrecacheBase(command.Lister):
    _description = ('Pre-cache base VM(s) on every compute host of an aggregate (nova\'s aggregate '
                    'image pre-cache); shows what each host holds')

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('bases', metavar='<base>', nargs='+',
                            help='Base(s) to pre-cache (disk image name or ID, base ID or unique prefix of one)')
        parser.add_argument('--aggregate', metavar='<aggregate>', required=True,
                            help='Host aggregate (name or ID) whose compute hosts get the bases')
        wait.add_arguments(parser, 'every host that is up holds the bases', DEFAULT_TIMEOUT)
        return parser

    @one_line_errors
    def take_action(self, parsed_args):
        cloudlet = common.client(self)
        bases = [model.find_base(cloudlet.images, ref) for ref in parsed_args.bases]
        aggregate = cloudlet.find_aggregate(parsed_args.aggregate)
        hosts = sorted(aggregate.get('hosts') or ())
        if not hosts:
            raise exceptions.CommandError('aggregate %s has no hosts' % aggregate['name'])
        cloudlet.cache_images(aggregate['id'], [image['id'] for image in bases])
        rows = host_rows(cloudlet, hosts, bases)
        if parsed_args.wait:
            try:
                rows = wait.until(lambda: host_rows(cloudlet, hosts, bases),
                                  lambda found: all(r['status'] != PENDING for r in found),
                                  parsed_args.timeout, 'the pre-cache on %s' % ', '.join(hosts))
            except exceptions.CommandError:
                pending = sorted({r['host'] for r in host_rows(cloudlet, hosts, bases) if r['status'] == PENDING})
                raise exceptions.CommandError(
                    'after %d s, %s do(es) not hold every base: nova\'s aggregate.cache_images.progress '
                    'notification and the host\'s nova-compute log say why' % (parsed_args.timeout,
                                                                               ', '.join(pending)))
        return COLUMNS, [tuple(row[c] for c in COLUMNS) for row in rows]
