"""The cloudlet API's policy matrix on the box's real Keystone: every call, as each of four
callers, and the HTTP code it must get (test ids `<call>-<role>`, e.g. `negotiate-reader`).

The callers (ROLES): `admin` (box-admin), `owner` (box-demo: a member of the project of the
server and of the base import record), `other` (box-alt: a member of another project) and
`reader` (a user made here with only the `reader` role on demo's project).

What a denial must be: 403 where the caller can see the resource (or the call has none),
404 where it cannot (nova hides another project's server; the bases API hides another
project's record) — never 2xx, never 5xx. A 403 cell must be the policy's answer (nova's
"Policy doesn't allow ... to be performed"), not a quota or Glance refusal.

A new call: a row in CALLS and one in EXPECTED (test_every_rule_and_operation_has_a_row fails
on a policy rule or documented operation without a row, and on a row without codes).
"""

import dataclasses
import http.server
import secrets
import threading
import time

import openstack
import pytest

from cloudlet_box import cloud
from cloudlet_box import http_serve
from cloudlet_engine import format as overlay_format
from cloudlet_glance import properties as props

from api_extensions import policies
from api_extensions import schemas

ROLES = ('admin', 'owner', 'other', 'reader')
READER = 'e2e-reader'
NOWHERE_FLAVOR = 'e2e-policy-nowhere'      # a root disk no compute host has: scheduling fails
RECORD_NAME = 'e2e-policy-import'
SERVER_ACTION = '/servers/{server_id}/action'
BASE = '/os-cloudlet/bases/{base_import_id}'
RESIDUE = '/servers/{server_id}/cloudlet-residue'
RESIDUE_HEADERS = {'X-Cloudlet-Handoff-Id': 'e2e-policy-handoff'}


@dataclasses.dataclass(frozen=True)
class Call:
    """One request; `{server_id}`, `{base_import_id}`, `{image_id}` in path and body strings
    are the owner's server, base import record and base image.
    """
    method: str
    path: str
    body: object = None
    rules: tuple = ()          # the policy rules (api_extensions.policies) it checks
    past_policy: str = None    # in the answer of every allowed 4xx cell: the refusal came after policy
    lists_record: tuple = ()   # roles whose 200 answer lists the owner's base import record
    headers: dict = None

    def operation(self):
        """As policies.py documents it: 'POST /servers/{server_id}/action (cloudlet-handoff)'."""
        if self.path == SERVER_ACTION:
            return '%s %s (%s)' % (self.method, self.path, next(iter(self.body)))
        return '%s %s' % (self.method, self.path)


def action(name, entity, rule, past_policy):
    return Call('POST', SERVER_ACTION, {name: entity}, (rule,), past_policy)


