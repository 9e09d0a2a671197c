"""A compute host's base store, filled from Glance: fetch a base disk image's base, and
remember which images each cached base answers for.

The store (cloudlet_engine.basestore) knows bases by id; nova and the scheduler
know images. Each fetch through an image records that image's id in the
base's directory (`.images/<image id>`, an empty file: concurrent fetches
never lose one another's), so the host can tell Placement which base images
it can restore without a download (CloudletDriver.update_provider_tree). A
second Glance image of the same base becomes known to a host the first time
it is used there.
"""

import os
import re
import shutil

from cloudlet_engine import basevm
from cloudlet_engine import errors as engine_errors
from cloudlet_glance import model
from cloudlet_glance import properties as props

IMAGES_DIR = '.images'
_IMAGE_ID = re.compile(r'^[0-9a-fA-F-]{1,64}$')


def fetch_base(images, disk_image_id, store, progress=None):
    """The base of a base disk image, cached in `store` (a basestore.BaseStore); for compute hosts.

    A cached base is returned as is (its use recorded). Otherwise the disk and
    memory images are downloaded into a work directory of the store and the
    engine rebuilds the hash lists (the hash list images are not needed); the
    base id must match the image's cloudlet_base_id. A failure leaves nothing
    in the store.
    """
    disk_image = images.get(disk_image_id)
    base_id = model.base_id_of(disk_image)
    with store.lock():
        if store.has(base_id):
            return _used(store, base_id, disk_image_id)
    # Spawns of one base on a host without it download it once: the others wait, then find it.
    with store.fetching(base_id):
        with store.lock():
            if store.has(base_id):
                return _used(store, base_id, disk_image_id)
        return _download(images, disk_image_id, disk_image, store, base_id, progress)


def _download(images, disk_image_id, disk_image, store, base_id, progress):
    memory_id = disk_image.get(props.BASE_MEMORY)
    if not memory_id:
        raise engine_errors.BaseVMError('base image %s does not name its memory image' % disk_image_id)
    workdir = store.new_workdir()
    try:
        disk_path, memory_path = os.path.join(workdir, basevm.DISK), os.path.join(workdir, basevm.MEMORY)
        model.download_file(images, disk_image_id, disk_path, 'downloading base disk', progress)
        model.download_file(images, memory_id, memory_path, 'downloading base memory', progress)
        name = disk_image.get(props.BASE_NAME) or disk_image.get('name') or ''
        base = basevm.build_base(workdir, disk_path, memory_path, name, progress)
        model.check_base_id(base, disk_image)
        with store.lock(exclusive=True):       # in place and recorded as one step for readers
            store.adopt(workdir, base)
            return _used(store, base_id, disk_image_id)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _used(store, base_id, image_id):
    store.touch(base_id)
    if _IMAGE_ID.match(image_id or ''):
        known = os.path.join(store.path(base_id), IMAGES_DIR)
        os.makedirs(known, exist_ok=True)
        with open(os.path.join(known, image_id.lower()), 'a'):
            pass
    return store.get(base_id)


def cached_images(store):
    """{image id: base id} of the base disk images this host holds the base of."""
    found = {}
    for base in store.list():       # not store.cached(): no sizes needed at every resource claim
        try:
            names = os.listdir(os.path.join(base.path, IMAGES_DIR))
        except FileNotFoundError:
            continue
        found.update((name, base.base_id) for name in names if _IMAGE_ID.match(name))
    return found
