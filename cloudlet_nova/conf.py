"""Every oslo.config option of openstack-cloudlet, in the [cloudlet] group.

`list_opts()` feeds oslo-config-generator (etc/cloudlet-config-generator.conf).
Services register the options on nova's CONF with `register_opts(CONF)`.
"""

from oslo_config import cfg

GROUP = cfg.OptGroup('cloudlet', title='openstack-cloudlet options',
                     help='VM synthesis, base VMs and overlays (CloudletDriver and the cloudlet API).')

opts = [
    cfg.StrOpt('state_dir', default='$instances_path/_cloudlet',
               help='Where the compute host caches base VMs (bases/<base id>/) and keeps per-instance '
                    'cloudlet state. Keep it under instances_path so disk accounting sees it.'),
    cfg.ListOpt('overlay_url_schemes', default=['http', 'https'],
                help='URL schemes allowed in the overlay_url server metadata key and in base package '
                     'URLs. file:// is never allowed.'),
    cfg.ListOpt('overlay_url_allowed_hosts', default=[],
                help='If set, overlay and base package URLs must name one of these hosts (exact '
                     'host names or IP addresses). Empty: any host. Set it: the compute host fetches '
                     'the URL, so an open list lets users reach whatever the compute host can.'),
    cfg.IntOpt('max_overlay_bytes', default=16 * 1024 ** 3, min=1,
               help='Largest overlay (or base VM package) accepted, in bytes.'),
    cfg.IntOpt('fetch_timeout', default=30, min=1,
               help='Seconds to wait for a connection or for the next bytes of an overlay download.'),
    cfg.IntOpt('max_memory_image_bytes', default=64 * 1024 ** 3, min=1,
               help='Largest launch memory image an overlay may declare, in bytes.'),
    cfg.StrOpt('overlay_codec', default='zstd', choices=['zstd', 'xz'],
               help='Codec of the overlays this host creates: zstd (fast) or xz (smaller, slow).'),
    cfg.IntOpt('base_import_workers', default=2, min=1,
               help='Base VM package imports run at the same time by one nova-api process.'),
    cfg.StrOpt('api_state_dir', default='/var/lib/openstack-cloudlet/api',
               help='Where nova-api keeps the records of base VM imports (one JSON file each).'),
]


def register_opts(conf):
    conf.register_group(GROUP)
    conf.register_opts(opts, group=GROUP)


def list_opts():
    return [(GROUP, opts)]