# The owner's server is an ERROR server booted from the e2e base (scheduling failed: its flavor
# asks for a root disk no host has). nova validates a body's schema BEFORE the policy check
# (validation.schema decorates the method), and every cloudlet call checks its policy before
# any work (only the server lookup, nova's 404, the captures' reserved cloudlet_* metadata
# check and the lease wrapper's check of a lease length come first: 400s no body here
# triggers), so each body below is valid, and an allowed cell fails fast AFTER the policy
# check, with a code distinguishable from 403 and nothing started:
#   captures (create-base, its alias, create-overlay): 409, nova's snapshot refuses vm_state error
#     (the server is a cloudlet server: create-overlay gets past its own "not a cloudlet server");
#   handoff: 409 from the controller's server checks (not ACTIVE), before any lock or RPC;
#   heartbeat without "seconds" on a server without a lease: 409, nothing written;
#   base import: an ftp:// URL, refused (400) after the policy check, before any record is made;
#   base delete of a record still downloading (the test's HTTP server holds it): 409;
#   POST /servers with a valid lease: nova's create policy, then an unknown flavorRef (400);
#   negotiate: cheap and read-only (an unknown base: 200, "acceptable": false).
CALLS = {
    'discover': Call('GET', '/os-cloudlet', rules=(policies.DISCOVER,)),
    'negotiate': Call('POST', '/os-cloudlet/negotiate',
                      {'overlay': {'base_id': '0' * 64, 'format_version': overlay_format.VERSION,
                                   'codec': 'zstd'}},
                      (policies.NEGOTIATE,)),
    'base-import': Call('POST', '/os-cloudlet/bases',
                        {'base': {'url': 'ftp://e2e.invalid/base.zip', 'name': 'e2e-policy-refused'}},
                        (policies.BASE_IMPORT,), past_policy='URL refused'),
    'base-import-public': Call('POST', '/os-cloudlet/bases',
                               {'base': {'url': 'ftp://e2e.invalid/base.zip', 'visibility': 'public'}},
                               (policies.BASE_IMPORT, policies.BASE_IMPORT_PUBLIC),
                               past_policy='URL refused'),
    'base-list': Call('GET', '/os-cloudlet/bases',
                      rules=(policies.BASE_LIST, policies.BASE_LIST_ALL_PROJECTS),
                      lists_record=('admin', 'owner', 'reader')),
    'base-show': Call('GET', BASE, rules=(policies.BASE_SHOW, policies.BASE_LIST_ALL_PROJECTS)),
    'base-delete': Call('DELETE', BASE, rules=(policies.BASE_DELETE, policies.BASE_LIST_ALL_PROJECTS),
                        past_policy='wait until it is active or in error'),
    'create-base': action('cloudlet-create-base', {'name': 'e2e-policy-base'},
                          policies.CREATE_BASE, 'vm_state error'),
    'create-base-alias': action('cloudlet-base', {'name': 'e2e-policy-base'},
                                policies.CREATE_BASE, 'vm_state error'),
    'create-overlay': action('cloudlet-create-overlay', {'name': 'e2e-policy-overlay'},
                             policies.CREATE_OVERLAY, 'vm_state error'),
    'handoff': action('cloudlet-handoff', {'destination': {'cloud': 'e2e-nowhere'},
                                           'credential': {'token': 'e2e-not-a-token'},
                                           'name': 'e2e-policy-handoff'},
                      policies.HANDOFF, 'vm_state error'),
    'heartbeat': action('cloudlet-heartbeat', {}, policies.LEASE, 'has no lease'),
    # A handoff's receiving end: the owner's server is no handoff destination.
    'residue-status': Call('GET', RESIDUE, rules=(policies.HANDOFF_RECEIVE,),
                           past_policy='is not the destination of handoff', headers=RESIDUE_HEADERS),
    'residue-put': Call('PUT', RESIDUE, rules=(policies.HANDOFF_RECEIVE,),
                        past_policy='is not the destination of handoff', headers=RESIDUE_HEADERS),
    # nova's rule (os_compute_api:servers:create); the lease wrapper runs before it.
    'create-server-lease': Call('POST', '/servers',
                                {'server': {'name': 'e2e-policy-leased', 'imageRef': '{image_id}',
                                            'flavorRef': 'e2e-no-such-flavor', 'networks': 'none',
                                            'metadata': {props.META_LEASE_SECONDS: '60'}}},
                                past_policy='e2e-no-such-flavor could not be found'),
}

EXPECTED = {
    #                         admin owner other reader
    'discover':               (200, 200, 200, 200),
    'negotiate':              (200, 200, 200, 403),
    'base-import':            (400, 400, 400, 403),
    'base-import-public':     (400, 403, 403, 403),
    'base-list':              (200, 200, 200, 200),
    'base-show':              (200, 200, 404, 200),
    'base-delete':            (409, 409, 404, 403),
    'create-base':            (409, 409, 404, 403),
    'create-base-alias':      (409, 409, 404, 403),
    'create-overlay':         (409, 409, 404, 403),
    'handoff':                (409, 409, 404, 403),
    'heartbeat':              (409, 409, 404, 403),
    'residue-status':         (409, 409, 404, 403),
    'residue-put':            (409, 409, 404, 403),
    'create-server-lease':    (400, 400, 400, 403),
}

