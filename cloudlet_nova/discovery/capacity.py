"""What a cloudlet advertises, read from its cloud as a service user.

    reader = CloudReader(session, 'RegionOne')
    reader.free_capacity()      # Capacity(free_ram_mb, free_vcpus), from Placement
    reader.base_short_ids()     # ('0123456789ab', ...), from Glance
    reader.api_version()        # '1.2', from nova-api's GET /os-cloudlet
    reader.public_keystone_url()

Free capacity is summed over every resource provider in Placement, with
Placement's own arithmetic (what its allocation check allows):
int((total - reserved) * allocation_ratio) - used, at least 0, per provider
and resource class (MEMORY_MB, VCPU). The bases are the active base disk
images (cloudlet_type=cloudlet_base_disk) the user sees, by the first
advert.SHORT_ID hex digits of their cloudlet_base_id, each once.

Every failure to read (the service is down, refuses, answers nonsense) is a
ReadError naming what could not be read; nothing else is raised for it.
"""

import dataclasses
import re

from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ksa_exc

from cloudlet_engine import advert
from cloudlet_engine import errors as engine_errors
from cloudlet_glance import errors as glance_errors
from cloudlet_glance import images as glance_images
from cloudlet_glance import model

RAM = 'MEMORY_MB'
VCPU = 'VCPU'
_API_VERSION = re.compile(r'^\d{1,3}\.\d{1,3}$')
# What a malformed answer raises while we pick it apart.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


class ReadError(Exception):
    """What the advertiser could not read; the message says what and why."""


@dataclasses.dataclass(frozen=True)
class Capacity:
    free_ram_mb: int = 0
    free_vcpus: int = 0


def free_amount(inventory, used):
    """What Placement would still allocate of one resource class of one provider.

    `inventory` is Placement's inventory record (total, reserved,
    allocation_ratio), or None when the provider has none of that class.
    """
    if not inventory:
        return 0
    total = int(inventory['total'])
    reserved = int(inventory.get('reserved', 0))
    ratio = float(inventory.get('allocation_ratio', 1.0))
    return max(0, int((total - reserved) * ratio) - int(used or 0))


def _get_json(adapter, path, what):
    try:
        return adapter.get(path, raise_exc=True).json()
    except ksa_exc.ClientException as exc:
        raise ReadError('%s: %s' % (what, exc)) from exc
    except ValueError as exc:      # also requests' JSONDecodeError
        raise ReadError('%s: the answer is not JSON' % what) from exc


def free_capacity(placement):
    """Capacity summed over the providers; `placement` is a keystoneauth Adapter."""
    providers = _get_json(placement, '/resource_providers', 'Placement resource providers')
    ram = vcpus = 0
    try:
        uuids = [provider['uuid'] for provider in providers['resource_providers']]
    except _SHAPE_ERRORS as exc:
        raise ReadError('Placement resource providers: unexpected answer (%r)' % exc) from exc
    for uuid in uuids:
        what = 'Placement resource provider %s' % uuid
        inventories = _get_json(placement, '/resource_providers/%s/inventories' % uuid, what)
        usages = _get_json(placement, '/resource_providers/%s/usages' % uuid, what)
        try:
            inventories, usages = inventories['inventories'], usages['usages']
            ram += free_amount(inventories.get(RAM), usages.get(RAM, 0))
            vcpus += free_amount(inventories.get(VCPU), usages.get(VCPU, 0))
        except _SHAPE_ERRORS as exc:
            raise ReadError('%s: unexpected inventories or usages (%r)' % (what, exc)) from exc
    return Capacity(ram, vcpus)


def base_short_ids(images):
    """The short ids of the active bases `images` (a cloudlet_glance ImageService) lists."""
    try:
        disks = model.list_bases(images)
    except glance_errors.ImageServiceError as exc:
        raise ReadError('Glance base disk images: %s' % exc) from exc
    shorts = []
    for disk in disks:
        if disk.get('status') != 'active':
            continue         # still uploading (or killed): not held yet
        try:
            short = model.base_id_of(disk)[:advert.SHORT_ID]
        except engine_errors.BaseVMError:
            continue         # not a base id a compute host would accept
        if short not in shorts:
            shorts.append(short)
    return tuple(shorts)


def api_version(compute):
    """The cloudlet API version nova-api serves; `compute` is a keystoneauth Adapter."""
    document = _get_json(compute, '/os-cloudlet', 'the cloudlet API (GET /os-cloudlet)')
    try:
        version = document['cloudlet']['version']
    except _SHAPE_ERRORS as exc:
        raise ReadError('the cloudlet API (GET /os-cloudlet): no version (%r)' % exc) from exc
    if not isinstance(version, str) or not _API_VERSION.match(version):
        raise ReadError('the cloudlet API (GET /os-cloudlet): version %r' % (version,))
    return version


class CloudReader:
    """The three services of one region through one keystoneauth session.

    `interfaces`: endpoint interfaces in order of preference; `overrides`:
    {service type: URL} used instead of the catalog (placement, image, compute).
    """

    def __init__(self, session, region, interfaces=('internal', 'public'), overrides=None):
        overrides = dict(overrides or {})
        self.session, self.region = session, region
        self.interfaces = list(interfaces)

        def adapter(service_type):
            return ks_adapter.Adapter(session, service_type=service_type, interface=self.interfaces,
                                      region_name=region, endpoint_override=overrides.get(service_type))
        self.placement = adapter('placement')
        self.compute = adapter('compute')
        self.images = glance_images.GlanceClientImages(session, region_name=region, interface=self.interfaces,
                                                       endpoint_override=overrides.get('image'))

    def free_capacity(self):
        return free_capacity(self.placement)

    def base_short_ids(self):
        return base_short_ids(self.images)

    def api_version(self):
        return api_version(self.compute)

    def public_keystone_url(self):
        """The catalog's public identity endpoint of the region."""
        try:
            url = self.session.get_endpoint(service_type='identity', interface='public',
                                            region_name=self.region)
        except ksa_exc.ClientException as exc:
            raise ReadError('the public Keystone endpoint: %s' % exc) from exc
        if not url:
            raise ReadError('the catalog has no public identity endpoint in region %s' % self.region)
        return url
