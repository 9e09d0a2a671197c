"""Every oslo.config option of openstack-cloudlet: [cloudlet] and [cloudlet_handoff].

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
    cfg.IntOpt('handoff_receive_timeout', default=600, min=1,
               help='Destination side of a VM handoff: seconds a spawn waits for its residue image '
                    '(an overlay image with cloudlet_handoff_id, still being uploaded by the source '
                    'cloud) to become active before the build fails.'),
]

HANDOFF_GROUP = cfg.OptGroup(
    'cloudlet_handoff', title='openstack-cloudlet VM handoff (source side)',
    help='The cloudlet-handoff server action: this cloud streams a running server\'s residue to '
         'another OpenStack cloud and the server continues there (doc/handoff.md).')

handoff_opts = [
    cfg.DictOpt('destinations', default={},
                help='Destinations users may name with destination.cloud: name:auth_url pairs '
                     '(the Keystone v3 URL of each destination cloud), e.g. '
                     '"edge-b:https://edge-b.example.net:5000/v3".'),
    cfg.StrOpt('ca_file',
               help='CA bundle to verify the destination clouds\' TLS certificates with. Unset: '
                    'the system\'s trust store.'),
    cfg.BoolOpt('insecure', default=False,
                help='Do not verify the destination clouds\' TLS certificates (tests only).'),
    cfg.IntOpt('connect_timeout', default=30, min=1,
               help='Seconds to wait for a connection to a destination cloud\'s API.'),
    cfg.IntOpt('stall_timeout', default=60, min=1,
               help='Seconds without progress of the residue upload (or without an answer from the '
                    'destination) after which the handoff fails and the server stays here.'),
    cfg.IntOpt('activate_timeout', default=300, min=1,
               help='Seconds to wait, once the residue is uploaded, for the destination server to '
                    'become ACTIVE; the VM stays paused here meanwhile. Past it the handoff fails, '
                    'the destination server is deleted and the VM resumes here.'),
    cfg.StrOpt('destination_networks', default='source',
               choices=[('source', 'auto when the server has ports here, none when it has none'),
                        ('none', 'no ports'),
                        ('auto', 'the destination project\'s network, or nova\'s automatic '
                                 'allocation')],
               help='The "networks" of the destination server. When the server has a floating IP '
                    'here, the destination server gets one from the destination\'s external '
                    'network, and the floating IPs here are released with the server.'),
    cfg.IntOpt('max_downtime_ms', default=300, min=1,
               help='Longest pause of the VM for the last memory iteration of a handoff, in '
                    'milliseconds (QEMU\'s migration downtime limit).'),
]


def register_opts(conf):
    conf.register_group(GROUP)
    conf.register_opts(opts, group=GROUP)
    conf.register_group(HANDOFF_GROUP)
    conf.register_opts(handoff_opts, group=HANDOFF_GROUP)


def list_opts():
    return [(GROUP, opts), (HANDOFF_GROUP, handoff_opts)]
