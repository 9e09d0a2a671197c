"""Live and cold migration of cloudlet servers between the box's two compute hosts (doc/multi-host.md).

nova's stock live migration (`POST /servers/{id}/action` os-migrateLive,
block migration `auto`): the destination gets the base from its store or from
Glance, the VM keeps its memory (same boot id, the app's RAM state) and
answers at its floating IP throughout but for the switch-over, whose length
the outside probe measures. nova's stock cold migration (`migrate`, then
`confirmResize` or `revertResize`): the VM's memory is saved, carried next to
its disk and restored, so it keeps its boot id and state too. The migrations
go from the first host to box-compute2: the first host's libvirtd is the
machine's own, which listens on no TCP port, and it runs no sshd
(doc/multi-host.md, "Live migration", "Cold migration").
"""

import json
import threading
import time

import pytest

from cloudlet_box import cloud
from cloudlet_box import guest_app
from cloudlet_box import processes
from cloudlet_box import services
from tests.e2e.conftest import AGED_OUT
from tests.e2e.conftest import app_get
from tests.e2e.conftest import DISK_STATE
from tests.e2e.conftest import holds
from tests.e2e.conftest import host_of
from tests.e2e.conftest import RAM_STATE
from tests.e2e.conftest import synthesize
from tests.e2e.conftest import wait_until

MIGRATION_TIMEOUT = 600


class Outage:
    """The app at `address`, probed every `interval` s from outside: the longest run without an answer."""

    def __init__(self, address, interval=0.1):
        self.address, self.interval = address, interval
        self.longest = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, name='outage-probe', daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def _probe(self):
        last = time.monotonic()
        while not self._stop.is_set():
            if guest_app.answers(self.address, 0.3):
                now = time.monotonic()
                self.longest = max(self.longest, now - last)
                self.answers += 1
                last = now
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def on_first_host(demo, admin, hosts, aggregate, name, base, app_overlay, servers):
    """A server synthesized from the app overlay on the first host (the second called full)."""
    first, second = hosts
    full = aggregate('e2e-migrate-not-' + name, second, metadata={'max_instances_per_host': '0'})
    try:
        server_id = servers.track(synthesize(demo, 'e2e-migrate-' + name, base['image_id'],
                                             {'cloudlet_overlay_id': app_overlay['image_id']}))
        assert cloud.wait_server(demo, server_id, timeout=600).status == 'ACTIVE'
    finally:
        admin.compute.remove_host_from_aggregate(full, second)     # room again for the migration
    assert host_of(admin, server_id) == first
    return server_id


def live_migrate(admin, server_id, host=None):
    # 2.34 and later: the pre-checks run after the 202, their refusal is in the action's events.
    answer = admin.compute.post('/servers/%s/action' % server_id, microversion='2.84',
                                json={'os-migrateLive': {'host': host, 'block_migration': 'auto'}})
    assert answer.status_code == 202, answer.text


def migration_of(admin, server_id):
    """The server's newest live migration (nova's record, admin's view)."""
    found = admin.compute.get('/os-migrations?instance_uuid=%s&migration_type=live-migration' % server_id,
                              microversion='2.59').json()['migrations']
    return max(found, key=lambda m: m['id']) if found else None


def wait_migration(admin, server_id, timeout=MIGRATION_TIMEOUT):
    wait_until('the live migration of %s ends' % server_id,
               lambda: (migration_of(admin, server_id) or {}).get('status') in ('completed', 'error', 'failed'),
               timeout)
    server = admin.compute.get_server(server_id)
    wait_until('task state of %s cleared' % server_id,
               lambda: admin.compute.get_server(server_id).task_state is None, 120)
    return migration_of(admin, server_id), server


