"""VM handoff from box to box2, across the WAN path, on the real clouds (doc/handoff.md).

The success case goes through the `openstack cloudlet server handoff` CLI, as a
user would; the failure cases POST the action the way a mobile back end does
and check that the source server keeps running with its state, that its
instance action records the failure, and that the destination's credential
is nowhere it must not be. One source server serves all failure cases: each
failure must leave it running. The cases that break the running clouds (a link
cut at the switch or at the first or last bytes, a nova-compute killed or
restarted mid-handoff) are marked `faults`: `tools/test.sh faults` runs them,
not CI (README.md, "Tests").
"""

import json
import pathlib
import subprocess
import time

import pytest

from cloudlet_box import cloud
from cloudlet_box import guest_app
from cloudlet_box import handoff_scene
from cloudlet_box import layout
from cloudlet_box import processes
from cloudlet_box import services
from cloudlet_glance import properties as props
from tests.e2e.conftest import host_files

RAM, DISK = 'e2e-ho-ram', 'e2e-ho-disk'
LOGS = pathlib.Path('/var/log/openstack-cloudlet')


def _source(demo, shared_base, name, metadata=None):
    server_id, state = handoff_scene.app_server(demo, shared_base, name, RAM, DISK, metadata)
    return server_id, state


def _secret_nowhere(secret, *server_ids):
    """The credential is in no log of either cloud, no handoff record, no metadata."""
    found = subprocess.run(['grep', '-rlF', secret, str(LOGS / 'box'), str(LOGS / 'box2'),
                            str(layout.named('box').root / 'nova')], capture_output=True, text=True)
    assert found.stdout == '', 'the credential leaked into %s' % found.stdout


def _dest_leftovers(box2_demo, handoff_id):
    """Delete what a failed handoff may have left on box2 (the link was down during its
    clean-up); return the servers found.
    """
    left = [s for s in box2_demo.compute.servers(details=True)
            if (s.metadata or {}).get(handoff_scene.HANDOFF_ID_KEY) == handoff_id]
    for server in left:
        cloud.delete_server(box2_demo, server.id)
    return left


@pytest.fixture(scope='module')
def moved(box, box2, demo, demo_cli, box2_demo, wan, shared_base):
    """A handoff that works, through the CLI: (CLI output, source state, destination server, wire bytes)."""
    # A leased server: the lease goes along (a fresh one on box2). Longer than this module's
    # tests: the lease's end must not delete it while a fault test has box2's compute down.
    server_id, state = _source(demo, shared_base, 'e2e-ho-src', {props.META_LEASE_SECONDS: '7200'})
    source_address = guest_app.floating_ip(demo, server_id)
    source_macs = sorted(port.mac_address for port in demo.network.ports(device_id=server_id))
    try:
        wan.reset_counters()
        result = demo_cli.json('cloudlet', 'server', 'handoff', server_id, '--dest-cloud', 'box2-demo',
                               '--dest-auth-url', wan.url('keystone') + '/v3', '--name', 'e2e-ho-moved',
                               '--wait', '--timeout', '600')
        counters = wan.stats()
    finally:
        if demo.compute.find_server(server_id) is not None:
            cloud.delete_server(demo, server_id)
    server = handoff_scene.find_dest_server(box2_demo, result['handoff_id'])
    yield result, state, server, counters, server_id, source_address, source_macs
    if server is not None:
        floating_ip_id = handoff_scene.record(result['handoff_id']).get('destination_floating_ip_id')
        # Nova's own delete (not cloud.delete_server, which releases floating IPs itself):
        # the ports the handoff made for the NICs go with the server, as nova's own do,
        # and so does the floating IP it made for it.
        box2_demo.compute.delete_server(server.id)
        box2_demo.compute.wait_for_delete(server, wait=120)
        assert not list(box2_demo.network.ports(name='cloudlet-handoff-%s' % result['handoff_id']))
        assert floating_ip_id and box2_demo.network.find_ip(floating_ip_id) is None


