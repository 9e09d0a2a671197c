"""Every oslo.config option of openstack-cloudlet: [cloudlet], [cloudlet_handoff], [cloudlet_lease],
[cloudlet_trust], [cloudlet_discovery] (cloudlet-advertise registers it: `register_discovery_opts`).

`list_opts()` feeds oslo-config-generator (etc/cloudlet-config-generator.conf).
Services register the options on nova's CONF with `register_opts(CONF)`.
"""

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslo_config import types

from cloudlet_engine import outbound


class NetworkType(types.String):
    """An IPv4 or IPv6 network in CIDR notation; a bad one is an error when the option is read."""

    def __init__(self):
        super().__init__(type_name='network (CIDR) value')

    def __call__(self, value):
        return str(outbound.parse_network(super().__call__(value)))


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
                     'host names or IP addresses). Empty: any host the outbound policy allows. '
                     'It only narrows: a host listed here is still refused when its address is '
                     'not public, unless outbound_allowed_hosts or outbound_allowed_networks allows '
                     'it (doc/outbound-policy.md).'),
    cfg.ListOpt('outbound_allowed_hosts', default=[],
                help='The outbound policy (doc/outbound-policy.md): host names that nova-api and '
                     'the compute hosts may connect to on a user\'s behalf whatever addresses they '
                     'resolve to (exact, case-insensitive; an IP address here allows that address). '
                     'The policy covers overlay_url, base package URLs, the negotiation\'s overlay '
                     'URL and handoff destinations (Keystone, the catalog\'s endpoints, redirects). '
                     'By default only public addresses are allowed: loopback, link-local (the '
                     'metadata service 169.254.169.254), private, shared, multicast, reserved and '
                     'documentation addresses are refused, also inside IPv6 addresses that embed '
                     'IPv4 ones.'),
    cfg.ListOpt('outbound_allowed_networks', default=[], item_type=NetworkType(),
                help='The outbound policy: networks (CIDR, e.g. 10.20.0.0/16 or 10.20.0.5/32) '
                     'whose addresses nova-api and the compute hosts may connect to on a user\'s '
                     'behalf, beside the public addresses. A host name is resolved once and every '
                     'address it resolves to must be allowed. Allow only the networks that serve '
                     'overlays, base packages or destination clouds: never the management network '
                     'or 169.254.0.0/16.'),
    cfg.IntOpt('max_overlay_bytes', default=16 * 1024 ** 3, min=1,
               help='Largest overlay (or base VM package) accepted, in bytes.'),
    cfg.IntOpt('fetch_timeout', default=30, min=1,
               help='Seconds to wait for a connection or for the next bytes of an overlay download.'),
    cfg.IntOpt('max_memory_image_bytes', default=64 * 1024 ** 3, min=1,
               help='Largest launch memory image an overlay may declare, in bytes.'),
    cfg.StrOpt('memory_restore', default='ram_file',
               choices=[('ram_file', 'guest RAM mapped copy-on-write from the base\'s RAM file (made on '
                                     'first use); only the pages that differ are restored'),
                        ('full_image', 'libvirt restores the full memory image, every page')],
               help='How a resume or synthesis restores guest memory (doc/nova-driver.md, "Memory '
                    'restore"). ram_file falls back to full_image for a base it cannot serve (one with a '
                    'memory balloon), saying so in the log.'),
    cfg.IntOpt('base_store_budget_mb', default=0, min=0,
               help='Bytes (in MiB) the bases cached on this compute host may take on disk, '
                    '0 for no limit. Above it, nova\'s image cache pass ([image_cache] '
                    'manager_interval) deletes the bases no instance on this host uses, least '
                    'recently used first, but none used less than [image_cache] '
                    'remove_unused_original_minimum_age_seconds ago, and none at all when '
                    '[image_cache] remove_unused_base_images is false. A deleted base is '
                    'fetched again from Glance when it is next needed.'),
    cfg.FloatOpt('base_weight_multiplier', default=10.0,
                 help='nova-scheduler, with cloudlet_nova.scheduler.weigher.BaseWeigher in [filter_scheduler] '
                      'weight_classes: the weight of "this host holds the base of the requested base '
                      'image". The default outweighs the stock weighers (multiplier 1.0 each), so a '
                      'host with the base wins whenever it has room; 0 disables the preference, a '
                      'negative value spreads bases instead.'),
    cfg.StrOpt('overlay_codec', default='zstd', choices=['zstd', 'xz'],
               help='Codec of the overlays this host creates: zstd (fast) or xz (smaller, slow).'),
    cfg.IntOpt('base_import_workers', default=2, min=1,
               help='Base VM package imports run at the same time by one nova-api process.'),
    cfg.StrOpt('api_state_dir', default='/var/lib/openstack-cloudlet/api',
               help='Where nova-api keeps the records of base VM imports (one JSON file each).'),
    cfg.FloatOpt('negotiate_link_mbps', default=25.0, min=0.001,
                 help='The link rate, in Mbit/s, that the synthesis time estimate of POST '
                      '/os-cloudlet/negotiate assumes for bringing an overlay to the compute host '
                      '(doc/benchmarks.md measures synthesis over 25 Mbit/s). The rest of the '
                      'estimate (apply, restore) uses constants measured there.'),
    cfg.IntOpt('handoff_receive_timeout', default=120, min=1,
               help='Destination side of a VM handoff: seconds without a byte of the residue (the '
                    'source cloud streams it through this cloud\'s compute API into the spawning '
                    'server\'s compute host) after which the build fails.'),
    cfg.IntOpt('migration_prepare_timeout', default=600, min=1,
               help='Source side of a cold migration of a cloudlet server: seconds the destination '
                    'compute host may take to fetch the server\'s base before the VM stops; '
                    'longer, and the migration is refused, the VM untouched.'),
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
    cfg.IntOpt('ready_timeout', default=600, min=1,
               help='Seconds to wait for the destination server\'s compute host to be ready for '
                    'the VM\'s memory (its base fetched and in place, the first use of a base on '
                    'that host included) before the handoff fails; the VM runs here meanwhile.'),
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
    cfg.BoolOpt('carry_nics', default=True,
                help='Carry the server\'s NICs through a handoff: the destination server gets ports '
                     'made with the VM\'s MACs on the destination project\'s network (Neutron lets '
                     'a network\'s owner choose a port\'s MAC), the NICs stay plugged until the VM '
                     'pauses, and the guest renews its address at the destination. When off, or when '
                     'it cannot be done (the handoff record says why), the NICs are unplugged before '
                     'the residue is sent and the destination server gets new ones.'),
    cfg.IntOpt('cleanup_retry_interval', default=30, min=1,
               help='Seconds between two tries to delete what a failed handoff left at the '
                    'destination (its server, floating IP, ports, residue key) when the roll back '
                    'could not reach it, e.g. with the link down; and to ask the destination, after '
                    'a failure once the whole residue was sent, whether its server runs the VM (then '
                    'the source server is deleted) or is gone (then the VM resumes at the source).'),
    cfg.IntOpt('cleanup_retry_timeout', default=3600, min=0,
               help='How long to retry deleting what a failed handoff left at the destination, and '
                    'asking where the VM runs, in seconds (0: no retry). The destination credential is '
                    'kept, in the key manager and in the compute host\'s memory, until then; what is '
                    'still left is then named in the log and the handoff record (destination_leftovers; '
                    'a VM left paused at the source: in_doubt with settled null). A stop of nova-compute '
                    'ends the retries.'),
    cfg.IntOpt('max_downtime_ms', default=100, min=1,
               help='Longest pause of the VM for the last memory iteration of a handoff, in '
                    'milliseconds (QEMU\'s migration downtime limit). QEMU pauses the VM once what '
                    'is left fits this time at the pace the residue leaves; the smaller, the fewer '
                    'bytes cross after the pause (and the more iterations before it).'),
    cfg.StrOpt('memory_transfer', default='auto',
               choices=[('auto', 'live where QEMU\'s pre-copy re-sends every page the guest dirties '
                                 '(KVM; TCG from QEMU 9.0), else stopped'),
                        ('live', 'QEMU\'s pre-copy with the VM running; it pauses the VM for the last '
                                 'iteration only'),
                        ('stopped', 'the VM paused before QEMU sends its memory (a longer pause)')],
               help='How a handoff moves the VM\'s memory. Before QEMU 9.0, a live migration of a '
                    'TCG guest (a host without KVM) can miss pages the guest writes meanwhile, and '
                    'the guest arrives with damaged memory; `auto` then pauses the VM first. Set '
                    '`live` only for a QEMU with the fix (commit 03bfc2188f) backported.'),
    cfg.StrOpt('credential_store', default='key_manager',
               choices=[('key_manager', 'nova-api keeps the credential in the key manager (castellan: '
                                        'Barbican) and the RPC message names it; the compute host '
                                        'deletes it when the handoff ends'),
                        ('rpc_message', 'the credential travels in the RPC message (clouds without '
                                        'a key manager)')],
               help='Where the destination credential of a handoff waits for the source compute host.'),
    cfg.StrOpt('residue_encryption', default='auto',
               choices=[('auto', 'encrypt when the destination\'s catalog has a key manager'),
                        ('required', 'refuse a destination without a key manager'),
                        ('off', 'never encrypt')],
               help='Whether the residue crosses encrypted (AES-256-GCM, overlay format version 2): '
                    'a new key is stored in the destination\'s key manager with the handoff\'s '
                    'credential, named in the destination server\'s metadata, and deleted once '
                    'the server is ACTIVE.'),
]

