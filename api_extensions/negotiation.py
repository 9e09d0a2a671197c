"""POST /os-cloudlet/negotiate: can this cloud run an overlay, and how soon?

    POST /os-cloudlet/negotiate  {"overlay": {"base_id": ..., "format_version": 1, "codec": ...,
                                              "memory_mb": ..., "vcpus": ..., "size_bytes": ...}}
                              or {"overlay_url": "https://..."}   (nova-api reads the header only)
        -> 200 {"negotiation": {"acceptable": ..., "reason": ..., "base_id": ...,
                                "base_image_id": ..., "flavor_id": ..., "estimated_seconds": ...,
                                "format_version": ..., "codec": ...}}

"No" is an answer (200, "acceptable": false, "reason" naming the first
obstacle, in this order): an unsupported format version or codec, an overlay
over `[cloudlet] max_overlay_bytes`, an unknown base (no complete, active base
disk image with that cloudlet_base_id visible to the caller), memory/vCPUs
that contradict the base's, no flavor with exactly the base's memory and
vCPUs (the driver's rule, `cloudlet_nova.virt.launch.flavor_fit_error`), no
capacity. A body, URL or header that cannot be used is a 400 naming the
problem; Glance or Placement failing is a 503.

Capacity is asked of Placement (`GET /allocation_candidates`, through nova's
report client with nova-api's [placement] credentials), as the scheduler
does: it counts allocation ratios, reserved amounts, min/max units, shared
disk, the base image's required traits (CUSTOM_CLOUDLET_V1) and leaves out
disabled computes. nova's ComputeNode records would need a scatter-gather
over cells and the ratios redone here, for a less exact answer. The answer
is a snapshot: nothing is reserved.
"""

import math
import time
import urllib.parse

from oslo_log import log as logging
from webob import exc

from nova.api.openstack import wsgi
from nova.api import validation
import nova.conf
from nova import objects
from nova.policies import servers as servers_policies
from nova.scheduler.client import report

from cloudlet_engine import errors as engine_errors
from cloudlet_engine import format as overlay_format
from cloudlet_engine import outbound as engine_outbound
from cloudlet_engine import source
from cloudlet_engine import urls
from cloudlet_glance import errors as glance_errors
from cloudlet_glance import properties as props
from cloudlet_nova import outbound
from cloudlet_nova.virt import launch

from api_extensions import bases
from api_extensions import policies
from api_extensions import policy
from api_extensions import schemas

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

GIB = 1024 ** 3
# The codecs the engine decodes (what a segment may use); "auto" is a handoff
# residue's: each segment names one of them.
SUPPORTED_CODECS = tuple(sorted(overlay_format.CODEC_NAMES.values())) + ('auto',)
# The header: the file head, the metadata (at most what the reader accepts), its checksum.
HEADER_LIMITS = overlay_format.Limits()
HEADER_MAX_BYTES = 8 + 2 + 2 + 4 + HEADER_LIMITS.max_meta_bytes + 32
_READ_STEP = 64 << 10
PLACEMENT_VERSION = '1.22'     # allocation_candidates with required and forbidden traits
DISABLED_TRAIT = 'COMPUTE_STATUS_DISABLED'

# The estimate, in seconds, from the compute host starting the build to the VM
# resumed (scheduling, nova's wait for the network and the guest's own work
# are not in it), measured in doc/benchmarks.md (2026-11-23: over 25 Mbit/s,
# 6.70 s transfer floor + 0.63 s apply + 0.73 s restore = 8.06 s against
# 8.01 s measured; apply CPU 2026-12-02: 0.23 s for a 20.93 MB zstd overlay,
# 0.94 s for a 20.48 MB xz one):
#   transfer = size_bytes * 8 / ([cloudlet] negotiate_link_mbps * 10^6)
#   apply    = size_bytes / APPLY_BYTES_PER_SECOND[codec]   (per overlay byte)
#   estimate = transfer + apply + RESTORE_SECONDS
# A 256 MiB TCG guest on 2 cores; hosts differ by 2x and more. No size, no estimate.
APPLY_BYTES_PER_SECOND = {'zstd': 90e6, 'xz': 22e6, 'none': 90e6, 'auto': 22e6}
RESTORE_SECONDS = 0.75