def test_handoff_moves_the_running_server(moved, demo, box2_demo):
    result, state, server, counters, source_id, source_address, _macs = moved
    assert server is not None and server.status == 'ACTIVE'
    assert server.name == 'e2e-ho-moved'
    # Gone from box, running on box2 with the memory and disk it had: the same boot.
    assert demo.compute.find_server(source_id) is None
    arrived = handoff_scene.app_state(box2_demo, server.id)
    assert arrived['bootid'] == state['bootid']
    assert (arrived['ram'], arrived['disk'], arrived['app']) == (RAM, DISK, state['app'])
    assert int(arrived['counter']) >= int(state['counter'])
    # It crossed the WAN path (the residue went up through the relay).
    assert counters['up'] > 1e6
    record = handoff_scene.record(result['handoff_id'])
    assert record['result'] == 'ok'
    assert record.get('downtime_seconds') is not None
    # box2 has a key manager: the residue crossed encrypted, under a key named in the metadata.
    assert record['residue_encrypted'] is True
    assert server.metadata[props.OVERLAY_KEY_ID]
    # The residue went into the spawning server through box2's compute API, no
    # image rests in box2's Glance, and the source waited for box2 to be ready
    # before the VM's memory went.
    assert props.META_OVERLAY_ID not in server.metadata
    assert record['residue']['ready_wait_seconds'] is not None
    relayed = (LOGS / 'box2' / 'nova-api-app.log').read_text()
    assert 'handoff %s: ' % result['handoff_id'] in relayed and 'residue bytes relayed' in relayed
    # The lease came along, started afresh by box2's API.
    assert server.metadata[props.META_LEASE_SECONDS] == '7200'
    assert props.META_LEASE_EXPIRES_AT in server.metadata


def test_handoff_moves_the_address_too(moved, demo, box2_demo):
    """Reached at a floating IP on box, the server is reached at one of box2's after the
    move (its own port on box2's Neutron); box's port and floating IP are released.
    """
    result, state, server, _counters, source_id, source_address, source_macs = moved
    record = handoff_scene.record(result['handoff_id'])
    # The NICs went along: box2's ports have the VM's MACs, and the guest renewed its address there.
    assert record['nics'] == 'carried'
    ports = list(box2_demo.network.ports(device_id=server.id))
    assert sorted(port.mac_address for port in ports) == source_macs and source_macs
    assert all(port.name == 'cloudlet-handoff-%s' % result['handoff_id'] for port in ports)
    address = record['destination_floating_ip']
    assert address and address != source_address
    assert address == guest_app.floating_ip(box2_demo, server.id)
    arrived = guest_app.get(address, '/cgi-bin/state')
    assert (arrived['bootid'], arrived['ram'], arrived['disk']) == (state['bootid'], RAM, DISK)
    assert not list(demo.network.ports(device_id=source_id))
    assert source_address not in [ip.floating_ip_address for ip in demo.network.ips()]
    assert not guest_app.reachable(source_address)


@pytest.fixture(scope='module')
def survivor(box, box2, demo, shared_base):
    """The source server of the failure cases: each must leave it running."""
    server_id, state = _source(demo, shared_base, 'e2e-ho-survivor')
    yield server_id, state
    cloud.delete_server(demo, server_id)


def _attempt(demo, box2_demo, wan, server_id, dest, timeout=300):
    handoff_id = handoff_scene.start_handoff(demo, server_id, dest, 'e2e-ho-never')
    outcome, _dest, _seconds = handoff_scene.wait_handoff(demo, box2_demo, server_id, handoff_id, timeout)
    return handoff_id, outcome


def _kept_running(demo, server_id, state, handoff_id):
    server = demo.compute.get_server(server_id)
    assert (server.status, server.task_state) == ('ACTIVE', None)
    after = handoff_scene.app_state(demo, server_id)
    assert after['bootid'] == state['bootid'] and (after['ram'], after['disk']) == (RAM, DISK)
    action = handoff_scene.failed_event(demo, server_id)
    events = [e for e in action['events'] if e['event'] == 'cloudlet_handoff']
    assert events and events[0]['result'] == 'Error', action
    record = handoff_scene.record(handoff_id)
    assert record['result'] == 'error'
    return record


def _failed_towards(demo, box2_demo, wan, survivor, auth_url):
    """A handoff to `auth_url` fails and the server runs on here: its record, and the credential sent."""
    server_id, state = survivor
    dest = handoff_scene.destination(box2_demo, wan, auth_url=auth_url)
    try:
        handoff_id, outcome = _attempt(demo, box2_demo, wan, server_id, dest)
    finally:
        dest.cleanup()
    assert outcome == 'failed'
    return _kept_running(demo, server_id, state, handoff_id), dest.secret


