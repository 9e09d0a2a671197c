"""The scene of a handoff between the two test clouds: a base on both, a server with state on `box`.

Used by the handoff e2e tests and bench/handoff_bench.py (both need box and
box2 up, doc/handoff.md "Test clouds"):

- `shared_base`: the same base VM in both clouds' Glance (`box_base`: captured
  on box from a stock boot of the test guest; `share_base`: exported as a
  package, imported into box2), found again by name on later runs;
- `app_server`: a server resumed from that base on box, with the app installed
  and RAM and disk state set, its access NIC unplugged (a handoff moves the
  VM's devices: it must not carry the test instrumentation's NIC);
- `destination`: the request's destination and an application credential of
  box2's demo user, reached through the WAN path (box2's public endpoints);
- `wait_handoff`: the destination server ACTIVE and the source gone, or the
  handoff's failure; `record`: the source compute's handoff record.
"""

import dataclasses
import datetime
import json
import pathlib
import secrets
import subprocess
import time

from cloudlet_box import cloud
from cloudlet_box import guest_app
from cloudlet_box import layout
from cloudlet_glance import images as glance_images
from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_nova.handoff import records

BASE_NAME = 'handoff-base'
HANDOFF_ID_KEY = props.HANDOFF_ID


@dataclasses.dataclass(frozen=True)
class SharedBase:
    base_id: str
    source_disk_id: str        # the base disk image in box's Glance
    dest_disk_id: str          # and in box2's


def _images(conn, box):
    return glance_images.GlanceClientImages(conn.session, region_name=box.region)


def _find_base(images, name):
    """The active base disk image called `name`, or None."""
    for image in model.list_bases(images):
        if image.get('name') == name and image.get('status') == 'active':
            return image
    return None


def box_base(conn, name=BASE_NAME, log=print):
    """The base disk image `name` in box's Glance (made on first use: ~2 min): a stock boot
    of the test guest, captured through nova.
    """
    images = _images(conn, layout.named('box'))
    found = _find_base(images, name)
    if found is None:
        log('making base %s on box: boot the test guest, capture it' % name)
        guest = conn.image.find_image('cloudlet-guest', ignore_missing=False)
        booted_id = cloud.create_server(conn, name + '-boot', guest.id)
        try:
            cloud.wait_server(conn, booted_id)
            guest_app.app_answers(conn, booted_id, '/cgi-bin/state')
            cloud.capture(conn, booted_id, 'base', name)
        finally:
            cloud.delete_server(conn, booted_id)
        found = _find_base(images, name)
    return found


def shared_base(src_conn, dst_conn, work, name=BASE_NAME, log=print):
    """The base `name` in both clouds (made on first use: ~2 min); a SharedBase."""
    return share_base(src_conn, dst_conn, work, box_base(src_conn, name, log), log)


def base_image(conn, image_id):
    """Box's base disk image `image_id`, as share_base takes it."""
    return _images(conn, layout.named('box')).get(image_id)


def forget_shared(dst_conn, base):
    """Delete box2's copy of a SharedBase (share_base made it)."""
    model.delete_base(_images(dst_conn, layout.named('box2')), base.dest_disk_id)


def share_base(src_conn, dst_conn, work, found, log=print):
    """The base of box's base disk image `found` (a Glance image dict), also in box2's Glance
    under the same name (copied on first use); a SharedBase.
    """
    dst_box = layout.named('box2')
    src_images, dst_images = _images(src_conn, layout.named('box')), _images(dst_conn, dst_box)
    name = found['name']
    there = _find_base(dst_images, name)
    if there is not None and there.get(props.BASE_ID) != found.get(props.BASE_ID):
        model.delete_base(dst_images, there['id'])
        there = None
    if there is None:
        log('copying base %s to %s (export, import)' % (name, dst_box.name))
        package = pathlib.Path(work) / (name + '.zip')
        model.export_base_package(src_images, found['id'], str(package), workdir=str(work))
        try:
            model.import_base_package(dst_images, str(package), name=name, workdir=str(work))
        finally:
            package.unlink()
        there = _find_base(dst_images, name)
    return SharedBase(found[props.BASE_ID], found['id'], there['id'])


def app_server(conn, base, name, ram, disk, metadata=None):
    """A server resumed from the shared base on box, app installed, state set; (id, app state)."""
    server_id = cloud.create_server(conn, name, base.source_disk_id, metadata=metadata)
    server = cloud.wait_server(conn, server_id)
    if server.status != 'ACTIVE':
        raise cloud.CloudError('server %s: %s' % (name, server.fault))
    state = guest_app.app_answers(conn, server_id, '/cgi-bin/install', '/cgi-bin/fill?8',
                                  '/cgi-bin/set?ram=%s&disk=%s' % (ram, disk))
    return server_id, state


def app_state(conn, server_id):
    """The app's state of a server of `conn`'s cloud, at the server's floating IP.

    When the app does not answer, the error carries what tells a guest that never
    renewed its address from a network that dropped it (doc/multi-host.md): the
    guest's console (`dhcp: <nic> <address>` once it has its lease there), its ports'
    status and binding, and each port's tap as this machine sees it.
    """
    try:
        return guest_app.app_answers(conn, server_id, '/cgi-bin/state')
    except guest_app.Unreachable as exc:
        raise guest_app.Unreachable('%s\n%s' % (exc, arrival_evidence(conn, server_id))) from exc


def _quietly(what, call):
    try:
        return call()
    except Exception as exc:   # noqa: BLE001 - evidence for a failure: never a second one
        return '(%s: %s)' % (what, exc)