def test_a_live_migration_to_a_host_that_cannot_get_the_base_is_refused_and_the_vm_untouched(
        box, admin, demo, hosts, base, app_overlay, aggregate, servers):
    first, second = hosts
    server_id = on_first_host(demo, admin, hosts, aggregate, 'refused', base, app_overlay, servers)
    before = app_get(demo, server_id, '/cgi-bin/state')
    wait_until('base aged out of %s' % second, lambda: not holds(box, second, base['base_id']), AGED_OUT)
    admin.image.deactivate_image(base['image_id'])      # an operator withdrew the base image
    try:
        live_migrate(admin, server_id, host=second)
        migration, server = wait_migration(admin, server_id)
    finally:
        admin.image.reactivate_image(base['image_id'])
    assert migration['status'] in ('error', 'failed'), migration
    assert (server.status, server.compute_host) == ('ACTIVE', first)
    events = admin.compute.get('/servers/%s/os-instance-actions' % server_id, microversion='2.84').json()
    action = next(a for a in events['instanceActions'] if a['action'] == 'live-migration')
    detail = admin.compute.get('/servers/%s/os-instance-actions/%s' % (server_id, action['request_id']),
                               microversion='2.84').json()['instanceAction']
    messages = ' '.join(str(e.get('details') or '') + str(e.get('traceback') or '') for e in detail['events'])
    assert 'cannot fetch it from the image service' in messages and 'deactivated' in messages, detail
    after = app_get(demo, server_id, '/cgi-bin/state')
    assert [after[k] for k in ('ram', 'disk', 'bootid')] == [before[k] for k in ('ram', 'disk', 'bootid')]
    assert not holds(box, second, base['base_id'])


def test_a_live_migration_moves_the_running_vm_onto_the_base_of_the_other_host(
        box, admin, demo, demo_cli, hosts, base, app_overlay, aggregate, servers):
    first, second = hosts
    server_id = on_first_host(demo, admin, hosts, aggregate, 'live', base, app_overlay, servers)
    before = app_get(demo, server_id, '/cgi-bin/state')
    assert (before['ram'], before['disk'], before['bootid']) == (RAM_STATE, DISK_STATE, base['bootid'])
    address = guest_app.floating_ip(demo, server_id)
    started = time.monotonic()
    with Outage(address) as outage:
        live_migrate(admin, server_id)
        migration, server = wait_migration(admin, server_id)
        took = time.monotonic() - started
        time.sleep(2)      # the probe sees the VM answer on the destination
    assert migration['status'] == 'completed', migration
    assert (server.status, server.compute_host) == ('ACTIVE', second)
    # The same VM: its memory came along (boot id, RAM state), and its disk.
    after = app_get(demo, server_id, '/cgi-bin/state')
    assert (after['ram'], after['disk'], after['bootid']) == (RAM_STATE, DISK_STATE, base['bootid'])
    assert outage.answers > 0 and outage.longest < took, (outage.longest, took)
    # On the destination: the base in its store, the record naming it, the disk over it.
    files = box.host_files(second)
    assert holds(box, second, base['base_id'])
    record = json.loads((files.instances / server_id / 'cloudlet.json').read_text())
    assert (record['base_id'], record['source']) == (base['base_id'], {'kind': 'live-migration', 'ref': first})
    assert not (box.host_files(first).instances / server_id).exists()
    # Still an overlay of its base.
    overlay = demo_cli.json('cloudlet', 'overlay', 'create', server_id, '--name', 'e2e-migrated', '--wait')
    try:
        assert demo.image.get_image(overlay['id']).properties['cloudlet_base_id'] == base['base_id']
    finally:
        demo_cli.run('cloudlet', 'overlay', 'delete', overlay['id'])
    print('\nlive migration %s -> %s: %.1f s in all; the app answered no request for %.2f s at most '
          '(probe every 0.1 s)' % (first, second, took, outage.longest))


def cold_migrate(admin, server_id, host=None):
    answer = admin.compute.post('/servers/%s/action' % server_id, microversion='2.56',
                                json={'migrate': {'host': host} if host else None})
    assert answer.status_code == 202, answer.text


def resize_action(admin, server_id, action):
    answer = admin.compute.post('/servers/%s/action' % server_id, json={action: None})
    assert answer.status_code in (202, 204), answer.text


def wait_status(admin, server_id, statuses, timeout=MIGRATION_TIMEOUT):
    wait_until('server %s %s' % (server_id, ' or '.join(statuses)),
               lambda: admin.compute.get_server(server_id).status in statuses + ('ERROR',), timeout)
    server = admin.compute.get_server(server_id)
    assert server.status in statuses, (server.status, server.fault)
    return server


