"""The base store as nova sees it (basecache): pre-cache, ageing, traits; over a fake Glance."""

import os
from unittest import mock

import pytest

import nova.conf
from nova import exception
from nova import objects

from cloudlet_engine import basestore
from cloudlet_glance import properties as props
from cloudlet_nova.virt import basecache
from cloudlet_nova.virt import launch
from cloudlet_nova.virt import state

CONF = nova.conf.CONF
MB = 1024 * 1024


def _entries(store):
    return sorted(e for e in os.listdir(store.root)
                  if e != basestore.LOCK and not e.startswith(basestore.FETCH_LOCK))


def test_precache_fetches_a_base_once(glance):
    images, imported = glance
    assert basecache.precache('ctx', imported.disk_id, ram_owner=None) is True
    store = launch.base_store()
    assert _entries(store) == [imported.base_id]
    downloads = images.count('download')
    assert basecache.precache('ctx', imported.disk_id, ram_owner=None) is False
    assert images.count('download') == downloads


def test_precache_makes_the_ram_file_too(glance, conf):
    images, imported = glance
    conf.config(memory_restore='ram_file', group='cloudlet')
    with mock.patch.object(basecache.launch, 'ram_file') as ram_file:
        basecache.precache('ctx', imported.disk_id, ram_owner=(64055, 64055))
    [(base, owner), _] = ram_file.call_args
    assert base.base_id == imported.base_id and owner == (64055, 64055)


def test_an_ordinary_image_is_left_to_nova(glance):
    images, _ = glance
    ordinary = images.create('cirros', {})
    assert basecache.precache('ctx', ordinary, ram_owner=None) is None


@pytest.mark.parametrize('companion', ['memory_id', 'disk_hash_id'])
def test_a_companion_or_an_overlay_is_refused_with_what_to_cache_instead(glance, companion):
    images, imported = glance
    with pytest.raises(exception.ImageUnacceptable, match='not a base disk image'):
        basecache.precache('ctx', getattr(imported, companion), ram_owner=None)
    assert not os.path.exists(launch.base_store().root) or _entries(launch.base_store()) == []


def test_a_base_whose_memory_image_is_gone_leaves_nothing_half_written(glance):
    images, imported = glance
    images.delete(imported.memory_id)
    with pytest.raises(Exception, match=imported.memory_id):
        basecache.precache('ctx', imported.disk_id, ram_owner=None)
    assert _entries(launch.base_store()) == []


def test_traits_name_the_cached_images_and_keep_the_others(glance):
    images, imported = glance
    current = {'COMPUTE_NODE', props.TRAIT, props.cached_image_trait('gone-image')}
    assert basecache.provider_traits(current) == {'COMPUTE_NODE', props.TRAIT}
    basecache.precache('ctx', imported.disk_id, ram_owner=None)
    assert basecache.provider_traits(current) == {'COMPUTE_NODE', props.TRAIT,
                                                  props.cached_image_trait(imported.disk_id)}
    assert props.cached_image_trait(imported.disk_id) == (
        'CUSTOM_CLOUDLET_IMAGE_' + imported.disk_id.upper().replace('-', '_'))


def _instance_with_record(base_id, uuid):
    instance_dir = os.path.join(CONF.instances_path, uuid)
    record = {'version': state.VERSION, 'base_id': base_id}
    state.save(instance_dir, record)


def test_bases_in_use_come_from_records_and_from_nova(conf):
    _instance_with_record('aa' * 32, 'one')
    nova_instance = objects.Instance(system_metadata={props.system_metadata_key(props.BASE_ID): 'bb' * 32})
    plain = objects.Instance(system_metadata={})
    assert basecache.bases_in_use(CONF.instances_path, [nova_instance, plain]) == {'aa' * 32, 'bb' * 32}


def test_ageing_is_off_without_a_budget_or_when_nova_keeps_unused_images(glance, conf):
    images, imported = glance
    basecache.precache('ctx', imported.disk_id, ram_owner=None)
    assert basecache.age([]) is None                     # budget 0: no limit
    conf.config(base_store_budget_mb=1, group='cloudlet')
    conf.config(remove_unused_base_images=False, group='image_cache')
    assert basecache.age([]) is None
    assert _entries(launch.base_store()) == [imported.base_id]


def test_ageing_keeps_a_base_in_use_and_evicts_it_once_unused(glance, conf):
    images, imported = glance
    basecache.precache('ctx', imported.disk_id, ram_owner=None)
    conf.config(remove_unused_original_minimum_age_seconds=0, group='image_cache')
    conf.config(base_store_budget_mb=1, group='cloudlet')
    store = launch.base_store()
    [cached] = store.cached()
    # The synthetic base is smaller than 1 MiB: the option's unit is patched to
    # make the budget exactly the base, then one byte less.
    with mock.patch.object(basecache, 'MB', cached.allocated_bytes):
        assert basecache.age([]).evicted == ()
    with mock.patch.object(basecache, 'MB', cached.allocated_bytes - 1):
        _instance_with_record(imported.base_id, 'user')
        result = basecache.age([])
        assert result.evicted == () and result.over_budget
        state.remove(os.path.join(CONF.instances_path, 'user'))
        assert basecache.age([]).evicted == (imported.base_id,)
    assert _entries(store) == []
    # Needed again: fetched again.
    assert basecache.precache('ctx', imported.disk_id, ram_owner=None) is True


def test_a_base_a_spawn_is_using_is_kept_before_any_record_names_it(glance, conf):
    images, imported = glance
    basecache.precache('ctx', imported.disk_id, ram_owner=None)
    conf.config(remove_unused_original_minimum_age_seconds=0, group='image_cache')
    conf.config(base_store_budget_mb=1, group='cloudlet')
    with mock.patch.object(basecache, 'MB', 1):           # a budget of 1 byte
        with basecache.in_use(imported.disk_id):
            assert basecache.age([]).evicted == ()
        assert basecache.age([]).evicted == (imported.base_id,)