def _run(*argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return (result.stdout + result.stderr).strip()


def arrival_evidence(conn, server_id, console_lines=30):
    """Text: the server's console tail, its ports (status, host, MAC, addresses) and their taps."""
    lines = ['--- evidence for server %s' % server_id]
    console = _quietly('console', lambda: conn.compute.post(
        '/servers/%s/action' % server_id,
        json={'os-getConsoleOutput': {'length': console_lines}}).json().get('output', ''))
    lines += ['console (last %d lines):' % console_lines, console]
    ports = _quietly('ports', lambda: list(conn.network.ports(device_id=server_id)))
    for port in ports if isinstance(ports, list) else ():
        tap = 'tap' + port.id[:11]
        lines.append('port %s mac %s status %s host %s ips %s' % (
            port.id, port.mac_address, port.status, port.binding_host_id,
            [ip['ip_address'] for ip in port.fixed_ips or ()]))
        lines.append(_quietly('ip link', lambda: _run('ip', '-s', 'link', 'show', tap)))
        lines.append(_quietly('ovs', lambda: _run(
            'ovs-vsctl', '--columns=name,ofport,link_state,admin_state,mtu,statistics,error',
            'list', 'Interface', tap)))
        lines.append('tag %s' % _quietly('ovs tag', lambda: _run('ovs-vsctl', 'get', 'Port', tap, 'tag')))
    if not isinstance(ports, list):
        lines.append(ports)
    return '\n'.join(lines)


@dataclasses.dataclass
class Destination:
    request: dict              # "destination" and "credential" of the cloudlet-handoff body
    secret: str                # to look for where it must never be
    cleanup: object            # deletes the application credential


def destination(dst_conn, wan, auth_url=None, lifetime_s=3600):
    """box2 through the WAN, with a fresh application credential of its demo user."""
    dst_box = layout.named('box2')
    secret = secrets.token_urlsafe(24)
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime_s))
    user_id = dst_conn.current_user_id
    credential = dst_conn.identity.create_application_credential(
        user_id, name='handoff-%s' % secrets.token_hex(4), secret=secret,
        expires_at=expires.strftime('%Y-%m-%dT%H:%M:%S'))

    def cleanup():
        try:
            dst_conn.identity.delete_application_credential(user_id, credential.id)
        except Exception:   # noqa: BLE001 - expired or gone: fine
            pass
    request = {'destination': {'auth_url': auth_url or '%s/v3' % wan.url('keystone'),
                               'region_name': dst_box.region},
               'credential': {'application_credential': {'id': credential.id, 'secret': secret}}}
    return Destination(request, secret, cleanup)


def start_handoff(conn, server_id, dest, name, codec='auto'):
    """POST the cloudlet-handoff action; the handoff id."""
    body = dict(dest.request, name=name, options={'codec': codec})
    return cloud.server_action(conn, server_id, 'cloudlet-handoff', body)['handoff_id']


def find_dest_server(dst_conn, handoff_id):
    for server in dst_conn.compute.servers(details=True):
        if (server.metadata or {}).get(HANDOFF_ID_KEY) == handoff_id:
            return server
    return None


def wait_handoff(conn, dst_conn, server_id, handoff_id, timeout=600, poll=0.2):
    """(outcome, dest server or None, seconds): 'done' when the destination server is
    ACTIVE and the source gone, 'failed' when the source compute's record says so.
    """
    started = time.monotonic()
    deadline = started + timeout
    dest = None
    # The source's record first (a file here): polling box2's API meanwhile would take
    # its nova-api and Keystone a good part of the two cores the handoff runs on.
    while _result(handoff_id) in (None, 'running') and time.monotonic() < deadline:
        time.sleep(0.05)
    while time.monotonic() < deadline:
        if dest is None or dest.status != 'ACTIVE':
            dest = find_dest_server(dst_conn, handoff_id) or dest
        if dest is not None and dest.status == 'ACTIVE' and conn.compute.find_server(server_id) is None:
            return 'done', dest, time.monotonic() - started
        if _result(handoff_id) == 'error':
            return 'failed', dest, time.monotonic() - started
        time.sleep(poll)
    raise cloud.CloudError('handoff %s of server %s not over after %d s' % (handoff_id, server_id, timeout))


def record_path(handoff_id, box_name='box'):
    """The record of a handoff, on whichever compute host of the box was its source."""
    for state_dir in layout.named(box_name).state_dirs:
        path = pathlib.Path(records.path(state_dir, handoff_id))
        if path.exists():
            return path
    return None


def _result(handoff_id):
    path = record_path(handoff_id)
    return json.loads(path.read_text()).get('result') if path else None


def record(handoff_id, box_name='box', timeout=30):
    """The source compute's record of a handoff (doc/handoff.md): a dict."""
    deadline = time.monotonic() + timeout
    while True:
        path = record_path(handoff_id, box_name)
        if path is not None:
            data = json.loads(path.read_text())
            if data.get('result') not in (None, 'running'):
                return data
        if time.monotonic() > deadline:
            raise cloud.CloudError('no finished record of handoff %s' % handoff_id)
        time.sleep(0.3)


def failed_event(conn, server_id):
    """The last cloudlet-handoff instance action of the server, with its events."""
    actions = conn.compute.get('/servers/%s/os-instance-actions' % server_id,
                               microversion=cloud.MICROVERSION).json()['instanceActions']
    handoffs = [a for a in actions if a['action'] == 'cloudlet-handoff']
    if not handoffs:
        return None
    request_id = handoffs[0]['request_id']
    return conn.compute.get('/servers/%s/os-instance-actions/%s' % (server_id, request_id),
                            microversion=cloud.MICROVERSION).json()['instanceAction']
