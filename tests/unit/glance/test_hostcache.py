"""A host's base store filled from Glance (hostcache), over a fake image service."""

import os
import threading

import pytest

from cloudlet_engine import basestore
from cloudlet_engine import errors as engine_errors
from cloudlet_glance import errors
from cloudlet_glance import hostcache
from cloudlet_glance import model
from cloudlet_glance import properties as props
from tests.unit.glance import fakes


def _entries(store):
    """What the store holds but its lock files."""
    return sorted(e for e in os.listdir(store.root)
                  if e != basestore.LOCK and not e.startswith(basestore.FETCH_LOCK))


def test_fetch_base_downloads_once_then_uses_the_cache(fake_images, package, tmp_path):
    imported = model.import_base_package(fake_images, package[1])
    store = basestore.BaseStore(str(tmp_path / 'cache'))
    progress = fakes.RecordingProgress()
    base = hostcache.fetch_base(fake_images, imported.disk_id, store, progress)
    assert base.base_id == imported.base_id and base.path == store.path(imported.base_id)
    assert fakes.read_file(base.disk_path) == fakes.read_file(package[0].disk_path)
    assert fakes.read_file(base.memory_path) == fakes.read_file(package[0].memory_path)
    # Only disk and memory travel; the engine recomputes the hash lists.
    downloaded = {image_id for method, image_id in fake_images.calls if method == 'download'}
    assert downloaded == {imported.disk_id, imported.memory_id}
    assert progress.stages['downloading base disk'] == (base.disk_size, base.disk_size)

    downloads = fake_images.count('download')
    again = hostcache.fetch_base(fake_images, imported.disk_id, store)
    assert again.path == base.path and fake_images.count('download') == downloads
    assert _entries(store) == [imported.base_id]


def test_a_fetch_records_the_image_and_the_use(fake_images, package, tmp_path):
    imported = model.import_base_package(fake_images, package[1])
    store = basestore.BaseStore(str(tmp_path / 'cache'))
    hostcache.fetch_base(fake_images, imported.disk_id, store)
    assert hostcache.cached_images(store) == {imported.disk_id: imported.base_id}
    marker = os.path.join(store.path(imported.base_id), basestore.LAST_USED)
    os.utime(marker, (1000, 1000))
    hostcache.fetch_base(fake_images, imported.disk_id, store)      # from the cache
    [cached] = store.cached()
    assert cached.last_used > 1000

    # A second Glance image of the same base: known to the host once used there.
    second = fake_images.create('copy', {k: v for k, v in fake_images.get(imported.disk_id).items()
                                         if k.startswith('cloudlet_')})
    downloads = fake_images.count('download')
    hostcache.fetch_base(fake_images, second, store)
    assert fake_images.count('download') == downloads
    assert hostcache.cached_images(store) == {imported.disk_id: imported.base_id,
                                              second: imported.base_id}


def test_concurrent_fetches_of_one_base_download_it_once(fake_images, package, tmp_path):
    imported = model.import_base_package(fake_images, package[1])
    store = basestore.BaseStore(str(tmp_path / 'cache'))
    results, failures = [], []

    def fetch():
        try:
            results.append(hostcache.fetch_base(fake_images, imported.disk_id, store).path)
        except Exception as exc:    # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and set(results) == {store.path(imported.base_id)}
    assert _entries(store) == [imported.base_id]
    assert fake_images.count('download') == 2          # disk and memory, once


def test_fetch_base_refuses_content_with_another_id(fake_images, package, other_package, tmp_path):
    imported = model.import_base_package(fake_images, package[1])
    other = other_package[0]
    # The memory image now holds another base's snapshot: the content is a different base.
    fake_images.replace_data(imported.memory_id, fakes.read_file(other.memory_path))
    store = basestore.BaseStore(str(tmp_path / 'cache'))
    with pytest.raises(engine_errors.BaseVMError) as caught:
        hostcache.fetch_base(fake_images, imported.disk_id, store)
    message = str(caught.value)
    assert imported.base_id in message and imported.disk_id in message
    assert _entries(store) == []          # the work directory is gone
    assert hostcache.cached_images(store) == {}


def test_a_base_whose_memory_image_is_gone_leaves_nothing(fake_images, package, tmp_path):
    imported = model.import_base_package(fake_images, package[1])
    fake_images.delete(imported.memory_id)
    store = basestore.BaseStore(str(tmp_path / 'cache'))
    with pytest.raises(errors.ImageNotFound, match=imported.memory_id):
        hostcache.fetch_base(fake_images, imported.disk_id, store)
    assert _entries(store) == []


@pytest.mark.parametrize('claimed', ['../../etc', 'ABC', ''])
def test_fetch_base_refuses_a_bad_base_id(fake_images, package, tmp_path, claimed):
    imported = model.import_base_package(fake_images, package[1])
    fake_images.update(imported.disk_id, {props.BASE_ID: claimed})
    with pytest.raises(engine_errors.BaseVMError, match='invalid'):
        hostcache.fetch_base(fake_images, imported.disk_id, basestore.BaseStore(str(tmp_path / 'cache')))
    assert not os.path.exists(str(tmp_path / 'cache'))


def test_fetch_base_refuses_an_image_that_is_not_a_base(fake_images, package, tmp_path):
    imported = model.import_base_package(fake_images, package[1])
    with pytest.raises(engine_errors.BaseVMError, match='not a cloudlet base disk'):
        hostcache.fetch_base(fake_images, imported.memory_id, basestore.BaseStore(str(tmp_path / 'cache')))
    with pytest.raises(errors.ImageNotFound):
        hostcache.fetch_base(fake_images, '00000000-0000-0000-0000-000000000000',
                             basestore.BaseStore(str(tmp_path)))