def test_unreachable_destination(demo, box2_demo, wan, survivor):
    # box2's address (the outbound policy allows it), a port where nothing listens.
    record, _ = _failed_towards(demo, box2_demo, wan, survivor, 'http://%s:9/v3' % wan.address)
    assert 'reach' in record['error'] or 'connect' in record['error'], record['error']


def test_destination_the_outbound_policy_refuses(demo, box2_demo, wan, survivor):
    """The box's own Keystone on 127.0.0.1 is no destination: refused before any connection."""
    record, secret = _failed_towards(demo, box2_demo, wan, survivor, 'http://127.0.0.1:5000/v3')
    assert 'refused by policy: host 127.0.0.1' in record['error'], record['error']
    _secret_nowhere(secret)


def test_destination_refuses_a_bad_credential(demo, box2_demo, wan, survivor):
    server_id, state = survivor
    dest = handoff_scene.destination(box2_demo, wan)
    dest.request['credential']['application_credential']['secret'] = 'wrong-' + dest.secret
    try:
        handoff_id, outcome = _attempt(demo, box2_demo, wan, server_id, dest)
    finally:
        dest.cleanup()
    assert outcome == 'failed'
    _kept_running(demo, server_id, state, handoff_id)
    _secret_nowhere(dest.secret)


def test_destination_refuses_over_quota(demo, box2_demo, box2_admin, wan, survivor):
    """box2's project may run no more servers: its nova refuses the destination server, after the ports for
    the NICs, their floating IP and the residue key were made at once; the roll back deletes them all.
    """
    server_id, state = survivor
    project_id = box2_demo.current_project_id
    instances = box2_admin.get_compute_quotas(project_id).instances
    box2_admin.set_compute_quotas(project_id, instances=0)
    dest = handoff_scene.destination(box2_demo, wan)
    try:
        handoff_id, outcome = _attempt(demo, box2_demo, wan, server_id, dest)
    finally:
        box2_admin.set_compute_quotas(project_id, instances=instances)
        dest.cleanup()
    assert outcome == 'failed'
    record = _kept_running(demo, server_id, state, handoff_id)
    assert 'quota' in record['error'].lower(), record['error']
    assert record['nics'] == 'carried' and record['destination_port_ids']
    assert not list(box2_demo.network.ports(name='cloudlet-handoff-%s' % handoff_id))
    if record['destination_floating_ip_id']:
        assert box2_demo.network.find_ip(record['destination_floating_ip_id']) is None
    _secret_nowhere(dest.secret)


def test_destination_without_the_base_refuses(demo, box2, wan, survivor):
    """box2's alt project sees no image of the base (demo's is private there): refused, no server made."""
    box2_alt = cloud.connect('%s-alt' % box2.name)
    server_id, state = survivor
    dest = handoff_scene.destination(box2_alt, wan)
    try:
        handoff_id, outcome = _attempt(demo, box2_alt, wan, server_id, dest)
    finally:
        dest.cleanup()
    assert outcome == 'failed'
    record = _kept_running(demo, server_id, state, handoff_id)
    assert 'has no active base disk image of base' in record['error'], record['error']
    assert record['destination_server_id'] is None
    assert not list(box2_alt.network.ports(name='cloudlet-handoff-%s' % handoff_id))
    _secret_nowhere(dest.secret)


# 50 % in every run; 10 % and 90 % (the first and the last bytes) in the faults tier.
@pytest.mark.parametrize('percent', [pytest.param(10, marks=pytest.mark.faults), 50,
                                     pytest.param(90, marks=pytest.mark.faults)])
def test_link_cut_during_the_transfer(percent, demo, box2_demo, wan, survivor, moved):
    """The link dies after `percent` % of what the working handoff sent up: the source
    stalls, gives up, resumes its VM.
    """
    server_id, state = survivor
    counters = moved[3]
    dest = handoff_scene.destination(box2_demo, wan)
    wan.cut_after(int(counters['up'] * percent / 100))
    try:
        handoff_id, outcome = _attempt(demo, box2_demo, wan, server_id, dest)
    finally:
        wan.restore()
        dest.cleanup()
    assert outcome == 'failed'
    record = _kept_running(demo, server_id, state, handoff_id)
    assert record['error'], record
    try:
        # What the roll back could not delete with the link down, the source deletes once it is back.
        _left_nothing(box2_demo, handoff_id)
    finally:
        _dest_leftovers(box2_demo, handoff_id)
    _secret_nowhere(dest.secret)


