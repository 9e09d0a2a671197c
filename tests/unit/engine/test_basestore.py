"""A host's base store: locking, last use, sweep, and ageing under a byte budget."""

import os
import shutil

import pytest

from cloudlet_engine import basestore
from tests.unit.glance.conftest import make_base

MB = 1 << 20


def _cached(base_id, mb, last_used):
    return basestore.Cached(base_id, mb * MB, last_used)


@pytest.fixture
def store(tmp_path):
    return basestore.BaseStore(str(tmp_path / 'store'))


def _add(store, tmp_path, seed, last_used):
    os.makedirs(store.root, exist_ok=True)
    base = make_base(tmp_path / ('work-%d' % seed), seed=seed, name='b%d' % seed)
    adopted = store.adopt(os.path.dirname(base.disk_path), base)
    os.utime(os.path.join(adopted.path, basestore.LAST_USED), (last_used, last_used))
    return adopted.base_id


# ---------------------------------------------------------------- choose_evictions


def test_least_recently_used_go_first_until_the_rest_fits():
    cached = [_cached('new', 40, 300), _cached('old', 40, 100), _cached('mid', 40, 200)]
    chosen, kept = basestore.choose_evictions(cached, 50 * MB, in_use=set(), min_idle=0, now=1000)
    assert chosen == ['old', 'mid'] and kept == 40 * MB


def test_nothing_goes_while_the_store_fits_its_budget():
    cached = [_cached('a', 40, 100), _cached('b', 40, 200)]
    assert basestore.choose_evictions(cached, 80 * MB, set(), 0, 1000) == ([], 80 * MB)


def test_a_base_in_use_or_used_recently_is_kept_whatever_the_budget():
    cached = [_cached('in-use', 40, 100), _cached('recent', 40, 990), _cached('idle', 40, 200)]
    chosen, kept = basestore.choose_evictions(cached, 0, in_use={'in-use'}, min_idle=60, now=1000)
    assert chosen == ['idle'] and kept == 80 * MB


# ---------------------------------------------------------------- the store on disk


def test_age_deletes_the_idle_bases_over_the_budget(store, tmp_path):
    old = _add(store, tmp_path, 1, last_used=1000)
    used = _add(store, tmp_path, 2, last_used=1500)
    recent = _add(store, tmp_path, 3, last_used=2990)
    sizes = {c.base_id: c.allocated_bytes for c in store.cached()}
    assert all(size > 0 for size in sizes.values())
    # Over budget even without `used`: `recent` was used 10 s ago, `used` is in use.
    result = basestore.age(store, sizes[used], in_use={used}, min_idle=60, now=3000)
    assert result.evicted == (old,)
    assert sorted(b.base_id for b in store.list()) == sorted([used, recent])
    assert result.kept_bytes == sizes[used] + sizes[recent] and result.over_budget
    assert [e for e in os.listdir(store.root) if e.startswith('.') and e != basestore.LOCK] == []


def test_touch_makes_a_base_the_most_recently_used(store, tmp_path):
    first = _add(store, tmp_path, 1, last_used=1000)
    second = _add(store, tmp_path, 2, last_used=2000)
    store.touch(first)
    result = basestore.age(store, 0, in_use=set(), min_idle=60)
    # `first` was used just now: kept; `second` has been idle for years.
    assert result.evicted == (second,) and [b.base_id for b in store.list()] == [first]


def test_a_base_cached_before_ageing_counts_from_its_manifest(store, tmp_path):
    base_id = _add(store, tmp_path, 1, last_used=1000)
    os.unlink(os.path.join(store.path(base_id), basestore.LAST_USED))
    [cached] = store.cached()
    assert cached.last_used == os.stat(os.path.join(store.path(base_id), 'manifest.json')).st_mtime


def test_sweep_removes_what_a_stopped_fetch_or_deletion_left(store, tmp_path):
    kept = _add(store, tmp_path, 1, last_used=1000)
    incoming = store.new_workdir()
    with open(os.path.join(incoming, 'disk.raw'), 'wb') as f:
        f.write(b'half')
    evicting = os.path.join(store.root, basestore.EVICTING + 'x')
    shutil.copytree(store.path(kept), os.path.join(evicting, kept))
    with store.fetching(kept):
        pass
    assert sorted(store.sweep()) == sorted([incoming, evicting])      # and the fetch lock, silently
    assert os.listdir(store.root) == [kept]
    assert store.sweep() == []


def test_delete_of_a_base_that_is_not_there_is_an_error(store):
    with pytest.raises(Exception, match='not cached'):
        store.delete('ab' * 32)