LEASE_GROUP = cfg.OptGroup(
    'cloudlet_lease', title='openstack-cloudlet leases (soft state)',
    help='A server created with metadata cloudlet_lease_seconds lives while its device sends '
         'cloudlet-heartbeat actions; cloudlet-reaper deletes it once the lease has run out and '
         'the grace period has passed. nova-api reads the bounds; cloudlet-reaper reads the rest '
         'and its service credentials (keystoneauth options of this group).')

lease_opts = [
    cfg.IntOpt('min_seconds', default=30, min=1,
               help='Shortest lease a user may ask for, in seconds.'),
    cfg.IntOpt('max_seconds', default=86400, min=1,
               help='Longest lease a user may ask for, in seconds.'),
    cfg.IntOpt('grace_seconds', default=45, min=0,
               help='Seconds after a lease ran out before the reaper deletes the server: time for '
                    'the device to come back (its next heartbeat renews the lease).'),
    cfg.IntOpt('reap_interval', default=10, min=1,
               help='Seconds between two passes of the reaper over the servers with a lease.'),
]

TRUST_GROUP = cfg.OptGroup(
    'cloudlet_trust', title='openstack-cloudlet signed and encrypted overlays',
    help='What a compute host demands of an overlay before the VM runs (doc/trust.md). A signed '
         'overlay carries nova\'s image signature properties (img_signature, '
         'img_signature_hash_method, img_signature_key_type, img_signature_certificate_uuid) on its '
         'Glance image, or in the server metadata for an overlay_url; the certificate is read from '
         'the key manager (castellan, [key_manager] and [barbican]) with the user\'s credentials. '
         'An encrypted overlay names its AES-256 key in the key manager with '
         'cloudlet_overlay_key_id. A present signature is always verified; these options make '
         'one required. A server created with nova\'s trusted_image_certificates (API 2.63) '
         'requires a signature whose certificate those certificates issued, whatever is set here.')