def _left_nothing(box2_demo, handoff_id, timeout=120):
    """Until the source's record names nothing left at box2 and box2 has no server of the handoff."""
    deadline = time.monotonic() + timeout
    while True:
        left = handoff_scene.record(handoff_id)['destination_leftovers']
        server = handoff_scene.find_dest_server(box2_demo, handoff_id)
        if not left and (server is None or server.status == 'DELETED'):
            return
        assert time.monotonic() < deadline, 'still left at box2 after %d s: %s (server %s)' % (
            timeout, left, server and server.status)
        time.sleep(2)


def _phase_started(handoff_id, name, timeout=600):
    """Wait until the source's record has started phase `name`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = handoff_scene.record_path(handoff_id)
        if path is not None:
            try:
                if any(phase['name'] == name for phase in json.loads(path.read_text())['phases']):
                    return
            except ValueError:
                pass        # being written
        time.sleep(0.1)
    raise AssertionError('handoff %s never reached phase %s' % (handoff_id, name))


@pytest.mark.faults
def test_link_cut_during_the_switch(demo, box2_demo, admin, wan, shared_base):
    """The link dies once box2 has the whole residue, while the source waits for its server to be
    ACTIVE: box2 may run the VM and the source cannot know, so it must not resume its own copy.
    Never two copies: the source stays PAUSED while the link is down. Once it is back, the
    source settles it by itself: box2's server is deleted (the roll back's own delete may land
    there late), then the VM resumes at the source, with its state, and nothing of the handoff
    is left on box2.
    """
    server_id, state = _source(demo, shared_base, 'e2e-ho-switch')
    source_address = guest_app.floating_ip(demo, server_id)
    dest = handoff_scene.destination(box2_demo, wan)
    handoff_id = None
    try:
        handoff_id = handoff_scene.start_handoff(demo, server_id, dest, 'e2e-ho-switch-moved')
        _phase_started(handoff_id, 'activate')
        wan.cut()
        record = handoff_scene.record(handoff_id, timeout=600)
        assert record['result'] == 'error' and record['in_doubt'] is True, record
        assert record['error'].startswith('the VM stays paused here: destination server %s may run it'
                                          % record['destination_server_id'])
        source = admin.compute.get_server(server_id)
        assert (source.status, source.power_state, source.task_state) == ('PAUSED', 3, None)
        assert not guest_app.reachable(source_address)
    finally:
        wan.restore()
        dest.cleanup()
    try:
        assert _settled(handoff_id) == 'source'
        moved = handoff_scene.find_dest_server(box2_demo, handoff_id)
        assert moved is None or moved.status == 'DELETED', moved
        source = admin.compute.get_server(server_id)
        assert (source.status, source.power_state, source.task_state) == ('ACTIVE', 1, None)
        arrived = handoff_scene.app_state(demo, server_id)
        assert (arrived['bootid'], arrived['ram'], arrived['disk']) == (state['bootid'], RAM, DISK)
        assert handoff_scene.record(handoff_id)['destination_leftovers'] == []
    finally:
        cloud.delete_server(demo, server_id)
        if handoff_id:
            _dest_leftovers(box2_demo, handoff_id)


def _settled(handoff_id, timeout=180):
    """Where the source settled a handoff left in doubt, once the link is back."""
    deadline = time.monotonic() + timeout
    while True:
        settled = handoff_scene.record(handoff_id)['settled']
        if settled:
            return settled
        assert time.monotonic() < deadline, 'handoff %s not settled after %d s' % (handoff_id, timeout)
        time.sleep(1)


def _phase_ended(handoff_id, name, timeout=600):
    """Wait until phase `name` of the source's record has ended (either way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            phases = json.loads(handoff_scene.record_path(handoff_id).read_text())['phases']
        except ValueError:
            phases = []         # being written
        ended = [p['result'] for p in phases if p['name'] == name and p['result'] != 'running']
        if ended:
            return ended[-1]
        time.sleep(0.5)
    raise AssertionError('handoff %s: phase %s not over after %d s' % (handoff_id, name, timeout))


