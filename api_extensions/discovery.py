"""GET /os-cloudlet: what this cloud's cloudlet API offers.

We add no nova microversions (an add-on cannot: nova's list of microversions
is fixed in its code); the extension is versioned here instead, and
clients discover actions, property names, codecs and limits before using
them (what the API-SIG asks of driver-dependent features).
"""

from nova.api.openstack import common
from nova.api.openstack import wsgi
from nova.api import validation
import nova.conf

from cloudlet_engine import basevm
from cloudlet_engine import format as overlay_format
from cloudlet_glance import properties

from api_extensions import handoff
from api_extensions import leases
from api_extensions import policies
from api_extensions import policy
from api_extensions import schemas
from api_extensions import servers

CONF = nova.conf.CONF

VERSION = '1.3'   # 1.1: cloudlet-handoff; 1.2: leases (cloudlet-heartbeat), negotiation;
#                  1.3: encrypted overlays (create-overlay options.encryption_key_id)
MIN_VERSION = '1.0'

# Every image property the cloudlet model sets (cloudlet_glance.properties),
# nova's own ones it sets for a base's boot companions included, plus the
# codec choice the create-overlay action stores for the driver.
IMAGE_PROPERTY_KEYS = sorted({
    properties.CLOUDLET_TYPE, properties.BASE_ID, properties.BASE_NAME, properties.ABI_DIGEST,
    properties.MEMORY_MB, properties.VCPUS, properties.MACHINE, properties.FORMAT_VERSION,
    properties.MEMORY_BLOCKS, properties.TRAIT_PROPERTY, properties.CODEC,
    properties.KERNEL_ID, properties.RAMDISK_ID, properties.OS_COMMAND_LINE,
    *properties.COMPANION_TYPES})
SERVER_METADATA_KEYS = [properties.META_OVERLAY_URL, properties.META_OVERLAY_ID,
                        properties.META_LEASE_SECONDS]


class CloudletDiscoveryController(wsgi.Controller):

    @wsgi.expected_errors(())
    @validation.query_schema(schemas.discovery_query)
    @validation.response_body_schema(schemas.discovery_response)
    def index(self, req):
        context = req.environ['nova.context']
        policy.authorize(context, policies.DISCOVER,
                         {'project_id': context.project_id, 'user_id': context.user_id})
        # nova's ViewBuilder applies [api] compute_link_prefix only in private helpers
        # (all nova views use them); no public function does it.
        prefix = common.ViewBuilder()._update_compute_link_prefix(req.application_url)
        return {'cloudlet': {
            'version': VERSION,
            'min_version': MIN_VERSION,
            'actions': list(servers.ACTIONS) + [handoff.ACTION, leases.ACTION],
            'action_aliases': dict(servers.ACTION_ALIASES),
            'server_metadata_keys': list(SERVER_METADATA_KEYS),
            'image_property_keys': list(IMAGE_PROPERTY_KEYS),
            'codecs': list(schemas.CODECS),
            'overlay_format_version': overlay_format.VERSION,
            'overlay_format_versions': list(overlay_format.VERSIONS),
            'base_package_format_version': basevm.MANIFEST_VERSION,
            'limits': {
                'max_overlay_bytes': CONF.cloudlet.max_overlay_bytes,
                'overlay_url_schemes': [s for s in CONF.cloudlet.overlay_url_schemes
                                        if s.lower() != 'file'],
            },
            'handoff': {
                'codecs': list(schemas.HANDOFF_CODECS),
                # Names users may give as destination.cloud (their URLs stay private).
                'destinations': sorted(CONF.cloudlet_handoff.destinations or {}),
                'credential_kinds': ['token', 'application_credential'],
            },
            # A server created with metadata cloudlet_lease_seconds in these bounds
            # lives while cloudlet-heartbeat renews it, plus the grace period.
            'lease': {
                'min_seconds': CONF.cloudlet_lease.min_seconds,
                'max_seconds': CONF.cloudlet_lease.max_seconds,
                'grace_seconds': CONF.cloudlet_lease.grace_seconds,
            },
            'links': [
                {'rel': 'self', 'href': prefix + '/os-cloudlet'},
                {'rel': 'bases', 'href': prefix + '/os-cloudlet/bases'},
                {'rel': 'negotiate', 'href': prefix + '/os-cloudlet/negotiate'},
            ],
        }}
