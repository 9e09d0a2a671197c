"""Leases on the real box: a server lives while heartbeats come, and cloudlet-reaper
deletes it once its lease and the grace period ([cloudlet_lease] of the box:
configs.LEASES) have passed, not before."""

import datetime
import time

import pytest

from cloudlet_box import cloud
from cloudlet_box import configs
from cloudlet_glance import properties as props

LEASE = 12                                      # seconds; the box allows 10 and more
GRACE = int(configs.LEASES['grace_seconds'])
INTERVAL = int(configs.LEASES['reap_interval'])


def heartbeat(conn, server_id, **entity):
    reply = conn.compute.post('/servers/%s/action' % server_id, json={'cloudlet-heartbeat': entity},
                              microversion=cloud.MICROVERSION)
    return reply.status_code, reply.json() if reply.content else None


def expiry(conn, server_id):
    text = conn.compute.get_server(server_id).metadata[props.META_LEASE_EXPIRES_AT]
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(
        tzinfo=datetime.timezone.utc).timestamp()


def gone(conn, server_id):
    return conn.compute.find_server(server_id) is None


def test_heartbeats_keep_the_server_and_the_reaper_takes_it_after_the_grace(box, base, demo, servers):
    server_id = servers.track(cloud.create_server(demo, 'e2e-leased', base['image_id'],
                                                  metadata={props.META_LEASE_SECONDS: str(LEASE)}))
    assert cloud.wait_server(demo, server_id).status == 'ACTIVE'
    # Heartbeats for longer than lease + grace: the server stays.
    until = time.time() + LEASE + GRACE + 2 * INTERVAL
    while time.time() < until:
        status, answer = heartbeat(demo, server_id)
        assert status == 200 and answer['lease']['seconds'] == LEASE
        time.sleep(LEASE / 3)
    assert not gone(demo, server_id)
    # The device leaves: no more heartbeats.
    wait_for_the_reaper(box, demo, server_id, expiry(demo, server_id), 'e2e-leased')


def wait_for_the_reaper(box, conn, server_id, ends, name):
    """The server stays until its lease (ending at `ends`) and the grace period have passed.

    Then cloudlet-reaper deletes it and says so in its log.
    """
    while time.time() < ends + GRACE - 2:
        assert not gone(conn, server_id), 'reaped %.0f s before the grace period ended' % (
            ends + GRACE - time.time())
        time.sleep(1)
    deadline = ends + GRACE + 3 * INTERVAL + 60        # + the delete itself
    while not gone(conn, server_id):
        assert time.time() < deadline, 'not reaped %.0f s after the grace period' % (
            time.time() - ends - GRACE)
        time.sleep(1)
    reaped_after = time.time() - ends
    log = (box.logs / 'cloudlet-reaper.log').read_text()
    assert 'deleted server %s (%s)' % (server_id, name) in log
    print('reaped %.1f s after the lease ran out (grace %d s)' % (reaped_after, GRACE))


@pytest.fixture
def alt_server(base, demo, servers):
    server_id = servers.track(cloud.create_server(demo, 'e2e-leased-other', base['image_id'],
                                                  metadata={props.META_LEASE_SECONDS: '600'},
                                                  networks='none'))
    assert cloud.wait_server(demo, server_id).status == 'ACTIVE'
    return server_id


def test_someone_else_s_heartbeat_is_404_and_changes_nothing(alt_server, demo, alt):
    before = demo.compute.get_server(alt_server).metadata
    assert heartbeat(alt, alt_server)[0] == 404
    assert demo.compute.get_server(alt_server).metadata == before