def _logged(log, text, since, timeout=300):
    """Wait until `text` appears in `log` after byte `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log, 'rb') as f:
            f.seek(since)
            if text.encode() in f.read():
                return
        time.sleep(0.1)
    raise AssertionError('%r never appeared in %s' % (text, log))


@pytest.mark.faults
def test_destination_compute_killed_while_it_restores(demo, box2_demo, box2, wan, survivor):
    """box2's nova-compute dies while the residue streams into the restore (QEMU loading the
    launch memory from its pipe), and an operator starts it again once the source has given
    up. Whether or not the whole residue had left, box2's server never runs the VM: the
    source runs on with its state (at once, or once box2 confirms its server deleted), and
    nothing of it is left there: no domain, no QEMU, no files.
    """
    server_id, state = survivor
    compute = services.all_services(box2)['nova-compute']
    log = LOGS / 'box2' / 'nova-compute.log'
    dest = handoff_scene.destination(box2_demo, wan)
    handoff_id = None
    try:
        since = log.stat().st_size
        handoff_id = handoff_scene.start_handoff(demo, server_id, dest, 'e2e-ho-killed')
        _logged(log, 'handoff %s: ready to receive the residue' % handoff_id, since)
        _logged(log, 'restoring instance from the memory of base', since)
        time.sleep(1.0)                      # the memory is streaming into the restore
        assert processes.kill('nova-compute', box2.run)
        # The source gives up on the residue (box2's nova-api answers no more); if it had all
        # left, the VM stays paused there until box2 confirms its server deleted, which needs
        # box2's nova-compute.
        _phase_ended(handoff_id, 'residue', timeout=300)
        processes.start(compute.name, list(compute.argv), box2.run, box2.logs, env=compute.env)
        outcome, _dest, _seconds = handoff_scene.wait_handoff(demo, box2_demo, server_id, handoff_id, 300)
    finally:
        processes.start(compute.name, list(compute.argv), box2.run, box2.logs, env=compute.env)   # if not yet
        dest.cleanup()
    assert outcome == 'failed'
    record = _kept_running(demo, server_id, state, handoff_id)
    assert record['error'], record
    dest_id = record['destination_server_id']
    # The source's delete (or the leftover clean-up below) completes once box2's compute is back.
    _dest_leftovers(box2_demo, handoff_id)
    deadline = time.monotonic() + 300
    while handoff_scene.find_dest_server(box2_demo, handoff_id) is not None:
        assert time.monotonic() < deadline, 'the destination server outlived its compute restart'
        time.sleep(2)
    qemus = subprocess.run(['pgrep', '-f', 'qemu-system.*%s' % dest_id], capture_output=True, text=True)
    assert qemus.stdout == '', 'a QEMU of the destination server is left: %s' % qemus.stdout
    assert not (box2.root / 'nova' / 'instances' / dest_id).exists()
    _secret_nowhere(dest.secret)


@pytest.mark.faults
def test_source_compute_restarted_mid_handoff(demo, admin, box, box2_demo, wan, shared_base):
    """box's nova-compute is restarted (SIGTERM, as an operator's restart stops it) while the
    residue streams. nova 34's graceful shutdown first lets running work end for a while, then
    `cleanup_host` cancels what still runs: the handoff either completes (the VM runs on box2)
    or rolls back before the service ends (it runs on here). Either way exactly one copy runs
    the app with its state, and box2 keeps nothing else of the handoff.
    """
    server_id, state = _source(demo, shared_base, 'e2e-ho-restarted')
    compute = services.all_services(box)[host_files(box, admin, server_id).compute_service]
    dest = handoff_scene.destination(box2_demo, wan)
    handoff_id = None
    try:
        handoff_id = handoff_scene.start_handoff(demo, server_id, dest, 'e2e-ho-restarted-moved')
        _phase_started(handoff_id, 'residue')
        assert processes.stop(compute.name, box.run, grace=120)
        processes.start(compute.name, list(compute.argv), box.run, box.logs, env=compute.env)
        outcome, moved, _seconds = handoff_scene.wait_handoff(demo, box2_demo, server_id, handoff_id, 300)
        if outcome == 'done':
            arrived = handoff_scene.app_state(box2_demo, moved.id)
            assert (arrived['bootid'], arrived['ram'], arrived['disk']) == (state['bootid'], RAM, DISK)
        else:
            record = _kept_running(demo, server_id, state, handoff_id)
            assert 'nova-compute is stopping' in record['error'], record
            _left_nothing(box2_demo, handoff_id)
    finally:
        processes.start(compute.name, list(compute.argv), box.run, box.logs, env=compute.env)   # if not yet
        dest.cleanup()
        cloud.delete_server(demo, server_id)
        if handoff_id:
            _dest_leftovers(box2_demo, handoff_id)
    _secret_nowhere(dest.secret)
