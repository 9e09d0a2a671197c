"""A mobile back end's journey on the real clouds, with cloudlet_client: discover box and
box2 over real multicast (box's advertiser on loopback, box2's inside its WAN path's
namespace, across the veth), choose, negotiate, synthesize, reach the app, keep the
lease, stop, and cloudlet-reaper takes the server after the grace period, not before.
"""

import time

from cloudlet_box import configs
from cloudlet_box import layout
from cloudlet_client import credentials
from cloudlet_client import discovery
from cloudlet_client import journey
from cloudlet_client import overlays
from cloudlet_client import ranking
from tests.e2e import test_leases

LEASE = test_leases.LEASE
GRACE = test_leases.GRACE


def browse_until(wanted, timeout=30):
    """Browse until every name of `wanted` answered with what `wanted[name]` checks; the cloudlets."""
    deadline = time.monotonic() + timeout
    while True:
        found = {c.name: c for c in discovery.browse(timeout=2.0)}
        if all(name in found and check(found[name]) for name, check in wanted.items()):
            return found
        assert time.monotonic() < deadline, 'after %d s: %s' % (timeout, {
            name: found[name].advert if name in found else None for name in wanted})


def test_discovery_finds_both_clouds_with_their_bases_and_capacity(base):
    box, box2 = layout.named('box'), layout.named('box2')
    started = time.monotonic()
    found = browse_until({
        # The advertiser reads Glance every few seconds: the base imported by the tests shows.
        box.name: lambda c: c.holds(base['base_id']),
        box2.name: lambda c: True,
    })
    print('discovery: both clouds in %.2f s' % (time.monotonic() - started))
    here, there = found[box.name], found[box2.name]
    assert (here.keystone_url, there.keystone_url) == (box.public_keystone_url, box2.public_keystone_url)
    assert there.addresses == (box2.wan.address,)          # it came over the veth
    for cloudlet in (here, there):
        assert cloudlet.advert.free_ram_mb > 0 and cloudlet.advert.free_vcpus > 0
        assert cloudlet.advert.api_version == '1.3'
    started = time.monotonic()
    assert discovery.browse(timeout=5.0, enough=2)
    print('discovery answer: %.2f s' % (time.monotonic() - started))


def test_the_journey_on_the_box_ends_with_the_reaper(box, base, app_overlay, demo):
    overlay_ref = overlays.Overlay.image(app_overlay['image_id'])
    found = browse_until({box.name: lambda c: c.holds(base['base_id'])})
    ranked = ranking.rank(list(found.values()), base_id=base['base_id'])
    # Credentials for box only: box2 is skipped without a request (not trusted).
    creds = credentials.Credentials(clouds={box.region: 'box-demo'})
    session = journey.choose(overlay_ref, ranked, creds)
    assert session.cloudlet.name == box.name and session.negotiation.acceptable
    try:
        session.synthesize(overlay_ref, 'e2e-journey', lease_seconds=LEASE)
        session.wait_active()
        session.wait_reachable(8080)
        keeper = session.keep_alive(interval=LEASE / 3)
        time.sleep(LEASE + GRACE + 4)                      # the lease alone would have run out
        assert keeper.alive and keeper.error is None
        assert not test_leases.gone(demo, session.server_id)
        keeper.stop()                                      # the device leaves
        ends = test_leases.expiry(demo, session.server_id)
        test_leases.wait_for_the_reaper(box, demo, session.server_id, ends, 'e2e-journey')
        print('journey timings: %s' % ', '.join('%s %.2f s' % step for step in session.timings))
    finally:
        session.release()
    assert int(configs.LEASES['grace_seconds']) == GRACE


def test_the_journey_hands_off_to_box2_and_keeps_the_lease(box2, demo, box2_demo, wan, shared_base):
    from cloudlet_box import handoff_scene
    from cloudlet_client import session as session_mod
    from cloudlet_glance import properties as props
    from tests.e2e import test_handoff

    server_id, state = handoff_scene.app_server(demo, shared_base, 'e2e-journey-ho', test_handoff.RAM,
                                                test_handoff.DISK, {props.META_LEASE_SECONDS: '600'})
    # The back end's session on box, following the server it made there.
    session = session_mod.CloudletSession(credentials.named_cloud('box-demo'))
    session.server_id = server_id
    try:
        keeper = session.keep_alive(interval=5)
        session.handoff(credentials.named_cloud('box2-wan-demo'), name='e2e-journey-moved')
        moved = box2_demo.compute.get_server(session.server_id)
        assert moved.name == 'e2e-journey-moved' and moved.status == 'ACTIVE'
        assert moved.metadata[props.META_LEASE_SECONDS] == '600'
        assert handoff_scene.app_state(box2_demo, moved.id)['bootid'] == state['bootid']
        # The keeper followed the server: the next heartbeat renews the lease on box2.
        before = moved.metadata[props.META_LEASE_EXPIRES_AT]
        time.sleep(6)
        assert keeper.alive and keeper.error is None
        assert box2_demo.compute.get_server(moved.id).metadata[props.META_LEASE_EXPIRES_AT] > before
        assert demo.compute.find_server(server_id) is None
    finally:
        session.release()
        if demo.compute.find_server(server_id) is not None:
            demo.compute.delete_server(server_id)


def test_the_runnable_example_does_the_journey(box, base, app_overlay, demo):
    """examples/mobile_backend.py, as README shows it, against the box.

    Every step reported, exit 0, nothing left (it releases the server).
    """
    import subprocess
    import sys

    found = browse_until({box.name: lambda c: c.holds(base['base_id'])})
    assert found
    result = subprocess.run(
        [sys.executable, 'examples/mobile_backend.py', app_overlay['image_id'], '--name', 'e2e-example',
         '--cloud-for', '%s=box-demo' % box.region, '--lease', str(LEASE), '--heartbeats', '2',
         '--heartbeat-interval', '2'],
        capture_output=True, text=True, timeout=600)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    for step in ('discover', 'rank', 'negotiate', 'synthesize', 'active', 'reachable', 'heartbeats',
                 'release', 'total'):
        assert step in steps, (step, result.stdout)
    # release() asked nova to delete the server: it goes within a minute.
    deadline = time.monotonic() + 120
    while [s for s in demo.compute.servers() if s.name == 'e2e-example']:
        assert time.monotonic() < deadline, 'the example left its server behind'
        time.sleep(1)