trust_opts = [
    cfg.BoolOpt('verify_overlay_signatures', default=False,
                help='Refuse an overlay that is not signed (as nova\'s [glance] '
                     'verify_glance_signatures does for images): the spawn fails before the VM '
                     'runs. Handoff residues are overlays too: a destination that requires '
                     'signatures refuses unsigned handoffs.'),
    cfg.BoolOpt('enable_certificate_validation', default=False,
                help='Also require the signing certificate to be issued by one of '
                     '`default_trusted_certificate_ids` (when the server names no trusted '
                     'certificates of its own), as nova\'s [glance] option of the same name.'),
    cfg.ListOpt('default_trusted_certificate_ids', default=[],
                help='Key manager ids of the certificates trusted to issue overlay signing '
                     'certificates, when enable_certificate_validation is set.'),
]

DISCOVERY_GROUP = cfg.OptGroup(
    'cloudlet_discovery', title='openstack-cloudlet discovery by DNS-SD (cloudlet-advertise)',
    help='cloudlet-advertise announces this cloud on the local link by multicast DNS '
         '(_cloudlet._tcp, TXT record as in cloudlet_engine/advert.py): its public Keystone URL '
         'and region, the cloudlet API version, the base VMs it holds and its free RAM and vCPUs. '
         'It reads them as the user of the keystoneauth options of this group (a service user: '
         'it reads every resource provider in Placement, the base disk images that user sees in '
         'Glance, and GET /os-cloudlet from nova-api; a request gives up after `timeout` seconds, '
         '20 when unset). It withdraws the advert when it stops.')