CELLS = [pytest.param(name, role, id='%s-%s' % (name, role)) for name in CALLS for role in ROLES]


def fill(value, ids):
    """`value` with the placeholders of its strings replaced (recursively)."""
    if isinstance(value, str):
        return value.format_map(ids)
    if isinstance(value, dict):
        return {key: fill(item, ids) for key, item in value.items()}
    return value


def send(conn, call, ids):
    return conn.compute.request(fill(call.path, ids), call.method, json=fill(call.body, ids),
                                headers=call.headers, microversion=cloud.MICROVERSION)


# --- the reader -----------------------------------------------------------------------


def delete_reader(admin):
    user = admin.identity.find_user(READER)
    if user is not None:
        admin.identity.delete_user(user)


@pytest.fixture(scope='module')
def reader(admin, demo):
    """A user with only the `reader` role on demo's project; deleted afterwards."""
    delete_reader(admin)          # left by a run killed half-way
    project = admin.identity.get_project(demo.current_project_id)
    password = secrets.token_urlsafe(24)
    user = admin.identity.create_user(name=READER, password=password, domain_id=project.domain_id,
                                      default_project_id=project.id)
    try:
        admin.identity.assign_project_role_to_user(project, user,
                                                   admin.identity.find_role('reader', ignore_missing=False))
        auth = dict(demo.config.config['auth'], username=READER, password=password,
                    user_domain_id=project.domain_id, project_id=project.id)
        for key in ('user_domain_name', 'project_name', 'project_domain_name'):
            auth.pop(key, None)
        conn = openstack.connect(load_yaml_config=False, load_envvars=False, auth_type='password',
                                 auth=auth, region_name=demo.config.region_name,
                                 interface=demo.config.get_interface(), identity_api_version='3')
        roles = conn.session.auth.get_access(conn.session).role_names
        assert roles == ['reader'], roles
        yield conn
    finally:
        admin.identity.delete_user(user)


@pytest.fixture(scope='module')
def callers(admin, demo, alt, reader):
    return {'admin': admin, 'owner': demo, 'other': alt, 'reader': reader}


# --- the owner's server and base import record ------------------------------------------


@pytest.fixture(scope='module')
def owner_server(admin, demo, base):
    """demo's server booted from the e2e base, in ERROR without a host (no compute work)."""
    old = admin.compute.find_flavor(NOWHERE_FLAVOR)
    if old is not None:
        admin.compute.delete_flavor(old)
    tiny = admin.compute.find_flavor('m1.tiny', ignore_missing=False)
    flavor = admin.compute.create_flavor(name=NOWHERE_FLAVOR, ram=tiny.ram, vcpus=tiny.vcpus,
                                         disk=10 ** 6, is_public=True)
    server_id = None
    try:
        server_id = cloud.create_server(demo, 'e2e-policy-owned', base['image_id'],
                                        flavor_name=NOWHERE_FLAVOR, networks='none')
        server = cloud.wait_server(demo, server_id, timeout=120)
        assert server.status == 'ERROR' and 'No valid host' in server.fault['message'], server.fault
        yield server_id
    finally:
        if server_id:
            cloud.delete_server(demo, server_id)
        admin.compute.delete_flavor(flavor)


class _HeldDownload(http.server.BaseHTTPRequestHandler):
    """Answers a GET with a 1 MiB body it trickles (a byte a second) until released, then
    closes the connection short: the import stays `downloading`, then ends in error.
    """

    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Length', str(1 << 20))
        self.end_headers()
        while not self.server.released.wait(1):
            self.wfile.write(b'\0')
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def record_status(conn, record_id):
    reply = conn.compute.get('/os-cloudlet/bases/%s' % record_id, microversion=cloud.MICROVERSION)
    return reply.json()['base']['status'] if reply.status_code == 200 else None