class CapacityUnknown(Exception):
    """Placement could not answer."""


def estimate_seconds(size_bytes, codec, link_mbps):
    """Seconds to fetch, apply and restore an overlay of `size_bytes` (None if unknown).

    An estimate from constants measured in doc/benchmarks.md (see the module's
    constants), not a measurement of this cloud.
    """
    if size_bytes is None:
        return None
    transfer = size_bytes * 8 / (link_mbps * 1e6)
    apply_time = size_bytes / APPLY_BYTES_PER_SECOND.get(codec, min(APPLY_BYTES_PER_SECOND.values()))
    return round(transfer + apply_time + RESTORE_SECONDS, 1)


# --- the overlay's header from its URL -----------------------------------------


class _Deadline:
    """A response read in small steps, within `seconds` in all (a trickling server ends too)."""

    def __init__(self, raw, seconds, name):
        self.raw, self.name = raw, name
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def read(self, size=-1):
        parts, have = [], 0
        while size < 0 or have < size:
            if time.monotonic() > self.deadline:
                raise engine_errors.SourceError('%s: no overlay header within %d seconds'
                                                % (self.name, self.seconds))
            step = _READ_STEP if size < 0 else min(_READ_STEP, size - have)
            read1 = getattr(self.raw, 'read1', self.raw.read)
            data = read1(step)
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b''.join(parts)

    def close(self):
        self.raw.close()


def read_header(url):
    """The negotiation fields of the overlay at `url`, from its header; HTTPBadRequest if none.

    Reads at most HEADER_MAX_BYTES, within [cloudlet] fetch_timeout for the
    connection and as much again for the header. size_bytes is the response's
    Content-Length (None without one).
    """
    shown = urls.redact(url)
    try:
        outbound.check_url(CONF, url, what='overlay URL')
    except engine_outbound.Refused as error:
        raise exc.HTTPBadRequest(explanation=str(error))    # "overlay URL refused by policy: ..."
    except urls.URLNotAllowed as error:
        raise exc.HTTPBadRequest(explanation='overlay URL refused: %s' % error)
    stream = None
    try:
        # No size limit at the open: a size over max_overlay_bytes is an answer, not an error.
        stream = source.open_overlay(url, max_bytes=2 ** 63 - 1, timeout=CONF.cloudlet.fetch_timeout,
                                     allow_files=False, prefetch=False, policy=outbound.policy(CONF))
        length = stream.raw.headers.get('Content-Length') if hasattr(stream.raw, 'headers') else None
        header = source.Bounded(_Deadline(stream.raw, CONF.cloudlet.fetch_timeout, shown),
                                HEADER_MAX_BYTES, shown)
        limits = overlay_format.Limits(max_memory_bytes=CONF.cloudlet.max_memory_image_bytes)
        reader = overlay_format.OverlayReader(header, limits=limits)
        meta = reader.meta
    except engine_errors.CloudletError as error:
        message = urls.redact_credentials(str(error).replace(url, shown))
        raise exc.HTTPBadRequest(explanation='overlay URL %s: %s' % (shown, message))
    finally:
        if stream is not None:
            stream.close()
    return {
        'base_id': meta['base_id'],
        'format_version': reader.version,              # 2: encrypted (its key is named at create)
        # A header without one: each segment names its codec.
        'codec': str(meta.get('codec') or 'auto'),
        'size_bytes': int(length) if length and length.isdigit() else None,
    }


# --- the decision ----------------------------------------------------------------


