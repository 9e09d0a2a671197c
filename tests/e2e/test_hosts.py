"""The box's two compute hosts (doc/multi-host.md): pre-cache, many syntheses at once, base
ageing, base-aware placement.

The first host is the box's own nova-compute; the second, box-compute2, keeps
no base it does not use ([cloudlet] base_store_budget_mb = 1, a pass every
15 s, none used less than 30 s ago), so the tests can see a base stay while
it is used, leave once it is not, and come back when it is needed. What each
host holds is read from its base store (the tests run on the machine) and
from Placement (the CUSTOM_CLOUDLET_IMAGE_<id> trait the scheduler's base
weigher reads). The tests run in file order: the placement test finds the
base aged out of the second host by the test before it (or waits for it).
"""

import concurrent.futures
import time

import pytest

from cloudlet_box import cloud
from cloudlet_box import http_serve
from cloudlet_box import notifications
from cloudlet_box import processes
from cloudlet_box import resources
from cloudlet_box import services
from cloudlet_glance import properties as props
from tests.e2e.conftest import AGED_OUT
from tests.e2e.conftest import app_get
from tests.e2e.conftest import DISK_STATE
from tests.e2e.conftest import holds
from tests.e2e.conftest import host_of
from tests.e2e.conftest import OpenStackCLI
from tests.e2e.conftest import RAM_STATE
from tests.e2e.conftest import servers_per_host
from tests.e2e.conftest import synthesize
from tests.e2e.conftest import traits
from tests.e2e.conftest import wait_until


@pytest.fixture(scope='module')
def admin_cli(box):
    return OpenStackCLI(box, 'admin')


def test_precache_fills_every_host_of_the_aggregate_and_nova_reports_each(
        box, admin, admin_cli, hosts, base, aggregate):
    first, second = hosts
    wait_until('base aged out of %s' % second, lambda: not holds(box, second, base['base_id']), AGED_OUT)
    both = aggregate('e2e-hosts-both', first, second)
    with notifications.Listener(box, 'aggregate.cache_images.progress', where={'uuid': both.uuid}) as events:
        started = time.monotonic()
        rows = admin_cli.json('cloudlet', 'base', 'precache', base['image_id'], '--aggregate', both.name,
                              '--wait', '--timeout', '600')
        took = time.monotonic() - started
        reports = events.wait_for_hosts([first, second])
    assert {(r['host'], r['status']) for r in rows} == {(first, 'cached'), (second, 'cached')}
    assert all(reports[h]['images_cached'] == [base['image_id']] and reports[h]['images_failed'] == []
               for h in (first, second)), reports
    assert holds(box, second, base['base_id'])
    print('\npre-cache of %s on %s (fetched) and %s (held): %.1f s until both report it'
          % (base['image_id'], second, first, took))


def test_precache_of_an_image_that_is_not_a_base_is_each_host_s_error(box, admin, hosts, base, aggregate):
    first, second = hosts
    memory_id = admin.image.get_image(base['image_id']).properties[props.BASE_MEMORY]
    both = aggregate('e2e-hosts-bad', first, second)
    stores = {path for state_dir in box.state_dirs for path in (state_dir / 'bases').glob('*')}
    with notifications.Listener(box, 'aggregate.cache_images.progress', where={'uuid': both.uuid}) as events:
        answer = admin.compute.post('/os-aggregates/%s/images' % both.id, json={'cache': [{'id': memory_id}]},
                                    microversion='2.81')
        assert answer.status_code == 202, answer.text
        reports = events.wait_for_hosts([first, second])
    assert all(reports[h]['images_failed'] == [memory_id] and reports[h]['images_cached'] == []
               for h in (first, second)), reports
    # Nothing half-written: the stores hold what they held.
    assert {path for state_dir in box.state_dirs for path in (state_dir / 'bases').glob('*')} == stores


