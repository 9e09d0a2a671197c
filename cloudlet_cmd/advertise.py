"""`cloudlet-advertise`: announce this cloudlet on the local link by DNS-SD (cloudlet_nova/discovery).

    cloudlet-advertise --config-file /etc/nova/cloudlet-advertise.conf [--log-file FILE]

Reads [cloudlet_discovery]: what to advertise and where (instance_name,
keystone_url, region, addresses, refresh_interval), and the keystoneauth
options of the service user it reads the cloud as (auth_type, auth_url,
username, password, ...; it lists every resource provider in Placement, so
e.g. nova's service user). Runs until SIGTERM or SIGINT, then withdraws the
advert and exits 0.

Exit status: 0 stopped by a signal; 1 the mDNS sockets could not be opened;
2 a configuration error (the message names the option).
"""

import signal
import sys

from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslo_log import log as logging

from cloudlet_nova import conf as cloudlet_conf
from cloudlet_nova.discovery import advertiser
from cloudlet_nova.discovery import capacity

GROUP = 'cloudlet_discovery'
LOG = logging.getLogger('cloudlet-advertise')
# Seconds a request to Placement, Glance or nova-api may take when
# [cloudlet_discovery] timeout is unset (keystoneauth's default: no limit).
DEFAULT_TIMEOUT = 20


def cloud_reader(conf):
    """capacity.CloudReader as the user of [cloudlet_discovery]'s keystoneauth options."""
    group = getattr(conf, GROUP)
    auth = ks_loading.load_auth_from_conf_options(conf, GROUP)
    if auth is None:
        raise ValueError('no credentials: set auth_type (e.g. password), auth_url, username, password, ...')
    session = ks_loading.load_session_from_conf_options(conf, GROUP, auth=auth)
    if session.timeout is None:
        session.timeout = DEFAULT_TIMEOUT
    return capacity.CloudReader(session, group.region, group.valid_interfaces, group.endpoint_overrides)


def build(conf):
    group = getattr(conf, GROUP)
    return advertiser.Advertiser(cloud_reader(conf), group.instance_name or group.region, group.region,
                                 group.addresses, keystone_url=group.keystone_url)


def main(argv=None):
    conf = cfg.ConfigOpts()
    cloudlet_conf.register_discovery_opts(conf)
    logging.register_options(conf)
    conf(sys.argv[1:] if argv is None else argv, project='cloudlet', prog='cloudlet-advertise')
    logging.setup(conf, 'cloudlet-advertise')
    try:
        the_advertiser = build(conf)
    except (ksa_exc.ClientException, ValueError, OSError) as exc:
        LOG.error('cloudlet-advertise: [%s] %s', GROUP, exc)
        return 2
    group = getattr(conf, GROUP)
    LOG.info('cloudlet-advertise: %s._cloudlet._tcp.local. on %s, every %d s',
             the_advertiser.instance_name, ', '.join(the_advertiser.addresses), group.refresh_interval)
    try:
        signum = advertiser.run_until_signalled(the_advertiser, group.refresh_interval)
    except OSError as exc:
        LOG.error('cloudlet-advertise: cannot advertise on %s: %s', ', '.join(the_advertiser.addresses), exc)
        return 1
    LOG.info('cloudlet-advertise: stopped (%s)', signal.Signals(signum).name if signum else 'no signal')
    return 0


if __name__ == '__main__':
    sys.exit(main())