def _int_property(image, key):
    try:
        value = int(image.get(key))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def required_traits(*property_sets):
    """Traits named `trait:<NAME>=required` in image properties or flavor extra specs."""
    found = set()
    for values in property_sets:
        for key, value in (values or {}).items():
            if key.startswith('trait:') and str(value).lower() == 'required':
                found.add(key[len('trait:'):])
    return found


def disk_fits(flavor, image, zero_disk_allowed):
    """nova's check of an image-backed boot: the root disk holds the image (root_gb 0: by policy)."""
    if not flavor.root_gb:
        return zero_disk_allowed
    size = flavor.root_gb * GIB
    return (int(image.get('size') or 0) <= size and
            int(image.get(props.MIN_DISK) or 0) * GIB <= size)


def flavor_resources(flavor):
    """What the scheduler asks Placement for, for an image-backed server of this flavor."""
    resources = {'VCPU': flavor.vcpus, 'MEMORY_MB': flavor.memory_mb,
                 'DISK_GB': flavor.root_gb + flavor.ephemeral_gb + math.ceil(flavor.swap / 1024)}
    return {rc: amount for rc, amount in resources.items() if amount}


def decide(overlay, images, flavors, has_capacity, zero_disk_allowed=False):
    """The negotiation answer (the response's "negotiation" object).

    `overlay`: base_id, format_version, codec, and optionally memory_mb,
    vcpus, size_bytes. `images`: a cloudlet_glance ImageService as the
    caller. `flavors`: the flavors the caller may boot. `has_capacity(resources,
    traits)`: whether some compute host can take them now.
    """
    answer = {'acceptable': False, 'reason': None, 'base_id': overlay['base_id'],
              'base_image_id': None, 'flavor_id': None, 'estimated_seconds': None,
              'format_version': overlay['format_version'], 'codec': overlay['codec']}

    def no(reason):
        return dict(answer, reason=reason)

    base_id, codec, size = overlay['base_id'], overlay['codec'], overlay.get('size_bytes')
    if overlay['format_version'] not in overlay_format.VERSIONS:
        return no('overlay format version %d is not supported: this cloud reads versions %s.'
                  % (overlay['format_version'], ', '.join(map(str, overlay_format.VERSIONS))))
    if codec not in SUPPORTED_CODECS:
        return no('codec %r is not supported: this cloud reads %s.'
                  % (codec, ', '.join(SUPPORTED_CODECS)))
    if size is not None and size > CONF.cloudlet.max_overlay_bytes:
        return no('the overlay (%d bytes) is larger than the limit of this cloud, %d bytes.'
                  % (size, CONF.cloudlet.max_overlay_bytes))
    model = bases.glance_model()[0]
    links = None
    if len(base_id) == 64 and all(c in '0123456789abcdef' for c in base_id):
        links = model.find_complete_base(images, base_id)
    if links is None:
        return no('unknown base %s: no complete, active base VM with this base id is visible '
                  'to this project.' % base_id)
    disk_image = images.get(links.disk_id)
    answer['base_image_id'] = links.disk_id
    name = links.name or base_id[:12]
    needs_mb = _int_property(disk_image, props.MEMORY_MB)
    needs_vcpus = _int_property(disk_image, props.VCPUS)
    for key, needed in (('memory_mb', needs_mb), ('vcpus', needs_vcpus)):
        given = overlay.get(key)
        if given is not None and needed is not None and given != needed:
            return no('the overlay says %s %d, but base %s was captured with %d.'
                      % (key, given, name, needed))
    needs_mb = needs_mb or overlay.get('memory_mb')
    needs_vcpus = needs_vcpus or overlay.get('vcpus')
    if needs_mb is None or needs_vcpus is None:
        return no('base %s does not record its memory and vCPUs (image properties %s and %s): '
                  'give memory_mb and vcpus.' % (name, props.MEMORY_MB, props.VCPUS))
    fitting = sorted((f for f in flavors
                      if launch.flavor_fit_error(f, name, needs_mb, needs_vcpus) is None
                      and disk_fits(f, disk_image, zero_disk_allowed)),
                     key=lambda f: (f.root_gb, f.ephemeral_gb, f.swap, f.flavorid))
    if not fitting:
        return no('no flavor has exactly %d MB and %d vCPUs with a root disk for the base image, '
                  'as base %s needs.' % (needs_mb, needs_vcpus, name))
    traits = required_traits(disk_image)
    for flavor in fitting:
        if has_capacity(flavor_resources(flavor), traits | required_traits(flavor.extra_specs)):
            return dict(answer, acceptable=True, flavor_id=flavor.flavorid,
                        estimated_seconds=estimate_seconds(size, codec,
                                                           CONF.cloudlet.negotiate_link_mbps))
    answer['flavor_id'] = fitting[0].flavorid
    return no('no capacity: no compute host for base %s has %d MB of RAM and %d vCPUs free '
              'for flavor %s.' % (name, needs_mb, needs_vcpus, fitting[0].name))