def test_eight_syntheses_at_once_across_both_hosts_then_the_unused_base_ages_out(
        box, admin, admin_cli, demo, hosts, base, app_overlay, aggregate, servers):
    first, second = hosts
    both = aggregate('e2e-hosts-eight', first, second)
    admin_cli.json('cloudlet', 'base', 'precache', base['image_id'], '--aggregate', both.name, '--wait',
                   '--timeout', '600')
    # Both hosts hold the base, so the stock weighers choose; they see a host's claims only
    # once it reports them, and may send a whole burst to one host. nova's per-aggregate
    # instance limit (four more than the busier host has) spreads the eight over both.
    on_host = servers_per_host(admin)
    admin.compute.set_aggregate_metadata(both, {'max_instances_per_host': str(max(on_host[h] for h in hosts) + 4)})
    with http_serve.serve(app_overlay['path'].parent) as url:
        by_url = {'overlay_url': '%s/%s' % (url, app_overlay['path'].name)}
        by_id = {'cloudlet_overlay_id': app_overlay['image_id']}

        def run(i):
            server_id = servers.track(synthesize(demo, 'e2e-hosts-8-%d' % i, base['image_id'],
                                                 by_url if i % 2 else by_id))
            assert cloud.wait_server(demo, server_id, timeout=900).status == 'ACTIVE'
            return server_id
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(run, range(8)))
        eight = time.monotonic() - started
    placed = [host_of(admin, i) for i in ids]
    assert set(placed) == {first, second}, placed
    for server_id in ids:
        state = app_get(demo, server_id, '/cgi-bin/state')
        assert (state['ram'], state['disk'], state['bootid']) == (RAM_STATE, DISK_STATE, base['bootid'])
    print('\n8 syntheses at once (4 by URL, 4 by image id) on %d + %d hosts: %.1f s (bench/hosts_bench.py '
          'compares with one alone)' % (placed.count(first), placed.count(second), eight))
    # The small host's base is in use: kept past its idle limit and a pass, over its budget.
    wait_until('a pass after the idle limit', lambda: time.monotonic() - started > 50, 60)
    assert holds(box, second, base['base_id'])
    # Unused: gone from its store, then from Placement.
    cloud.delete_servers(demo, ids)
    wait_until('base aged out of %s' % second, lambda: not holds(box, second, base['base_id']), AGED_OUT)
    trait = props.cached_image_trait(base['image_id'])
    wait_until('trait gone from %s' % second, lambda: trait not in traits(admin, second), 60)


def test_a_host_killed_in_the_middle_of_a_precache_leaves_no_files_once_restarted(
        box, admin, hosts, base, aggregate):
    _, second = hosts
    wait_until('base aged out of %s' % second, lambda: not holds(box, second, base['base_id']), AGED_OUT)
    store = box.host_files(second).state_dir / 'bases'
    only_second = aggregate('e2e-hosts-killed', second)
    compute = services.all_services(box)[box.host_files(second).compute_service]
    answer = admin.compute.post('/os-aggregates/%s/images' % only_second.id,
                                json={'cache': [{'id': base['image_id']}]}, microversion='2.81')
    assert answer.status_code == 202, answer.text
    try:
        wait_until('the fetch under way on %s' % second, lambda: list(store.glob('.incoming-*')), 120)
        assert processes.kill(compute.name, box.run)
        assert list(store.glob('.incoming-*'))           # what a crash leaves
    finally:
        processes.start(compute.name, list(compute.argv), box.run, box.logs, env=compute.env)
    # Swept by the restarted nova-compute's init_host; nothing half-written became a base.
    wait_until('the leftovers swept', lambda: not list(store.glob('.incoming-*')), 180)
    assert not holds(box, second, base['base_id'])


def test_syntheses_go_to_the_host_that_holds_the_base_until_it_is_full(
        box, admin, admin_cli, demo, hosts, base, app_overlay, aggregate, servers):
    first, second = hosts
    # The small host forgets the base when no server uses it; the first holds it (pre-cached).
    trait = props.cached_image_trait(base['image_id'])
    wait_until('base gone from %s' % second, lambda: trait not in traits(admin, second), AGED_OUT)
    only_first = aggregate('e2e-hosts-first', first)
    rows = admin_cli.json('cloudlet', 'base', 'precache', base['image_id'], '--aggregate', only_first.name,
                          '--wait', '--timeout', '600')
    assert [(r['host'], r['status']) for r in rows] == [(first, 'cached')]
    overlay = {'cloudlet_overlay_id': app_overlay['image_id']}
    started = time.monotonic()
    ids = [servers.track(synthesize(demo, 'e2e-hosts-%d' % i, base['image_id'], overlay)) for i in range(10)]
    assert [cloud.wait_server(demo, i, timeout=900).status for i in ids] == ['ACTIVE'] * 10
    ten = time.monotonic() - started
    assert [host_of(admin, i) for i in ids] == [first] * 10
    # The first host full (nova's per-aggregate instance limit): the next goes to the other,
    # which fetches the base again (it aged out there).
    on_first = servers_per_host(admin)[first]
    admin.compute.set_aggregate_metadata(only_first, {'max_instances_per_host': str(on_first)})
    assert not holds(box, second, base['base_id'])
    started = time.monotonic()
    overflow = servers.track(synthesize(demo, 'e2e-hosts-overflow', base['image_id'], overlay))
    assert cloud.wait_server(demo, overflow, timeout=900).status == 'ACTIVE'
    uncached = time.monotonic() - started
    assert host_of(admin, overflow) == second
    state = app_get(demo, overflow, '/cgi-bin/state')       # across hosts: the tenant VLAN
    assert (state['ram'], state['disk'], state['bootid']) == (RAM_STATE, DISK_STATE, base['bootid'])
    print('\n10 syntheses at once on %s (holds the base): %.1f s; the 11th, alone on %s (fetches '
          'the base): %.1f s' % (first, ten, second, uncached))


def test_the_aggregate_of_every_host_exists(admin, hosts):
    found = next(a for a in admin.compute.aggregates() if a.name == resources.AGGREGATE)
    assert set(found.hosts) == set(hosts)
