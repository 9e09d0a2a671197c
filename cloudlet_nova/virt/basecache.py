"""This host's base store as nova sees it: pre-cache, ageing, and the traits that tell
the scheduler which bases are here.

- `precache`: nova's aggregate image pre-cache (POST /os-aggregates/{id}/images,
  microversion 2.81) calls CloudletDriver.cache_image on every host of the
  aggregate, once per image. For a base disk image it fetches the base (disk
  and memory; the hash lists are rebuilt) and makes its RAM file, so that the
  first synthesis on the host restores as fast as the later ones. Any other
  cloudlet image (a base's memory or hash list, an overlay) is refused: nova
  reports that host's error in its `aggregate.cache_images.progress`
  notification. A failure leaves nothing half-written in the store.
- `age`: nova's image cache pass (manage_image_cache, every [image_cache]
  manager_interval s) deletes the least recently used bases above
  [cloudlet] base_store_budget_mb (cloudlet_engine.basestore), never one an
  instance on this host was restored from.
- `provider_traits`: one CUSTOM_CLOUDLET_IMAGE_<id> trait per base disk image
  whose base this host holds (cloudlet_glance.hostcache knows which images a
  base answers for); cloudlet_nova.scheduler.weigher prefers those hosts.
"""

import collections
import contextlib
import threading

from oslo_log import log as logging

import nova.conf
from nova import exception

from cloudlet_engine import basestore
from cloudlet_glance import hostcache
from cloudlet_glance import images as glance_images
from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_nova.virt import launch
from cloudlet_nova.virt import state

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

MB = 1024 * 1024

# Base disk images that spawns and pre-caches of this process are using now:
# their bases are in use before any instance record names them.
_busy = collections.Counter()
_busy_lock = threading.Lock()


@contextlib.contextmanager
def in_use(image_id):
    """While the body runs, the base of base disk image `image_id` is never aged out."""
    with _busy_lock:
        _busy[image_id] += 1
    try:
        yield
    finally:
        with _busy_lock:
            _busy[image_id] -= 1
            if not _busy[image_id]:
                del _busy[image_id]


def precache(context, image_id, ram_owner):
    """Pre-cache one image: True when its base was fetched now, False when it was here
    already, None when it is no cloudlet image (nova's own image cache takes it).
    """
    images = glance_images.NovaImages(context)
    image = images.get(image_id)
    kind = image.get(props.CLOUDLET_TYPE)
    if kind is None:
        return None
    if kind != props.BASE_DISK:
        raise exception.ImageUnacceptable(
            image_id=image_id, reason='it is a cloudlet %s image, not a base disk image: pre-cache the '
                                      'base disk image (cloudlet_type=%s) of its base' % (kind, props.BASE_DISK))
    store = launch.base_store()
    was_here = store.has(model.base_id_of(image))
    with in_use(image_id):
        base = hostcache.fetch_base(images, image_id, store,
                                    launch.LogProgress(subject='pre-cache of image %s' % image_id))
        launch.ram_file(base, ram_owner)
    LOG.info('pre-cache of image %s: base %s (%s) %s', image_id, base.base_id[:12], base.name,
             'was cached already' if was_here else 'fetched')
    return not was_here


def bases_in_use(instances_path, instances=(), store=None):
    """Ids of the bases in use on this host: each instance directory's cloudlet
    record, the base id nova holds for `instances`, and the bases of the images
    spawns and pre-caches are using now (`in_use`; `store` maps them to bases).
    """
    with _busy_lock:
        busy = set(_busy)
    in_use = {base_id for image_id, base_id in hostcache.cached_images(store).items()
              if image_id in busy} if store is not None and busy else set()
    for instance_dir, _names in state.instance_dirs(instances_path):
        record = state.load(instance_dir)
        if record:
            in_use.add(record['base_id'])
    key = props.system_metadata_key(props.BASE_ID)
    for instance in instances:
        base_id = (instance.system_metadata or {}).get(key)
        if base_id:
            in_use.add(base_id)
    return in_use


def age(instances):
    """nova's image cache pass, for the base store; returns the basestore.Ageing or None."""
    budget_mb = CONF.cloudlet.base_store_budget_mb
    if not budget_mb or not CONF.image_cache.remove_unused_base_images:
        return None
    store = launch.base_store()
    result = basestore.age(store, budget_mb * MB,
                           lambda: bases_in_use(CONF.instances_path, instances, store),
                           CONF.image_cache.remove_unused_original_minimum_age_seconds)
    for base_id in result.evicted:
        LOG.info('base %s deleted from this host\'s base store: unused, least recently used, above '
                 '[cloudlet] base_store_budget_mb (%d MB); it is fetched again when next needed',
                 base_id[:12], budget_mb)
    if result.over_budget:
        LOG.warning('the base store holds %.0f MB, above [cloudlet] base_store_budget_mb (%d MB): the '
                    'other bases are in use, or used less than [image_cache] '
                    'remove_unused_original_minimum_age_seconds ago', result.kept_bytes / MB, budget_mb)
    return result


def provider_traits(current):
    """The provider's traits: `current` with the cached-image traits of the store's content."""
    kept = {trait for trait in current if not trait.startswith(props.CACHED_IMAGE_TRAIT_PREFIX)}
    return kept | {props.cached_image_trait(image_id)
                   for image_id in hostcache.cached_images(launch.base_store())}