discovery_opts = [
    cfg.StrOpt('instance_name',
               help='The DNS-SD instance name (<instance_name>._cloudlet._tcp.local.), at most 63 '
                    'bytes. Unset: the region. When another responder on the link holds the name, '
                    'the advertiser takes <instance_name>-2 (then -3, ...).'),
    cfg.URIOpt('keystone_url', schemes=['http', 'https'],
               help='The public Keystone v3 URL devices are told to use; the advertised port is '
                    'its port. Unset: the public identity endpoint of the catalog.'),
    cfg.StrOpt('region', default='RegionOne',
               help='The region advertised, and the one whose endpoints are read.'),
    cfg.ListOpt('addresses', default=[],
                help='Local IPv4 addresses to advertise on: multicast DNS runs on the interfaces '
                     'holding them, and they are the advertised host\'s addresses. Empty: every '
                     'IPv4 address of this host.'),
    cfg.IntOpt('refresh_interval', default=10, min=1,
               help='Seconds between two reads of the free capacity and the base VMs; the advert '
                    'is updated when what it says changed.'),
    cfg.ListOpt('valid_interfaces', default=['internal', 'public'],
                help='The catalog\'s endpoint interfaces to read Placement, Glance and nova-api '
                     'through, in order of preference.'),
    cfg.DictOpt('endpoint_overrides', default={},
                help='Endpoints to use instead of the catalog\'s, as service type:URL pairs, e.g. '
                     '"placement:http://10.0.0.1:8778,image:http://10.0.0.1:9292,'
                     'compute:http://10.0.0.1:8774/v2.1".'),
]


def discovery_ksa_opts():
    """keystoneauth's session and auth options of [cloudlet_discovery] (password auth shown).

    No adapter options: the advertiser reads three services (placement, image,
    compute); valid_interfaces and endpoint_overrides above apply to them.
    """
    return (ks_loading.get_session_conf_options() + ks_loading.get_auth_common_conf_options() +
            ks_loading.get_auth_plugin_conf_options('password'))


def register_discovery_opts(conf):
    """[cloudlet_discovery] and its keystoneauth options (cloudlet-advertise's own CONF)."""
    conf.register_group(DISCOVERY_GROUP)
    conf.register_opts(discovery_opts, group=DISCOVERY_GROUP)
    ks_loading.register_session_conf_options(conf, DISCOVERY_GROUP.name)
    ks_loading.register_auth_conf_options(conf, DISCOVERY_GROUP.name)


def register_service_client_opts(conf, group, service_type):
    """keystoneauth's session, auth and adapter options in `group`.

    How a service of ours (cloudlet-reaper, cloudlet-advertise) reaches an
    OpenStack API as itself.
    """
    ks_loading.register_session_conf_options(conf, group)
    ks_loading.register_auth_conf_options(conf, group)
    ks_loading.register_adapter_conf_options(conf, group)
    conf.set_default('service_type', service_type, group=group)


def service_client_opts():
    """The options of register_service_client_opts, for the sample file (password auth shown)."""
    return (ks_loading.get_session_conf_options() + ks_loading.get_auth_common_conf_options() +
            ks_loading.get_auth_plugin_conf_options('password') +
            ks_loading.get_adapter_conf_options(include_deprecated=False))


def register_opts(conf):
    conf.register_group(GROUP)
    conf.register_opts(opts, group=GROUP)
    conf.register_group(HANDOFF_GROUP)
    conf.register_opts(handoff_opts, group=HANDOFF_GROUP)
    conf.register_group(LEASE_GROUP)
    conf.register_opts(lease_opts, group=LEASE_GROUP)
    conf.register_group(TRUST_GROUP)
    conf.register_opts(trust_opts, group=TRUST_GROUP)


def list_opts():
    return [(GROUP, opts), (HANDOFF_GROUP, handoff_opts), (LEASE_GROUP, lease_opts + service_client_opts()),
            (TRUST_GROUP, trust_opts)] + [
        (DISCOVERY_GROUP, discovery_opts + discovery_ksa_opts())]
