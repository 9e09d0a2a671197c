"""`cloudlet-reaper`: delete the servers whose lease ran out (cloudlet_nova/leases/reaper.py).

    cloudlet-reaper --config-file /etc/nova/cloudlet-reaper.conf

Reads [cloudlet_lease] (grace_seconds, reap_interval, and the keystoneauth
options of the service user it acts as: it needs to list every project's
servers and delete them, e.g. nova's own service user). Stops on SIGTERM or
SIGINT, between two passes.
"""

import signal
import sys
import threading

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslo_log import log as logging

from cloudlet_nova import conf as cloudlet_conf
from cloudlet_nova.leases import reaper

GROUP = 'cloudlet_lease'
LOG = logging.getLogger('cloudlet-reaper')
# Every field the reaper reads (metadata, OS-EXT-STS:task_state, tenant_id)
# is in the base version, which every nova serves.
MICROVERSION = '2.1'


def compute_adapter(conf):
    group = getattr(conf, GROUP)
    auth = ks_loading.load_auth_from_conf_options(conf, GROUP)
    session = ks_loading.load_session_from_conf_options(conf, GROUP, auth=auth)
    adapter = ks_loading.load_adapter_from_conf_options(conf, GROUP, session=session, auth=auth)
    adapter.default_microversion = MICROVERSION
    adapter.connect_retries = group.connect_retries if group.connect_retries is not None else 2
    return adapter


def main(argv=None):
    conf = cfg.ConfigOpts()
    cloudlet_conf.register_opts(conf)
    cloudlet_conf.register_service_client_opts(conf, GROUP, 'compute')
    logging.register_options(conf)
    conf(sys.argv[1:] if argv is None else argv, project='cloudlet', prog='cloudlet-reaper')
    logging.setup(conf, 'cloudlet-reaper')
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    lease_conf = conf.cloudlet_lease
    LOG.info('cloudlet-reaper: every %d s, reaping servers %d s after their lease ran out',
             lease_conf.reap_interval, lease_conf.grace_seconds)
    reaper.Reaper(compute_adapter(conf), lease_conf.grace_seconds).run(stop, lease_conf.reap_interval)
    LOG.info('cloudlet-reaper: stopped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
