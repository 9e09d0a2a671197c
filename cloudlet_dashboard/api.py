"""Every call the dashboard makes to the cloud, in one place (Horizon's convention: views never call clients).

The calls go through the same code as `openstack cloudlet`: nova's compute
API through `cloudlet_osc.client.CloudletClient`, Glance through
`cloudlet_glance.model`, the flavor choice through `cloudlet_osc.flavors`.
They run with the signed-in user's token, and endpoints from the catalog
Horizon keeps in the session (`RequestAuth`), so no extra Keystone call is
made per page.

Every expected failure leaves here as `CloudletError`, a Horizon
RecoverableError whose text is the service's own message (nova's, Glance's,
the engine's): `horizon.exceptions.handle` shows it and the page stays usable.
"""

import functools
import logging

from horizon import exceptions as horizon_exceptions
from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import plugin
from keystoneauth1 import session as ksa_session
from osc_lib import exceptions as osc_exceptions

from cloudlet_engine import errors as engine_errors
from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_osc import client as client_mod
from cloudlet_osc import flavors as flavor_choice
from cloudlet_osc import overlay_source
from openstack_dashboard.api import base as horizon_api
from openstack_dashboard.api import neutron

LOG = logging.getLogger(__name__)

# Import records still moving (the table refreshes their rows until they are not).
IMPORT_RUNNING = ('queued', 'downloading', 'validating', 'uploading')
# Placement resource classes shown as a host's free capacity.
CAPACITY_CLASSES = ('VCPU', 'MEMORY_MB', 'DISK_GB')


class CloudletError(horizon_exceptions.RecoverableError):
    """A call the cloud refused or failed; str() is the service's own message."""