def test_a_cold_migration_carries_the_vm_s_memory_to_the_other_host(
        box, admin, demo, hosts, base, app_overlay, aggregate, servers):
    """nova's stock cold migration (`openstack server migrate`): reverted first (the VM runs on
    the first host again, from the memory it saved), then again and confirmed. Each time the VM
    keeps its memory: same boot id, same RAM state, its disk.
    """
    first, second = hosts
    server_id = on_first_host(demo, admin, hosts, aggregate, 'cold', base, app_overlay, servers)
    address = guest_app.floating_ip(demo, server_id)

    def same_vm():
        state = app_get(demo, server_id, '/cgi-bin/state')
        return (state['ram'], state['disk'], state['bootid']) == (RAM_STATE, DISK_STATE, base['bootid'])

    assert same_vm()
    cold_migrate(admin, server_id, host=second)
    server = wait_status(admin, server_id, ('VERIFY_RESIZE',))
    assert server.compute_host == second and same_vm()
    resize_action(admin, server_id, 'revertResize')
    wait_until('the revert of %s ends' % server_id,
               lambda: admin.compute.get_server(server_id).task_state is None, MIGRATION_TIMEOUT)
    server = wait_status(admin, server_id, ('ACTIVE',))
    assert server.compute_host == first and same_vm()
    assert not (box.host_files(second).instances / server_id).exists()

    started = time.monotonic()
    with Outage(address) as outage:
        cold_migrate(admin, server_id)        # the scheduler's choice: the other host
        server = wait_status(admin, server_id, ('VERIFY_RESIZE',))
        took = time.monotonic() - started
        wait_until('the app answers on %s' % second, lambda: guest_app.answers(address, 1.0), 120)
    assert server.compute_host == second and same_vm()
    resize_action(admin, server_id, 'confirmResize')
    wait_status(admin, server_id, ('ACTIVE',))
    wait_until('the source directory of %s deleted' % server_id,
               lambda: not (box.host_files(first).instances / server_id).exists(), 120)
    record = json.loads((box.host_files(second).instances / server_id / 'cloudlet.json').read_text())
    assert (record['base_id'], record['source']) == (base['base_id'], {'kind': 'cold-migration', 'ref': first})
    assert not (box.host_files(second).instances / server_id / 'cloudlet-migration.save').exists()
    print('\ncold migration %s -> %s: %.1f s to VERIFY_RESIZE; the app answered no request for %.2f s at '
          'most (probe every 0.1 s)' % (first, second, took, outage.longest))


@pytest.mark.faults
def test_the_destination_killed_while_it_fetches_the_base_for_a_cold_migration(
        box, admin, demo, hosts, base, app_overlay, aggregate, servers):
    """box-compute2's nova-compute dies while it fetches the base a cold migration asked it for
    (before anything stops: the source asks first). The source's question times out (the box's
    [cloudlet] migration_prepare_timeout): the migration is refused and the VM runs on at the
    first host with its state. Started again, box-compute2 sweeps what the fetch left, and
    holds nothing of the server.
    """
    first, second = hosts
    wait_until('base aged out of %s' % second, lambda: not holds(box, second, base['base_id']), AGED_OUT)
    server_id = on_first_host(demo, admin, hosts, aggregate, 'killed', base, app_overlay, servers)
    store = box.host_files(second).state_dir / 'bases'
    compute = services.all_services(box)[box.host_files(second).compute_service]
    cold_migrate(admin, server_id, host=second)
    try:
        wait_until('the fetch under way on %s' % second, lambda: list(store.glob('.incoming-*')), 120)
        assert processes.kill(compute.name, box.run)
        # Down until the source gave up: the migration refused, the VM running at the first host.
        wait_until('the migration of %s given up' % server_id,
                   lambda: admin.compute.get_server(server_id).task_state is None, MIGRATION_TIMEOUT)
    finally:
        processes.start(compute.name, list(compute.argv), box.run, box.logs, env=compute.env)
    server = wait_status(admin, server_id, ('ACTIVE',))
    assert server.compute_host == first
    state = app_get(demo, server_id, '/cgi-bin/state')
    assert (state['ram'], state['disk'], state['bootid']) == (RAM_STATE, DISK_STATE, base['bootid'])
    migrations = admin.compute.get('/os-migrations?instance_uuid=%s' % server_id, microversion='2.80').json()
    assert [m['status'] for m in migrations['migrations']] == ['error'], migrations
    # Swept by the restarted nova-compute's init_host; nothing of the server there.
    wait_until('the leftovers swept', lambda: not list(store.glob('.incoming-*')), 180)
    assert not (box.host_files(second).instances / server_id).exists()