def delete_old_records(admin):
    """Base import records of earlier runs (admin lists every project's)."""
    reply = admin.compute.get('/os-cloudlet/bases', microversion=cloud.MICROVERSION)
    for record in reply.json()['bases']:
        if (record['name'] or '').startswith('e2e-') and record['status'] not in schemas.RUNNING_STATUSES:
            admin.compute.delete('/os-cloudlet/bases/%s' % record['id'], microversion=cloud.MICROVERSION)


@pytest.fixture(scope='module')
def owner_record(admin, demo):
    """demo's base import record, held `downloading` from this test's HTTP server; deleted afterwards."""
    delete_old_records(admin)
    server = http.server.ThreadingHTTPServer((http_serve.ADDRESS, 0), _HeldDownload)
    server.released = threading.Event()
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    record_id = None
    try:
        url = 'http://%s:%d/e2e-held.zip' % (http_serve.ADDRESS, server.server_address[1])
        reply = demo.compute.post('/os-cloudlet/bases', json={'base': {'url': url, 'name': RECORD_NAME}},
                                  microversion=cloud.MICROVERSION)
        assert reply.status_code == 202, reply.text
        record_id = reply.json()['base']['id']
        yield record_id
    finally:
        server.released.set()
        if record_id:
            deadline = time.monotonic() + 90
            while record_status(demo, record_id) in schemas.RUNNING_STATUSES:
                assert time.monotonic() < deadline, 'base import %s still running' % record_id
                time.sleep(0.5)
            reply = demo.compute.delete('/os-cloudlet/bases/%s' % record_id, microversion=cloud.MICROVERSION)
            assert reply.status_code == 204, reply.text
        server.shutdown()
        server.server_close()


@pytest.fixture(scope='module')
def ids(base, owner_server, owner_record):
    return {'server_id': owner_server, 'base_import_id': owner_record, 'image_id': base['image_id']}


# --- the matrix -------------------------------------------------------------------------


@pytest.mark.parametrize('name,role', CELLS)
def test_policy_matrix(callers, ids, name, role):
    call, expected = CALLS[name], EXPECTED[name][ROLES.index(role)]
    reply = send(callers[role], call, ids)
    assert reply.status_code == expected, '%s as %s: expected %d, got %d %s' % (
        call.operation(), role, expected, reply.status_code, reply.text[:500])
    if expected == 403:
        assert 'to be performed' in reply.text, reply.text[:500]      # the policy's, not a quota's
    elif expected != 404 and expected >= 400 and call.past_policy:
        assert call.past_policy in reply.text, reply.text[:500]
    if call.lists_record and expected == 200:
        listed = ids['base_import_id'] in [record['id'] for record in reply.json()['bases']]
        assert listed == (role in call.lists_record), (role, listed)


def test_every_rule_and_operation_has_a_row():
    assert set(CALLS) == set(EXPECTED) and all(len(codes) == len(ROLES) for codes in EXPECTED.values())
    covered = {rule for call in CALLS.values() for rule in call.rules}
    assert {rule.name for rule in policies.list_rules()} <= covered
    rows = {call.operation() for call in CALLS.values()}
    for rule in policies.list_rules():
        for op in rule.operations:
            documented = '%s %s' % (op['method'], op['path'])
            assert documented in rows, '%s (%s) has no row' % (documented, rule.name)


def test_the_matrix_left_nothing(admin, demo, alt):
    """No allowed cell started anything: no server, no image of the bodies' names."""
    for conn in (admin, demo, alt):
        assert not [s.name for s in conn.compute.servers() if s.name.startswith('e2e-policy-lease')]
    for hidden in (False, True):
        images = [i.name for i in admin.image.images(is_hidden=hidden)
                  if (i.name or '').startswith('e2e-policy-')]
        assert not images, images