def translated(call):
    """Expected failures of `call` become CloudletError (unexpected ones stay errors)."""
    @functools.wraps(call)
    def wrapper(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except CloudletError:
            raise
        except (osc_exceptions.ClientException, osc_exceptions.CommandError) as exc:
            # osc-lib's ClientException carries nova's message as .message.
            raise CloudletError(getattr(exc, 'message', None) or str(exc)) from exc
        except engine_errors.CloudletError as exc:
            raise CloudletError(str(exc) or exc.__class__.__name__) from exc
        except ksa_exceptions.ClientException as exc:
            raise CloudletError(str(exc) or exc.__class__.__name__) from exc
    return wrapper


class RequestAuth(plugin.BaseAuthPlugin):
    """The signed-in user's token, and endpoints from the catalog in Horizon's session."""

    def __init__(self, request):
        super().__init__()
        self._request = request

    def get_token(self, session, **kwargs):
        return self._request.user.token.id

    def get_endpoint(self, session, service_type=None, interface=None, region_name=None, **kwargs):
        try:
            return horizon_api.url_for(self._request, service_type)
        except horizon_exceptions.ServiceCatalogException:
            return None

    def get_user_id(self, session, **kwargs):
        return self._request.user.id

    def get_project_id(self, session, **kwargs):
        return self._request.user.project_id


def client(request):
    """The CloudletClient of this request (one per request: the views make several calls)."""
    cached = getattr(request, '_cloudlet_client', None)
    if cached is None:
        from django.conf import settings
        verify = not getattr(settings, 'OPENSTACK_SSL_NO_VERIFY', False)
        verify = getattr(settings, 'OPENSTACK_SSL_CACERT', None) or verify
        session = ksa_session.Session(auth=RequestAuth(request), verify=verify,
                                      app_name='openstack-cloudlet-dashboard')
        cached = request._cloudlet_client = client_mod.CloudletClient(session)
    return cached


# ------------------------------------------------------------------ discovery


@translated
def discovery(request):
    """GET /os-cloudlet: the cloudlet API's version, codecs, limits, handoff destinations, lease bounds."""
    return client(request).discover()


# ------------------------------------------------------------------ bases


@translated
def base_list(request):
    """The base disk images the user sees (one per base)."""
    return list(model.list_bases(client(request).images))


@translated
def base_get(request, image_id):
    return model.find_base(client(request).images, image_id)


@translated
def base_delete(request, image_id):
    """The base's disk image, then its companions (cloudlet_glance.model.delete_base)."""
    return model.delete_base(client(request).images, image_id)


@translated
def base_import_from_url(request, url, name=None, visibility='private'):
    """POST /os-cloudlet/bases: nova-api downloads and imports the package; returns the import record."""
    return client(request).import_base(url, name=name or None, visibility=visibility)


@translated
def base_import_from_file(request, path, name=None, visibility='private'):
    """Import a package file the user uploaded (the dashboard host uploads its images to Glance)."""
    return model.import_base_package(client(request).images, path, name=name or None, visibility=visibility)


@translated
def base_import_list(request):
    return client(request).list_base_imports()


@translated
def base_import_get(request, import_id):
    return client(request).get_base_import(import_id)


@translated
def base_import_delete(request, import_id):
    client(request).delete_base_import(import_id)


@translated
def base_export(request, image_id, package_path, workdir=None):
    """Write the base's package (doc/base-vm-package.md) to `package_path`."""
    return model.export_base_package(client(request).images, image_id, package_path, workdir=workdir)


# ------------------------------------------------------------------ overlays


@translated
def overlay_list(request, base_id=None):
    return list(model.list_overlays(client(request).images, base_id))


@translated
def overlay_get(request, image_id):
    return model.find_overlay(client(request).images, image_id)


@translated
def overlay_delete(request, image_id):
    overlay = overlay_get(request, image_id)
    client(request).images.delete(overlay['id'])


@translated
def overlay_download(request, image_id, fileobj):
    return model.download_overlay(client(request).images, image_id, fileobj)


@translated
def overlay_upload(request, path, name, base_id):
    """Upload an overlay file for a synthesis; returns its (hidden) image id."""
    return model.upload_overlay(client(request).images, path, name, base_id)


@translated
def image_delete_quietly(request, image_ids):
    model.delete_quietly(client(request).images, image_ids)


# ------------------------------------------------------------------ servers


@translated
def synthesis_base(request, overlay_ref, base_ref=None):
    """(the base disk image to restore, the overlay_source.Overlay) for an overlay image id, an
    overlay file's path or an http(s) URL (whose header is not read here: a URL needs `base_ref`).
    """
    images = client(request).images
    overlay = overlay_source.resolve(images, overlay_ref, read_url=False)
    return overlay_source.base_image(images, overlay, base_ref), overlay


@translated
def flavor_for(request, base_image, flavor_id=None):
    """The flavor to restore `base_image` with: `flavor_id` checked, or chosen as the CLI chooses."""
    return flavor_choice.select(client(request), flavor_id, base_image)


@translated
def flavor_list(request):
    return client(request).list_flavors()


def network_list(request):
    """The networks the user's servers may use (Horizon's own call, as Launch Instance makes it)."""
    return neutron.network_list_for_tenant(request, request.user.project_id)


@translated
def server_create(request, name, base_image_id, flavor_id, networks, metadata):
    """POST /servers on a base disk image; returns the new server's id."""
    return client(request).create_server(name, base_image_id, flavor_id, networks=networks,
                                         metadata=metadata)['id']


@translated
def server_get(request, server_id):
    return client(request).get_server(server_id)


@translated
def create_overlay(request, server_id, name, codec=None):
    return client(request).create_overlay(server_id, name, codec=codec)


@translated
def create_base(request, server_id, name):
    return client(request).create_base(server_id, name)


@translated
def handoff(request, server_id, destination, credential, name=None, codec=None):
    """The cloudlet-handoff action; returns the handoff's id."""
    handoff_id, _request_id = client(request).handoff(server_id, destination, credential, name=name,
                                                      codec=codec)
    return handoff_id


def is_cloudlet_server(request, instance):
    """Does `instance` (a Horizon server) run on a base disk image? Memoized per request.

    The Instances index fills instance.image with the Glance image; a row
    refreshed alone (UpdateRow) has only {'id': ...}, so that image is read.
    """
    image = getattr(instance, 'image', None)
    if not image:
        return False
    if not isinstance(image, dict):
        return getattr(image, props.CLOUDLET_TYPE, None) == props.BASE_DISK
    if props.CLOUDLET_TYPE in image:
        return image[props.CLOUDLET_TYPE] == props.BASE_DISK
    known = request.__dict__.setdefault('_cloudlet_base_images', {})
    image_id = image.get('id')
    if image_id not in known:
        try:
            known[image_id] = client(request).images.get(image_id).get(props.CLOUDLET_TYPE) == props.BASE_DISK
        except Exception:       # a deleted or invisible image: the row shows no cloudlet action
            LOG.debug('image %s of server %s not readable', image_id, getattr(instance, 'id', None))
            known[image_id] = False
    return known[image_id]


# ------------------------------------------------------------------ hosts (admins)


@translated
def hosts(request):
    """Per compute host: state, the base images it holds (its Placement traits) and its free capacity.

    [{'host', 'state', 'status', 'cached_image_ids', 'free': {resource class: amount}}]
    """
    cloudlet = client(request)
    rows = []
    for host, record in sorted(cloudlet.compute_hosts().items()):
        provider = record['provider']
        cached, free = [], {}
        if provider:
            cached = sorted(trait[len(props.CACHED_IMAGE_TRAIT_PREFIX):]
                            for trait in cloudlet.provider_traits(provider)
                            if trait.startswith(props.CACHED_IMAGE_TRAIT_PREFIX))
            free = _free_capacity(cloudlet, provider)
        rows.append({'host': host, 'state': record['state'], 'status': record['status'],
                     'cached_traits': cached, 'free': free})
    return rows


def _free_capacity(cloudlet, provider):
    inventories = cloudlet.placement_get('/resource_providers/%s/inventories' % provider)['inventories']
    usages = cloudlet.placement_get('/resource_providers/%s/usages' % provider)['usages']
    free = {}
    for resource in CAPACITY_CLASSES:
        inventory = inventories.get(resource)
        if inventory:
            total = (inventory['total'] - inventory.get('reserved', 0)) * inventory.get('allocation_ratio', 1.0)
            free[resource] = int(total - usages.get(resource, 0))
    return free


def trait_of_image(image_id):
    """The Placement trait a host reports while it holds the base of image `image_id`."""
    return props.cached_image_trait(image_id)[len(props.CACHED_IMAGE_TRAIT_PREFIX):]


def image_label(image):
    return image.get('name') or image['id']