# --- nova's side: flavors and Placement ------------------------------------------


def visible_flavors(context):
    """The enabled flavors the caller may boot (nova's flavor list rules)."""
    filters = {'disabled': False, 'is_public': None if context.is_admin else True}
    return objects.FlavorList.get_all(context, inactive=False, filters=filters)


def placement_capacity(context, client=None):
    """has_capacity(resources, traits) through Placement's allocation candidates."""

    def has_capacity(resources, traits):
        client_ = client or report.report_client_singleton()
        query = {'resources': ','.join('%s:%d' % item for item in sorted(resources.items())),
                 'required': ','.join(sorted(traits) + ['!' + DISABLED_TRAIT]),
                 'limit': 1}
        url = '/allocation_candidates?' + urllib.parse.urlencode(query, safe=':,!')
        try:
            resp = client_.get(url, version=PLACEMENT_VERSION,
                               global_request_id=context.global_id)
        except Exception as error:      # keystoneauth: connection, endpoint, auth
            raise CapacityUnknown('Placement cannot be reached: %s' % error)
        if resp is None:
            raise CapacityUnknown('Placement cannot be reached')
        if resp.status_code == 200:
            return bool(resp.json().get('allocation_requests'))
        if resp.status_code == 400 and 'No such trait' in resp.text:
            return False     # a custom trait no provider was ever given
        raise CapacityUnknown('Placement answered %d: %s' % (resp.status_code, resp.text[:200]))

    return has_capacity


class CloudletNegotiationController(wsgi.Controller):

    @wsgi.expected_errors((400, 403, 503))
    @validation.schema(schemas.negotiate)
    @validation.response_body_schema(schemas.negotiate_response)
    def create(self, req, body):
        context = req.environ['nova.context']
        policy.authorize(context, policies.NEGOTIATE, {'project_id': context.project_id})
        if 'overlay_url' in body:
            overlay = read_header(body['overlay_url'])
        else:
            overlay = dict(body['overlay'], base_id=body['overlay']['base_id'].lower())
        images = bases.glance_model()[1]
        # nova's rule for booting an image on a flavor with no root disk (default: admin).
        zero_disk = context.can(servers_policies.ZERO_DISK_FLAVOR, fatal=False)
        try:
            answer = decide(overlay, images.NovaImages(context), visible_flavors(context),
                            placement_capacity(context), zero_disk_allowed=zero_disk)
        except glance_errors.ImageServiceError as error:
            LOG.warning('Negotiation for base %s: %s', overlay['base_id'], error)
            raise exc.HTTPServiceUnavailable(explanation='the image service failed: %s' % error)
        except CapacityUnknown as error:
            LOG.warning('Negotiation for base %s: %s', overlay['base_id'], error)
            raise exc.HTTPServiceUnavailable(explanation='capacity cannot be checked: %s' % error)
        return {'negotiation': answer}
