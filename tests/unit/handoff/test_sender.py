"""cloudlet_nova.handoff.sender (and rpc): the source side of a handoff, on fakes.

The destination cloud, the live residue, the VM, nova's instance object,
instance action events and delete are fakes (named Fake*); the orchestration
is the real one: its order of steps, its roll back, its records and what it
lets through of the credential.
"""

import os

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

import nova.tests.unit  # noqa: E402,F401  (nova's test setup before the rest of nova)
from tests.functional import pytest_shim  # noqa: E402  (pytest + nova.test.TestCase)

pytest_shim.install()

import base64  # noqa: E402
import inspect  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from unittest import mock  # noqa: E402

import fixtures  # noqa: E402

from nova.compute import power_state  # noqa: E402
from nova.compute import task_states  # noqa: E402
import nova.conf  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import exception  # noqa: E402
from nova import test  # noqa: E402

from cloudlet_glance import properties as props  # noqa: E402
from cloudlet_nova import conf as cloudlet_conf  # noqa: E402
from cloudlet_nova.handoff import credentials  # noqa: E402
from cloudlet_nova.handoff import destination_client  # noqa: E402
from cloudlet_nova.handoff import inbox as inbox_mod  # noqa: E402
from cloudlet_nova.handoff import records  # noqa: E402
from cloudlet_nova.handoff import rpc  # noqa: E402
from cloudlet_nova.handoff import sender  # noqa: E402
from cloudlet_nova.virt import faults  # noqa: E402
from tests.fixtures import fake_key_manager  # noqa: E402

CONF = nova.conf.CONF
HANDOFF_ID = '6b1c7a52-1d3e-4f5a-9b8c-7d6e5f4a3b2c'
SECRET = 'the-application-credential-secret-0123456789'
APP_ID = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'
TOKEN = 'gAAAAABfake-keystone-token-value-xyz'
BASE_ID = 'cd' * 32
NIC = "<interface type='ethernet'><mac address='fa:16:3e:00:00:01'/></interface>"
MAC, MAC2 = 'fa:16:3e:00:00:01', 'fa:16:3e:00:00:02'


def live_nic(mac, slot=3, rom="<rom enabled='no'/>"):
    """A NIC of the live domain XML (a hot-plugged one has no ROM)."""
    return ("<interface type='ethernet'><mac address='%s'/><target dev='tap%d'/><model type='virtio'/>%s"
            "<address type='pci' domain='0x0000' bus='0x00' slot='0x%02x' function='0x0'/></interface>"
            % (mac, slot, rom, slot))


def request(credential=None, **destination):
    return {
        'destination': destination or {'auth_url': 'https://edge-b.example:5000/v3'},
        'credential': credential or {'application_credential': {'id': APP_ID, 'secret': SECRET}},
        'name': 'app-b',
        'options': {'codec': 'xz'},
    }


# -- fakes ------------------------------------------------------------------------------

class FakeInstance:
    """What the sender uses of objects.Instance; save() checks expected_task_state like nova."""

    def __init__(self, uuid='0e2b6c1d-0000-4000-8000-0000000000aa'):
        self.uuid, self.image_ref, self.host = uuid, 'base-image-id', 'compute1'
        self.task_state = self.db_task_state = task_states.MIGRATING
        self.vm_state = 'active'
        self.metadata = {}
        self.system_metadata = {props.system_metadata_key(props.CLOUDLET_TYPE): props.BASE_DISK}
        self.flavor = types.SimpleNamespace(memory_mb=256, vcpus=1)
        self.network_info = []      # nova's cache: one dict per port
        self.saves = []

    def get_network_info(self):
        return self.network_info

    def save(self, expected_task_state=None):
        if expected_task_state is not None and self.db_task_state not in expected_task_state:
            error = (exception.UnexpectedDeletingTaskStateError
                     if self.db_task_state == task_states.DELETING
                     else exception.UnexpectedTaskStateError)
            raise error(instance_uuid=self.uuid,
                                                     expected=expected_task_state,
                                                     actual=self.db_task_state)
        self.db_task_state = self.task_state
        self.saves.append((self.task_state, expected_task_state))

    def refresh(self):
        """The tests change the fake itself, as another request would change the database."""


class FakeGuest:
    """The VM; its live XML has `nics` (by default NIC, as a restore plugs it: PCI address, no ROM)."""

    def __init__(self):
        self.state = power_state.RUNNING
        self._domain = types.SimpleNamespace(name='fake-domain')
        self.resumes = 0
        self.nics = [live_nic(MAC)]

    def get_xml_desc(self):
        return "<domain type='kvm'><devices><disk type='file'/>%s</devices></domain>" % ''.join(self.nics)

    def get_power_state(self, host):
        return self.state

    def resume(self):
        self.resumes += 1
        self.state = power_state.RUNNING


class FakeDriver:
    def __init__(self, guest):
        self._host = types.SimpleNamespace(get_guest=lambda instance: guest)


class FakeBase:
    base_id, name = BASE_ID, 'test-base'
    abi = {'memory_kib': 256 * 1024, 'vcpus': 1}


class FakeEventReporter:
    events = []

    def __init__(self, context, event_name, host, *uuids):
        self.context, self.event_name, self.host, self.uuids = context, event_name, host, uuids

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.events.append((self.event_name, self.host, self.uuids,
                            'Error' if exc_type else 'Success', str(exc) if exc else None))
        return False


class FakeUpload:
    # Raised once the whole residue is written: its answer lost (a link cut at the very end).
    answer_error = None

    def __init__(self, log):
        self.log, self.data, self.bytes_sent = log, bytearray(), 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.log.append(('upload-abort',) if exc_type else ('upload-finish', bytes(self.data)))
        if exc_type is None and self.answer_error is not None:
            raise self.answer_error
        return False

    def write(self, data):
        self.data += data
        self.bytes_sent += len(data)

    def bandwidth(self):
        return 8e6


# sender._prepare_destination's calls made in parallel, by the order they are submitted in (the
# NICs' calls are one sequence in one thread).
_PREPARED_AT_ONCE = {'find_base_image': 0, 'pick_flavor': 1, 'store_key': 2, 'project_network': 3,
                     'create_port': 3, 'delete_port': 3}


class FakeDestination:
    """Records every call in `log`; `fail_at` names the method that refuses.

    `on_wait_ready`, when set, runs inside wait_ready() (the source's VM still
    runs there). A method the real Destination lacks shows in the log as
    ('no-such-method', name): the roll back's calls would fail quietly.
    """

    fail_at = None
    server_status = 'ACTIVE'
    # When set, find_base_image and pick_flavor each wait there for the other.
    meet = None
    key_manager_url = None
    on_wait_ready = None
    network_id = 'dest-net'            # what project_network() finds
    project_network_error = None       # or what it raises
    port_errors = ()                   # (n, error): the n-th create_port (from 1) raises error
    ports_made = 0

    def __init__(self, log, destination, credential, **kwargs):
        self.log = log
        self.floating_ip_descriptions = []
        self.auth_url = destination.get('auth_url') or (kwargs['known_clouds'] or {}).get(
            destination.get('cloud'))
        log.append(('init', dict(destination), kwargs))
        self._maybe_fail('init')

    def __getattr__(self, name):
        self.log.append(('no-such-method', name))
        raise AttributeError(name)

    # How many times each delete call fails (answers False, as the real one does when the
    # destination cannot be reached) before it deletes.
    delete_failures = {}

    def _deleted(self, name):
        failures = self.delete_failures.get(name, 0)
        if failures:
            self.delete_failures = dict(self.delete_failures, **{name: failures - 1})
            return False
        return True

    def _maybe_fail(self, name):
        if self.fail_at == name:
            raise destination_client.HandoffDestinationError(
                'destination %s refused at %s' % (self.auth_url, name), refused=True)

    def connect(self):
        self.log.append(('connect',))
        self._maybe_fail('connect')

    def find_base_image(self, base_id):
        self.log.append(('find_base_image', base_id))
        if self.meet is not None:
            self.meet.wait()
        self._maybe_fail('find_base_image')
        return {'id': 'dest-base-image'}

    def pick_flavor(self, memory_mb, vcpus, flavor_id=None):
        self.log.append(('pick_flavor', memory_mb, vcpus, flavor_id))
        if self.meet is not None:
            self.meet.wait()
        self._maybe_fail('pick_flavor')
        return {'id': flavor_id or 'dest-flavor'}

    def create_server(self, name, image_id, flavor_id, metadata, networks='none'):
        self.log.append(('create_server', name, image_id, flavor_id, dict(metadata), networks))
        self._maybe_fail('create_server')
        return 'dest-server'

    def residue_upload(self, server_id, handoff_id):
        self.log.append(('residue_upload', server_id, handoff_id))
        self.upload_obj = FakeUpload(self.log)
        return self.upload_obj

    def wait_ready(self, server_id, handoff_id, timeout, poll=0.2):
        # What the upload took before: the disk pre-copy goes out while the destination gets ready.
        self.log.append(('wait_ready', server_id, handoff_id, timeout, bytes(self.upload_obj.data)))
        if self.on_wait_ready is not None:
            self.on_wait_ready()
        self._maybe_fail('wait_ready')
        return {'state': 'ready', 'bytes_received': 0, 'reason': None}

    def wait_active(self, server_id, timeout, poll=0.2):
        self.log.append(('wait_active', server_id, timeout))
        if self.server_status != 'ACTIVE':
            raise destination_client.HandoffDestinationError(
                'destination %s: server %s is ERROR: No valid host' % (self.auth_url, server_id),
                refused=True)
        return {'id': server_id, 'status': 'ACTIVE'}

    def delete_server(self, server_id):
        self.log.append(('delete_server', server_id))
        return self._deleted('delete_server')

    # What get_server answers, one per call: a status, the server's fields, None (404), or
    # an exception it raises.
    answers = ()

    def get_server(self, server_id, timeout=None):
        answer, self.answers = self.answers[0], self.answers[1:]
        if isinstance(answer, Exception):
            self.log.append(('get_server', server_id, 'raises'))
            raise answer
        server = {'status': answer} if isinstance(answer, str) else answer
        self.log.append(('get_server', server_id, server and server['status']))
        return None if server is None else dict(server, id=server_id)

    def wait_gone(self, server_id, timeout, poll=0.5):
        self.log.append(('wait_gone', server_id))
        if self.fail_at == 'wait_gone':
            raise destination_client.HandoffDestinationError(
                'destination %s: no answer for 60 s while waiting for server %s to be deleted'
                % (self.auth_url, server_id))
        return True

    def add_floating_ip(self, server_id=None, port_id=None, description=None):
        self.log.append(('add_floating_ip', server_id, port_id))
        self.floating_ip_descriptions.append(description)
        self._maybe_fail('add_floating_ip')
        return 'dest-fip', '172.24.5.20'

    def delete_floating_ip(self, floating_ip_id):
        self.log.append(('delete_floating_ip', floating_ip_id))
        return self._deleted('delete_floating_ip')

    def project_network(self):
        self.log.append(('project_network',))
        self._maybe_fail('project_network')
        if self.project_network_error is not None:
            raise self.project_network_error
        return self.network_id

    def create_port(self, network_id, mac_address, name):
        self.log.append(('create_port', network_id, mac_address, name))
        self.ports_made += 1
        error = dict(self.port_errors).get(self.ports_made)
        if error is not None:
            raise error
        return 'dest-port-%d' % self.ports_made

    def delete_port(self, port_id):
        self.log.append(('delete_port', port_id))
        return self._deleted('delete_port')

    def store_key(self, key, name):
        self.log.append(('store_key', len(key), name))
        if not self.key_manager_url:
            raise destination_client.HandoffDestinationError('destination has no key manager', refused=True)
        self.stored_key = key
        return 'dest-key'

    def delete_key(self, key_id):
        self.log.append(('delete_key', key_id))
        return self._deleted('delete_key')


class FakeLiveResidue:
    """Pauses the fake guest at the end of run(), as the engine's LiveResidue leaves the VM."""

    def __init__(self, log, guest, fail=None, block=None, domain=None, base=None, workdir=None,
                 **kwargs):
        self.log, self.guest, self.fail, self.block = log, guest, fail, block
        self.workdir = workdir
        self.paused_by_us = False
        self.cancelled = threading.Event()
        log.append(('residue', domain, base, workdir, kwargs))

    def run(self, out, before_memory=None):
        assert os.path.isdir(self.workdir)
        out.write(b'residue-part-1;')          # the disk pre-copy, the VM running
        if before_memory is not None:
            before_memory()                     # then QEMU's migration of the memory
        if self.block is not None:
            self.block.set()
            if not self.cancelled.wait(10):
                raise AssertionError('never cancelled')
            raise RuntimeError('the handoff was cancelled')
        if self.fail:
            self.paused_by_us = True
            self.guest.state = power_state.PAUSED
            raise self.fail
        self.paused_by_us = True
        self.guest.state = power_state.PAUSED
        out.write(b'residue-part-2')
        return types.SimpleNamespace(paused_at=time.monotonic(), codecs={'zstd': 2, 'xz': 1},
                                     bytes_out=29, precopy_seconds=1.5, ready_wait_seconds=0.25,
                                     final_seconds=0.1,
                                     disk_chunks_sent=3, disk_chunks_resent=1,
                                     memory_stream_bytes=4096, memory_seconds=1.0,
                                     qemu_wait_seconds=0.5, send_wait_seconds=0.25,
                                     memory_cpu_seconds=0.125, disk_pass_skipped=False,
                                     memory_transfer='stopped')

    def cancel(self):
        self.log.append(('residue-cancel',))
        self.cancelled.set()

    def resume_source(self):
        self.log.append(('residue-resume',))
        if self.paused_by_us:
            self.guest.state = power_state.RUNNING


class FakeComputeRPCAPI:
    """nova's compute RPC API: terminate_instance is what deletes the server."""

    terminates = []
    fail = None

    def terminate_instance(self, context, instance, bdms):
        if self.fail:
            raise self.fail
        self.terminates.append((context.request_id, instance.uuid, instance.task_state, bdms))


# -- the tests ---------------------------------------------------------------------

class SenderTestCase(test.NoDBTestCase):

    def setUp(self):
        cloudlet_conf.register_opts(CONF)
        super().setUp()
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        self.instances_path = self.useFixture(fixtures.TempDir()).path
        self.flags(state_dir=self.state_dir, group='cloudlet')
        self.flags(instances_path=self.instances_path)
        self.log = []
        self.guest = FakeGuest()
        self.instance = FakeInstance()
        self.context = nova_context.RequestContext('user', 'project', request_id='req-handoff')
        FakeEventReporter.events = []
        FakeComputeRPCAPI.terminates = []
        FakeComputeRPCAPI.fail = None
        self.actions_started = []
        FakeDestination.fail_at = None
        FakeDestination.server_status = 'ACTIVE'
        FakeDestination.meet = None
        self.residue_kwargs = {}
        self.on_wait_ready = None
        patches = [
            mock.patch.object(sender.compute_utils, 'EventReporter', FakeEventReporter),
            mock.patch.object(sender.hostcache, 'fetch_base', lambda images, image_id, store: FakeBase()),
            mock.patch.object(sender.glance_images, 'NovaImages', lambda context: 'images'),
            mock.patch.object(sender.destination_client, 'DestinationClient', self.new_destination),
            mock.patch.object(sender.engine_handoff, 'LiveResidue', self.new_residue),
            mock.patch.object(sender.restore, 'unplug_nics', self.unplug_nics),
            mock.patch.object(sender.restore, 'replug_nics', self.replug_nics),
            mock.patch.object(sender.compute_rpcapi, 'ComputeAPI', FakeComputeRPCAPI),
            mock.patch.object(sender.addresses, 'floating_ips', self.floating_ips),
            mock.patch.object(sender.addresses, 'release', self.release_floating_ips),
            mock.patch.object(sender.objects.InstanceAction, 'action_start',
                              self.action_start),
            mock.patch.object(sender.objects.BlockDeviceMappingList, 'get_by_instance_uuid',
                              lambda context, uuid: ['bdm-of-%s' % uuid]),
        ]
        for patch in patches:
            patch.start()
            self.addCleanup(patch.stop)

    def floating_ips(self, context, instance):
        return ['fip-%s' % vif['id'] for vif in instance.get_network_info() if vif.get('fip')]

    def release_floating_ips(self, context, floating_ip_ids):
        self.log.append(('release_floating_ips', list(floating_ip_ids),
                         len(FakeComputeRPCAPI.terminates)))

    def action_start(self, context, instance_uuid, action, want_result=True):
        self.actions_started.append((context.request_id, instance_uuid, action))

    def new_destination(self, destination, credential, **kwargs):
        self.destination = FakeDestination(self.log, destination, credential, **kwargs)
        self.destination.on_wait_ready = self.on_wait_ready
        self.credential_given = credential
        return self.destination

    def new_residue(self, domain, base, workdir, **kwargs):
        self.residue = FakeLiveResidue(self.log, self.guest, domain=domain, base=base,
                                       workdir=workdir, **dict(kwargs, **self.residue_kwargs))
        return self.residue

    def unplug_nics(self, driver, instance, guest):
        self.log.append(('unplug_nics',))
        return [NIC]

    def replug_nics(self, driver, instance, guest, nics):
        self.log.append(('replug_nics', list(nics)))

    def handoff(self, req=None):
        return sender.Handoff(FakeDriver(self.guest), self.context, self.instance, HANDOFF_ID,
                              req or request(), 'compute1')

    def names(self):
        """The calls' names, the destination checks made at once listed in their submit order."""
        names = [entry[0] for entry in self.log]
        at_once = [i for i, name in enumerate(names) if name in _PREPARED_AT_ONCE]
        if at_once:
            group = sorted((names[i] for i in at_once), key=lambda name: _PREPARED_AT_ONCE[name])
            for i, name in zip(at_once, group):
                names[i] = name
        return names

    def record(self):
        return records.load(self.state_dir, HANDOFF_ID)

    def record_text(self):
        with open(records.path(self.state_dir, HANDOFF_ID)) as f:
            return f.read()

    def assert_rolled_back_to_running(self):
        self.assertEqual(power_state.RUNNING, self.guest.state)
        self.assertEqual((None, [task_states.MIGRATING]), self.instance.saves[-1])
        self.assertIsNone(self.instance.db_task_state)
        self.assertEqual([], FakeComputeRPCAPI.terminates)
        [event] = FakeEventReporter.events
        self.assertEqual('Error', event[3])
        return event[4]


class SuccessTest(SenderTestCase):

    def test_a_leased_server_keeps_its_lease_on_the_destination(self):
        self.instance.metadata = {props.META_LEASE_SECONDS: '120',
                                  props.META_LEASE_EXPIRES_AT: '2026-12-02T12:00:00Z'}
        self.handoff().run()
        [create] = [entry for entry in self.log if entry[0] == 'create_server']
        # The length goes along; the destination's API starts the lease afresh.
        self.assertEqual({'cloudlet_handoff_id': HANDOFF_ID, 'cloudlet_lease_seconds': '120'}, create[4])

    def test_the_destination_checks_are_made_at_once(self):
        # Made one after the other, each would wait for the other until the barrier breaks.
        FakeDestination.meet = threading.Barrier(2, timeout=5)
        self.handoff().run()
        self.assertEqual(records.OK, self.record()['result'])

    def test_the_whole_handoff(self):
        self.handoff().run()

        self.assertEqual(['init', 'connect', 'find_base_image', 'pick_flavor', 'create_server',
                          'unplug_nics', 'residue_upload', 'residue', 'wait_ready', 'upload-finish',
                          'wait_active'], self.names())
        init = self.log[0]
        self.assertEqual({'auth_url': 'https://edge-b.example:5000/v3'}, init[1])
        policy = init[2].pop('policy')          # the default outbound policy: public addresses only
        self.assertEqual((frozenset(), ()), (policy.allowed_hosts, policy.allowed_networks))
        self.assertEqual({'known_clouds': {}, 'ca_file': None, 'insecure': False,
                          'connect_timeout': 30, 'stall_timeout': 60}, init[2])
        self.assertEqual({'application_credential': {'id': APP_ID, 'secret': SECRET}},
                         self.credential_given)
        self.assertEqual(('find_base_image', BASE_ID), self.log[2])
        self.assertEqual(('pick_flavor', 256, 1, None), self.log[3])
        # No residue image: the server carries the handoff id, the residue goes to the server.
        self.assertEqual(('create_server', 'app-b', 'dest-base-image', 'dest-flavor',
                          {'cloudlet_handoff_id': HANDOFF_ID}, 'none'), self.log[4])
        self.assertEqual(('residue_upload', 'dest-server', HANDOFF_ID), self.log[6])
        residue = self.log[7]
        self.assertIs(self.guest._domain, residue[1])
        self.assertIsInstance(residue[2], FakeBase)
        self.assertEqual(os.path.join(self.instances_path, self.instance.uuid,
                                      'cloudlet-handoff-' + HANDOFF_ID), residue[3])
        self.assertEqual('xz', residue[4]['codec'])
        self.assertEqual(100, residue[4]['max_downtime_ms'])
        self.assertEqual('auto', residue[4]['memory'])
        self.assertEqual(8e6, residue[4]['bandwidth']())
        # Before the memory: the destination is waited for ([cloudlet_handoff] ready_timeout),
        # the disk pre-copy already in the upload.
        self.assertEqual(('wait_ready', 'dest-server', HANDOFF_ID, 600, b'residue-part-1;'), self.log[8])
        self.assertEqual(('upload-finish', b'residue-part-1;residue-part-2'), self.log[9])
        self.assertEqual(('wait_active', 'dest-server', 300), self.log[10])

        # nova's delete, as its own instance action (a request id of its own).
        [(request_id, uuid, task_state, bdms)] = FakeComputeRPCAPI.terminates
        self.assertEqual((self.instance.uuid, task_states.DELETING, ['bdm-of-%s' % uuid]),
                         (uuid, task_state, bdms))
        self.assertNotEqual('req-handoff', request_id)
        self.assertTrue(request_id.startswith('req-'))
        self.assertEqual([(request_id, uuid, 'delete')], self.actions_started)
        self.assertEqual((task_states.DELETING, [task_states.MIGRATING]), self.instance.saves[-1])
        self.assertEqual(task_states.DELETING, self.instance.db_task_state)   # not reset after
        self.assertEqual([('cloudlet_handoff', 'compute1', (self.instance.uuid,), 'Success', None)],
                         FakeEventReporter.events)
        # The VM is left paused for nova's delete: no resume, no NIC replug.
        self.assertEqual(power_state.PAUSED, self.guest.state)
        self.assertNotIn('replug_nics', self.names())

        record = self.record()
        self.assertEqual(records.OK, record['result'])
        self.assertIsNone(record['error'])
        self.assertEqual(['destination', 'residue', 'activate', 'switch'],
                         [p['name'] for p in record['phases']])
        self.assertTrue(all(p['result'] == records.OK for p in record['phases']))
        self.assertEqual('dest-server', record['destination_server_id'])
        self.assertNotIn('residue_image_id', record)
        self.assertEqual({'auth_url': 'https://edge-b.example:5000/v3', 'flavor_id': 'dest-flavor'},
                         record['destination'])
        # No ports here, none there: the NICs cannot go along.
        self.assertEqual('replaced: the destination server gets networks=none', record['nics'])
        self.assertEqual(29, record['bytes_sent'])
        self.assertEqual({'zstd': 2, 'xz': 1}, record['codecs'])
        self.assertEqual({'bytes_out': 29, 'precopy_seconds': 1.5, 'ready_wait_seconds': 0.25,
                          'final_seconds': 0.1, 'disk_chunks_sent': 3, 'disk_chunks_resent': 1,
                          'memory_stream_bytes': 4096, 'bytes_after_pause': None, 'memory_seconds': 1.0,
                          'qemu_wait_seconds': 0.5, 'send_wait_seconds': 0.25,
                          'memory_cpu_seconds': 0.125, 'disk_pass_skipped': False,
                          'memory_transfer': 'stopped'}, record['residue'])
        self.assertGreaterEqual(record['downtime_seconds'], 0)
        self.assertNotIn(SECRET, self.record_text())
        self.assertNotIn(APP_ID, self.record_text())
        # The work directory is gone.
        self.assertFalse(os.path.exists(residue[3]))

    def test_the_residue_rests_encrypted_when_the_destination_has_a_key_manager(self):
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'key_manager_url', 'https://kb.test:9311'))
        self.handoff().run()
        self.assertEqual(['init', 'connect', 'find_base_image', 'pick_flavor', 'store_key', 'create_server',
                          'unplug_nics', 'residue_upload', 'residue', 'wait_ready', 'upload-finish',
                          'wait_active', 'delete_key'], self.names())
        self.assertEqual(('store_key', 32, 'cloudlet-handoff-%s' % HANDOFF_ID), self.log[4])
        create = self.log[5]
        self.assertEqual('dest-key', create[4][props.OVERLAY_KEY_ID])
        # The key stored there is the key the residue is written with.
        self.assertEqual(self.destination.stored_key, self.log[self.names().index('residue')][4]['key'])
        self.assertEqual(('delete_key', 'dest-key'), self.log[-1])
        self.assertTrue(self.record()['residue_encrypted'])
        self.assertNotIn(self.destination.stored_key.hex(), self.record_text())

    def test_without_a_key_manager_the_residue_is_not_encrypted(self):
        self.handoff().run()
        self.assertNotIn('store_key', self.names())
        self.assertIsNone(self.log[self.names().index('residue')][4]['key'])
        self.assertFalse(self.record()['residue_encrypted'])

    def test_required_encryption_refuses_a_destination_without_a_key_manager(self):
        self.flags(residue_encryption='required', group='cloudlet_handoff')
        self.handoff().run()
        self.assertNotIn('create_server', self.names())
        self.assertIn('no key manager', self.record()['error'])
        self.assert_rolled_back_to_running()

    def test_a_failed_handoff_deletes_the_residue_key(self):
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'key_manager_url', 'https://kb.test:9311'))
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'server_status', 'ERROR'))
        self.handoff().run()
        self.assertIn(('delete_key', 'dest-key'), self.log)
        self.assert_rolled_back_to_running()

    def test_a_server_without_ports_moves_without_ports(self):
        self.handoff().run()
        self.assertEqual('none', self.log[self.names().index('create_server')][-1])
        self.assertNotIn('add_floating_ip', self.names())

    def test_a_server_with_ports_gets_the_destination_project_s_network(self):
        self.flags(carry_nics=False, group='cloudlet_handoff')     # NicsTest: carried, they are ports
        self.instance.network_info = [{'id': 'port-1'}]
        self.handoff().run()
        self.assertEqual('auto', self.log[self.names().index('create_server')][-1])
        self.assertNotIn('add_floating_ip', self.names())     # no floating IP here: none there

    def test_a_floating_ip_here_means_one_there_and_this_one_released(self):
        self.flags(carry_nics=False, group='cloudlet_handoff')     # NicsTest: carried, it comes first
        self.instance.network_info = [{'id': 'port-1', 'fip': True}]
        self.handoff().run()
        names = self.names()
        self.assertEqual(['wait_active', 'add_floating_ip'],
                         names[names.index('wait_active'):names.index('add_floating_ip') + 1])
        self.assertEqual('172.24.5.20', self.record()['destination_floating_ip'])
        # Released before the terminate of the source server is cast.
        self.assertEqual(('release_floating_ips', ['fip-port-1'], 0),
                         self.log[names.index('release_floating_ips')])
        self.assertEqual(1, len(FakeComputeRPCAPI.terminates))

    def test_neutron_unreachable_here_fails_the_handoff_before_the_vm_is_touched(self):
        def unreachable(context, instance):
            raise RuntimeError('neutron is down')
        with mock.patch.object(sender.addresses, 'floating_ips', unreachable):
            self.handoff().run()
        self.assertNotIn('unplug_nics', self.names())
        self.assertEqual('error', self.record()['result'])
        self.assertIn('neutron is down', self.record()['error'])

    def test_a_floating_ip_the_destination_refuses_does_not_fail_the_handoff(self):
        self.flags(carry_nics=False, group='cloudlet_handoff')
        self.instance.network_info = [{'id': 'port-1', 'fip': True}]
        FakeDestination.fail_at = 'add_floating_ip'
        self.handoff().run()
        record = self.record()
        self.assertEqual('ok', record['result'])
        self.assertIsNone(record['destination_floating_ip'])
        self.assertIn('release_floating_ips', self.names())

    def test_configured_cloud_flavor_and_options(self):
        self.flags(destinations={'edge-b': 'https://edge-b.example:5000/v3'}, ca_file='/etc/ca.pem',
                   stall_timeout=7, connect_timeout=3, activate_timeout=42, max_downtime_ms=150, ready_timeout=77,
                   memory_transfer='stopped', destination_networks='auto', carry_nics=False, group='cloudlet_handoff')
        self.flags(outbound_allowed_hosts=['Edge-B.example.'], outbound_allowed_networks=['10.2.0.0/16'],
                   group='cloudlet')
        req = request(credential={'token': TOKEN}, cloud='edge-b', flavor='f-9',
                      region_name='R2')
        del req['options']
        self.handoff(req).run()
        init = self.log[0]
        policy = init[2].pop('policy')          # [cloudlet] outbound_allowed_*
        self.assertEqual(['edge-b.example'], sorted(policy.allowed_hosts))
        self.assertEqual(['10.2.0.0/16'], [str(n) for n in policy.allowed_networks])
        self.assertEqual({'known_clouds': {'edge-b': 'https://edge-b.example:5000/v3'},
                          'ca_file': '/etc/ca.pem', 'insecure': False, 'connect_timeout': 3,
                          'stall_timeout': 7}, init[2])
        self.assertEqual(('pick_flavor', 256, 1, 'f-9'), self.log[3])
        self.assertEqual('auto', self.log[4][5])
        self.assertEqual('auto', self.log[7][4]['codec'])
        self.assertEqual(150, self.log[7][4]['max_downtime_ms'])
        self.assertEqual('stopped', self.log[7][4]['memory'])
        self.assertEqual(('wait_ready', 'dest-server', HANDOFF_ID, 77, b'residue-part-1;'), self.log[8])
        self.assertEqual(('wait_active', 'dest-server', 42), self.log[10])
        record = self.record()
        self.assertEqual({'auth_url': 'https://edge-b.example:5000/v3', 'cloud': 'edge-b',
                          'region_name': 'R2', 'flavor_id': 'f-9'}, record['destination'])
        self.assertNotIn(TOKEN, self.record_text())


class NicsTest(SenderTestCase):
    """The VM's NICs go along (ports with their MACs at the destination), or are replaced, and why."""

    def setUp(self):
        super().setUp()
        self.instance.network_info = [{'id': 'port-1'}, {'id': 'port-2'}]      # destination networks: auto
        self.guest.nics = [live_nic(MAC), live_nic(MAC2, slot=4)]

    def refuse(self, message):
        return destination_client.HandoffDestinationError(message, refused=True)

    def unreachable(self, message):
        return destination_client.HandoffDestinationError(message, refused=False)

    def assert_replaced(self, why):
        names = self.names()
        self.assertEqual('auto', self.log[names.index('create_server')][-1])
        self.assertIn('unplug_nics', names)
        self.assertEqual([], [n for n in names if n.startswith('delete')])
        record = self.record()
        self.assertEqual(records.OK, record['result'])
        self.assertEqual('replaced: %s' % why, record['nics'])

    def test_carried(self):
        self.handoff().run()
        names = self.names()
        self.assertEqual(['init', 'connect', 'find_base_image', 'pick_flavor', 'project_network', 'create_port',
                          'create_port', 'create_server', 'residue_upload', 'residue', 'wait_ready',
                          'upload-finish', 'wait_active'], names)
        name = 'cloudlet-handoff-%s' % HANDOFF_ID
        self.assertEqual([('create_port', 'dest-net', MAC, name), ('create_port', 'dest-net', MAC2, name)],
                         [entry for entry in self.log if entry[0] == 'create_port'])
        # The server is made on those ports, and the NICs stay plugged here: they go with the memory.
        self.assertEqual([{'port': 'dest-port-1'}, {'port': 'dest-port-2'}],
                         self.log[names.index('create_server')][-1])
        self.assertNotIn('unplug_nics', names)
        self.assertNotIn('replug_nics', names)
        self.assertNotIn('add_floating_ip', names)              # no floating IP here: none there
        record = self.record()
        self.assertEqual(records.OK, record['result'])
        self.assertEqual('carried', record['nics'])
        self.assertEqual(1, len(FakeComputeRPCAPI.terminates))

    def test_carried_with_a_floating_ip_it_is_made_before_the_vm_moves(self):
        self.instance.network_info = [{'id': 'port-1', 'fip': True}]
        handoff = self.handoff()
        handoff.run()
        names = self.names()
        # Alongside the server's build, joined before the memory moves.
        self.assertLess(names.index('create_port'), names.index('add_floating_ip'))
        self.assertLess(names.index('add_floating_ip'), names.index('wait_ready'))
        # On the first port (there is no server yet), and once: not again after the switch.
        self.assertEqual([('add_floating_ip', None, 'dest-port-1')],
                         [entry for entry in self.log if entry[0] == 'add_floating_ip'])
        # Named for the handoff: the destination releases it with the server.
        self.assertEqual(['cloudlet-handoff-%s' % HANDOFF_ID], handoff.destination.floating_ip_descriptions)
        self.assertEqual('172.24.5.20', self.record()['destination_floating_ip'])
        self.assertEqual('carried', self.record()['nics'])
        self.assertIn('release_floating_ips', names)
        self.assertNotIn('delete_floating_ip', names)

    def test_carried_with_a_floating_ip_refused_before_it_is_tried_again_after_the_switch(self):
        self.instance.network_info = [{'id': 'port-1', 'fip': True}]
        FakeDestination.fail_at = 'add_floating_ip'
        self.handoff().run()
        names = self.names()
        self.assertLess(names.index('add_floating_ip'), names.index('wait_ready'))
        self.assertEqual(['wait_active', 'add_floating_ip', 'release_floating_ips'], names[-3:])
        self.assertEqual([('add_floating_ip', None, 'dest-port-1'), ('add_floating_ip', 'dest-server', 'dest-port-1')],
                         [entry for entry in self.log if entry[0] == 'add_floating_ip'])
        record = self.record()
        self.assertEqual(records.OK, record['result'])
        self.assertIsNone(record['destination_floating_ip'])

    def test_replaced_when_carry_nics_is_off(self):
        self.flags(carry_nics=False, group='cloudlet_handoff')
        self.handoff().run()
        self.assertNotIn('project_network', self.names())
        self.assert_replaced('[cloudlet_handoff] carry_nics is off')

    def test_replaced_when_the_destination_server_gets_other_networks(self):
        self.flags(destination_networks='none', group='cloudlet_handoff')
        self.handoff().run()
        self.assertNotIn('project_network', self.names())
        self.assertNotIn('create_port', self.names())
        self.assertEqual('none', self.log[self.names().index('create_server')][-1])
        self.assertIn('unplug_nics', self.names())
        self.assertEqual('replaced: the destination server gets networks=none', self.record()['nics'])

    def test_replaced_when_a_nic_has_an_option_rom(self):
        self.guest.nics[1] = live_nic(MAC2, slot=4, rom='')
        self.handoff().run()
        self.assertNotIn('project_network', self.names())
        self.assert_replaced('NIC %s has an option ROM (plugged before ROMs were left out)' % MAC2)

    def test_replaced_when_the_destination_project_has_no_single_network(self):
        patch = mock.patch.object(FakeDestination, 'network_id', None)    # MockPatchObject: None is a Mock
        patch.start()
        self.addCleanup(patch.stop)
        self.handoff().run()
        self.assertNotIn('create_port', self.names())
        self.assert_replaced('the destination project has no single network of its own')

    def test_replaced_when_the_project_s_networks_cannot_be_listed(self):
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'project_network_error',
                                                 self.refuse('listing the networks: HTTP 403 (%s)' % SECRET)))
        self.handoff().run()
        self.assert_replaced('listing the networks: HTTP 403 (***)')
        self.assertNotIn(SECRET, self.record_text())

    def test_replaced_when_a_port_is_refused_and_the_ports_made_are_deleted(self):
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'port_errors', (
            (2, self.refuse('the mac address %s is in use (%s)' % (MAC2, SECRET))),)))
        self.handoff().run()
        names = self.names()
        self.assertEqual(['create_port', 'create_port', 'delete_port', 'create_server'],
                         names[names.index('create_port'):names.index('create_server') + 1])
        self.assertEqual(('delete_port', 'dest-port-1'), self.log[names.index('delete_port')])
        self.assertEqual(1, names.count('delete_port'))
        self.assertEqual('auto', self.log[names.index('create_server')][-1])
        self.assertIn('unplug_nics', names)
        record = self.record()
        self.assertEqual(records.OK, record['result'])
        self.assertEqual('replaced: the destination refused a port with the VM\'s MAC: the mac address %s is '
                         'in use (***)' % MAC2, record['nics'])
        self.assertNotIn(SECRET, self.record_text())

    def test_a_destination_that_cannot_make_a_port_fails_the_handoff(self):
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'port_errors', (
            (2, self.unreachable('neutron-b timed out')),)))
        self.handoff().run()
        message = self.assert_rolled_back_to_running()
        self.assertIn('neutron-b timed out', message)
        names = self.names()
        # The VM was not touched; the port made is deleted.
        self.assertNotIn('create_server', names)
        self.assertNotIn('unplug_nics', names)
        self.assertNotIn('residue', names)
        self.assertEqual([('delete_port', 'dest-port-1')], [e for e in self.log if e[0].startswith('delete')])
        self.assertEqual([('destination', records.ERROR)],
                         [(p['name'], p['result']) for p in self.record()['phases']])

    def test_a_destination_whose_networks_cannot_be_listed_fails_the_handoff(self):
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'project_network_error',
                                                 self.unreachable('neutron-b timed out')))
        self.handoff().run()
        self.assertIn('neutron-b timed out', self.assert_rolled_back_to_running())
        self.assertNotIn('create_port', self.names())
        self.assertNotIn('create_server', self.names())

    def test_a_roll_back_deletes_the_floating_ip_and_the_ports(self):
        self.instance.network_info = [{'id': 'port-1', 'fip': True}]
        self.residue_kwargs = {'fail': OSError('link cut')}
        handoff = self.handoff()
        handoff.run()
        self.assert_rolled_back_to_running()
        names = self.names()
        # The server gone before its ports are deleted (its compute host unbinds them meanwhile).
        self.assertEqual(['residue-cancel', 'residue-resume', 'delete_server', 'wait_gone', 'delete_floating_ip',
                          'delete_port', 'delete_port'], names[names.index('upload-abort') + 1:])
        self.assertEqual([('delete_server', 'dest-server'), ('wait_gone', 'dest-server'),
                          ('delete_floating_ip', 'dest-fip'), ('delete_port', 'dest-port-1'),
                          ('delete_port', 'dest-port-2')],
                         self.log[names.index('delete_server'):])
        self.assertNotIn('replug_nics', names)                  # never unplugged
        self.assertEqual([], handoff.ports)
        self.assertNotIn('release_floating_ips', names)

    def test_a_server_not_gone_in_time_is_left_for_the_retries(self):
        self.residue_kwargs = {'fail': OSError('link cut')}
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'fail_at', 'wait_gone'))
        handoff = self.handoff()
        handoff.run()
        self.assert_rolled_back_to_running()
        self.assertEqual(['server dest-server'], [what for what, _delete, _id in handoff.leftovers])
        self.assertEqual(['delete_port', 'delete_port'], [e[0] for e in self.log if e[0] == 'delete_port'])

    def test_a_server_refused_at_the_destination_leaves_no_ports(self):
        FakeDestination.fail_at = 'create_server'
        self.handoff().run()
        self.assert_rolled_back_to_running()
        self.assertEqual([('delete_port', 'dest-port-1'), ('delete_port', 'dest-port-2')],
                         [e for e in self.log if e[0].startswith('delete')])
        self.assertNotIn('unplug_nics', self.names())

    def test_a_vm_without_nics(self):
        self.guest.nics = []
        self.handoff().run()
        self.assertNotIn('project_network', self.names())
        self.assertNotIn('create_port', self.names())
        self.assertEqual('auto', self.log[self.names().index('create_server')][-1])
        record = self.record()
        self.assertEqual(records.OK, record['result'])
        self.assertEqual('none', record['nics'])


class DestinationRefusesTest(SenderTestCase):

    def refused_at(self, step):
        FakeDestination.fail_at = step
        self.handoff().run()
        message = self.assert_rolled_back_to_running()
        self.assertIn('refused at %s' % step, message)
        self.assertNotIn('unplug_nics', self.names())          # the VM was not touched
        self.assertNotIn('residue_upload', self.names())
        self.assertNotIn('residue', self.names())
        self.assertNotIn('no-such-method', self.names())
        record = self.record()
        self.assertEqual(records.ERROR, record['result'])
        self.assertIn('refused at %s' % step, record['error'])
        self.assertEqual([('destination', records.ERROR)],
                         [(p['name'], p['result']) for p in record['phases']])
        return self.names()

    def test_at_connect(self):
        names = self.refused_at('connect')
        self.assertEqual([], [n for n in names if n.startswith('delete')])

    def test_at_find_base_image(self):
        names = self.refused_at('find_base_image')
        self.assertNotIn('create_server', names)
        self.assertEqual([], [n for n in names if n.startswith('delete')])

    def test_at_create_server_nothing_is_left_to_delete(self):
        names = self.refused_at('create_server')
        self.assertEqual('create_server', names[-1])
        self.assertEqual([], [n for n in names if n.startswith('delete')])

    def test_at_create_server_the_residue_key_is_deleted(self):
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'key_manager_url', 'https://kb.test:9311'))
        names = self.refused_at('create_server')
        self.assertEqual(['create_server', 'delete_key'], names[-2:])

    def test_unknown_cloud_at_construction(self):
        self.refused_at('init')


class ResidueFailsTest(SenderTestCase):

    def test_failure_mid_stream_rolls_back(self):
        self.residue_kwargs = {'fail': OSError('link cut while sending %s' % SECRET)}
        self.handoff().run()
        message = self.assert_rolled_back_to_running()
        self.assertIn('link cut', message)
        self.assertNotIn(SECRET, message)
        names = self.names()
        # cancel and resume the residue, NICs back, then the destination server (no image).
        tail = names[names.index('upload-abort') + 1:]
        self.assertEqual(['residue-cancel', 'residue-resume', 'replug_nics', 'delete_server'], tail)
        self.assertEqual(('delete_server', 'dest-server'), self.log[-1])
        self.assertEqual(('replug_nics', [NIC]), self.log[names.index('replug_nics')])
        record = self.record()
        self.assertEqual(records.ERROR, record['result'])
        self.assertEqual([('destination', records.OK), ('residue', records.ERROR)],
                         [(p['name'], p['result']) for p in record['phases']])
        self.assertNotIn(SECRET, self.record_text())
        self.assertFalse(os.path.exists(self.log[names.index('residue')][3]))

    def test_destination_server_error_resumes_the_source(self):
        FakeDestination.server_status = 'ERROR'
        self.handoff().run()
        message = self.assert_rolled_back_to_running()
        self.assertIn('server dest-server is ERROR', message)
        names = self.names()
        # The whole residue was sent: the VM resumes only once the destination server is gone.
        self.assertEqual(['delete_server', 'wait_gone', 'residue-cancel', 'residue-resume', 'replug_nics',
                          'delete_server'], names[names.index('wait_active') + 1:])
        self.assertEqual('activate', self.record()['phases'][-1]['name'])
        self.assertFalse(self.record()['in_doubt'])

    def test_a_destination_not_confirmed_gone_leaves_the_vm_paused(self):
        """A link cut during the switch: never two copies running."""
        FakeDestination.server_status = 'BUILD'
        FakeDestination.fail_at = 'wait_gone'
        self.addCleanup(setattr, FakeDestination, 'fail_at', None)
        self.handoff().run()
        self.assertEqual(power_state.PAUSED, self.guest.state)
        names = self.names()
        self.assertEqual(['delete_server', 'wait_gone'], names[names.index('wait_active') + 1:])
        record = self.record()
        self.assertEqual(records.ERROR, record['result'])
        self.assertTrue(record['in_doubt'])
        self.assertTrue(record['error'].startswith('the VM stays paused here: destination server dest-server '
                                                   'may run it;'), record['error'])
        # Shown as PAUSED (its owner unpauses it once the destination server is gone), no task.
        self.assertEqual(('paused', power_state.PAUSED, None),
                         (self.instance.vm_state, self.instance.power_state, self.instance.db_task_state))

    def test_an_answer_lost_after_the_whole_residue_went_out_asks_the_destination_first(self):
        """The destination may have all of it and run the VM although its answer never came."""
        self.useFixture(fixtures.MockPatchObject(FakeUpload, 'answer_error', OSError('connection reset')))
        self.handoff().run()
        message = self.assert_rolled_back_to_running()
        self.assertIn('connection reset', message)
        names = self.names()
        self.assertEqual(['upload-finish', 'delete_server', 'wait_gone', 'residue-cancel', 'residue-resume',
                          'replug_nics', 'delete_server'], names[names.index('residue') + 2:])
        self.assertNotIn('wait_active', names)
        self.assertFalse(self.record()['in_doubt'])

    def test_vm_left_paused_by_the_engine_is_resumed(self):
        self.residue_kwargs = {'fail': RuntimeError('boom')}
        with mock.patch.object(FakeLiveResidue, 'resume_source', lambda self: None):
            self.handoff().run()
        self.assert_rolled_back_to_running()
        self.assertEqual(1, self.guest.resumes)

    def test_nics_not_released(self):
        def unplug(driver, instance, guest):
            raise faults.CloudletCaptureFailed(reason='the guest did not release its network '
                                                      'interfaces within 20 s')
        with mock.patch.object(sender.restore, 'unplug_nics', unplug):
            self.handoff().run()
        message = self.assert_rolled_back_to_running()
        self.assertEqual('cloudlet handoff failed: the guest did not release its network '
                         'interfaces within 20 s', message)
        self.assertNotIn('residue', self.names())
        self.assertNotIn('residue_upload', self.names())
        self.assertEqual(['delete_server'], [n for n in self.names() if n.startswith('delete')])

    def test_a_destination_that_does_not_get_ready_rolls_back_a_running_vm(self):
        FakeDestination.fail_at = 'wait_ready'
        self.handoff().run()
        message = self.assert_rolled_back_to_running()
        self.assertIn('refused at wait_ready', message)
        names = self.names()
        # The memory was never sent: the VM never paused; the upload is aborted.
        self.assertEqual(['wait_ready', 'upload-abort', 'residue-cancel', 'residue-resume', 'replug_nics',
                          'delete_server'], names[names.index('wait_ready'):])
        self.assertEqual(0, self.guest.resumes)
        self.assertFalse(self.residue.paused_by_us)
        record = self.record()
        self.assertEqual([('destination', records.OK), ('residue', records.ERROR)],
                         [(p['name'], p['result']) for p in record['phases']])
        self.assertIn('refused at wait_ready', record['error'])


class SwitchTest(SenderTestCase):

    def assert_kept_as_they_are(self):
        # No roll back: the destination server stays, this VM stays paused, no task.
        self.assertNotIn('delete_server', self.names())
        self.assertNotIn('residue-resume', self.names())
        self.assertEqual(power_state.PAUSED, self.guest.state)
        self.assertIsNone(self.instance.db_task_state)
        self.assertEqual('switch', self.record()['phases'][-1]['name'])

    def test_terminate_cannot_be_sent(self):
        FakeComputeRPCAPI.fail = exception.NovaException('messaging is down')
        self.handoff().run()
        [event] = FakeEventReporter.events
        self.assertEqual('Error', event[3])
        self.assertIn('runs at the destination as dest-server', event[4])
        self.assertIn('messaging is down', event[4])
        self.assert_kept_as_they_are()
        self.assertEqual((None, [task_states.DELETING]), self.instance.saves[-1])

    def test_server_changed_before_the_delete(self):
        with mock.patch.object(self.instance, 'save', side_effect=[
                None,                                                       # the claim
                exception.InstanceNotFound(instance_id=self.instance.uuid),  # the delete
                None]):
            self.handoff().run()
        [event] = FakeEventReporter.events
        self.assertEqual('Success', event[3])      # it is gone: the handoff is done
        self.assertEqual([], FakeComputeRPCAPI.terminates)

    def test_a_user_delete_came_first(self):
        real_save = self.instance.save

        def save(expected_task_state=None):
            if self.instance.task_state == task_states.DELETING:
                self.instance.db_task_state = task_states.DELETING     # the user's delete
            return real_save(expected_task_state=expected_task_state)

        with mock.patch.object(self.instance, 'save', save):
            self.handoff().run()
        self.assertEqual('Success', FakeEventReporter.events[0][3])
        self.assertEqual([], FakeComputeRPCAPI.terminates)       # nova's delete is under way
        self.assertEqual(task_states.DELETING, self.instance.db_task_state)


class GuardsTest(SenderTestCase):

    def test_task_state_taken_by_a_delete(self):
        self.instance.db_task_state = task_states.DELETING
        self.handoff().run()
        self.assertEqual([], self.log)
        self.assertEqual([], FakeEventReporter.events)
        self.assertEqual(task_states.DELETING, self.instance.db_task_state)
        self.assertIn('changed before the handoff started', self.record()['error'])

    def test_vm_not_running(self):
        self.guest.state = power_state.SHUTDOWN
        self.handoff().run()
        [event] = FakeEventReporter.events
        self.assertIn("the server's VM is not running", event[4])
        self.assertEqual([], self.log)
        self.assertIsNone(self.instance.db_task_state)

    def test_not_a_cloudlet_instance(self):
        self.instance.system_metadata = {}
        self.handoff().run()
        [event] = FakeEventReporter.events
        self.assertIn('not booted from a cloudlet base VM image', event[4])
        self.assertEqual([], self.log)


class CancelTest(SenderTestCase):

    def test_cancel_all_stops_a_running_handoff(self):
        started = threading.Event()
        self.residue_kwargs = {'block': started}
        handoffs = sender.Handoffs(FakeDriver(self.guest), 'compute1')
        thread = threading.Thread(target=handoffs.run,
                                  args=(self.context, self.instance, HANDOFF_ID, request()))
        thread.start()
        self.assertTrue(started.wait(10))
        self.assertEqual([HANDOFF_ID], list(handoffs.running()))
        self.assertTrue(handoffs.cancel_all('nova-compute is stopping', timeout=10))
        thread.join(10)
        self.assertFalse(thread.is_alive())
        message = self.assert_rolled_back_to_running()
        self.assertEqual('cloudlet handoff cancelled: nova-compute is stopping', message)
        self.assertIn('residue-cancel', self.names())
        self.assertEqual({}, handoffs.running())

    def test_cancel_while_waiting_for_the_destination_stops_before_the_memory(self):
        handoff = self.handoff()
        self.on_wait_ready = lambda: handoff.cancel('nova-compute is stopping')
        handoff.run()
        message = self.assert_rolled_back_to_running()
        self.assertEqual('cloudlet handoff cancelled: nova-compute is stopping', message)
        names = self.names()
        self.assertEqual(['wait_ready', 'residue-cancel', 'upload-abort', 'residue-cancel', 'residue-resume',
                          'replug_nics', 'delete_server'], names[names.index('wait_ready'):])
        self.assertEqual(0, self.guest.resumes)         # never paused

    def test_a_handoff_arriving_while_stopping_is_refused(self):
        handoffs = sender.Handoffs(FakeDriver(self.guest), 'compute1')
        self.assertTrue(handoffs.cancel_all('nova-compute is stopping'))
        handoffs.run(self.context, self.instance, HANDOFF_ID, request())
        [event] = FakeEventReporter.events
        self.assertEqual('cloudlet handoff cancelled: nova-compute is stopping', event[4])
        self.assertEqual([], self.log)
        self.assertIsNone(self.instance.db_task_state)


class LoggingKeyManager(fake_key_manager.FakeKeyManager):
    """The fake key manager, its reads and deletes in the handoff's log (for their order)."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def get(self, context, managed_object_id, **kwargs):
        self.log.append(('key-get', managed_object_id))
        return super().get(context, managed_object_id, **kwargs)

    def delete(self, context, managed_object_id, **kwargs):
        self.log.append(('key-delete', managed_object_id))
        return super().delete(context, managed_object_id, **kwargs)


class NoWait:
    """A stop event that is never set and does not wait: the retries run back to back."""

    def wait(self, timeout=None):
        return False


class CredentialTest(SenderTestCase):
    """The credential as a reference to the key manager ([cloudlet_handoff] credential_store)."""

    CREDENTIAL = {'application_credential': {'id': APP_ID, 'secret': SECRET}}

    def setUp(self):
        super().setUp()
        self.keys = LoggingKeyManager(self.log)
        self.useFixture(fixtures.MockPatch('castellan.key_manager.API', return_value=self.keys))
        # What nova-api stored and cast (the API's own context, as the RPC hands it over).
        self.reference = credentials.store(self.context, self.CREDENTIAL, HANDOFF_ID)
        self.ref = self.reference['secret_ref']

    def referenced(self):
        return self.handoff(request(credential=self.reference))

    def assert_forgotten(self):
        self.assertEqual({}, self.keys.objects)
        self.assertEqual([(self.context, self.ref)], self.keys.deleted)

    def test_read_before_connecting_and_forgotten_after_success(self):
        handoff = self.referenced()
        self.assertIsNone(handoff.credential)
        self.assertNotIn(SECRET, handoff.secrets)          # not known before it is read
        handoff.run()

        names = self.names()
        self.assertEqual(['key-get', 'init'], names[:2])
        self.assertEqual(('key-get', self.ref), self.log[0])
        self.assertEqual([(self.context, self.ref)], self.keys.reads)    # once, with the request's context
        # Destination gets the credential itself, not its reference.
        self.assertEqual(self.CREDENTIAL, self.credential_given)
        self.assertEqual(['wait_active', 'key-delete'], names[-2:])
        self.assertEqual(('key-delete', self.ref), self.log[-1])
        self.assert_forgotten()
        self.assertIsNone(handoff.credential)              # not kept once the handoff ended
        self.assertEqual(records.OK, self.record()['result'])
        self.assertEqual(1, len(FakeComputeRPCAPI.terminates))
        self.assertEqual([('cloudlet_handoff', 'compute1', (self.instance.uuid,), 'Success', None)],
                         FakeEventReporter.events)
        self.assertNotIn(SECRET, self.record_text())
        self.assertNotIn(APP_ID, self.record_text())

    def test_a_token_behind_the_reference(self):
        self.keys.objects.clear()
        self.reference = credentials.store(self.context, {'token': TOKEN}, HANDOFF_ID)
        self.ref = self.reference['secret_ref']
        self.referenced().run()
        self.assertEqual({'token': TOKEN}, self.credential_given)
        self.assert_forgotten()

    def test_a_credential_that_cannot_be_read_fails_the_handoff_before_the_vm_is_touched(self):
        self.keys.objects.clear()           # gone from the key manager (or another project's)
        handoff = self.referenced()
        handoff.run()
        message = self.assert_rolled_back_to_running()
        self.assertIn('cloudlet handoff failed: the destination credential could not be read from '
                      'the key manager', message)
        # Nothing else happened: no destination, no residue, the VM untouched.
        self.assertEqual(['key-get', 'key-delete'], self.names())
        self.assertFalse(hasattr(self, 'credential_given'))
        self.assertEqual(0, self.guest.resumes)
        self.assertEqual([(task_states.MIGRATING, [task_states.MIGRATING]),
                          (None, [task_states.MIGRATING])], self.instance.saves)
        record = self.record()
        self.assertEqual(records.ERROR, record['result'])
        self.assertIn('could not be read from the key manager', record['error'])
        self.assertEqual([], record['phases'])

    def test_a_key_manager_that_fails_the_read_fails_the_handoff_and_the_secret_is_forgotten(self):
        self.useFixture(fixtures.MockPatchObject(
            fake_key_manager.FakeKeyManager, 'get',
            side_effect=sender.credentials.castellan_exc.KeyManagerError(
                reason='barbican answered 503 about %s' % SECRET)))
        self.referenced().run()
        message = self.assert_rolled_back_to_running()
        self.assertIn('could not be read from the key manager', message)
        self.assertNotIn(SECRET, message)
        self.assertNotIn('init', self.names())
        self.assertNotIn('unplug_nics', self.names())
        self.assert_forgotten()
        self.assertNotIn(SECRET, self.record_text())
        self.assertNotIn(SECRET, self.stdlog.logger.output)

    def test_forgotten_after_a_destination_refusal(self):
        FakeDestination.fail_at = 'connect'
        self.referenced().run()
        self.assert_rolled_back_to_running()
        self.assertEqual(self.CREDENTIAL, self.credential_given)
        self.assertEqual(['key-get', 'init', 'connect', 'key-delete'], self.names())
        self.assert_forgotten()

    def test_forgotten_after_a_roll_back(self):
        self.residue_kwargs = {'fail': OSError('link cut')}
        self.referenced().run()
        self.assert_rolled_back_to_running()
        self.assertEqual('key-delete', self.names()[-1])
        self.assert_forgotten()

    def test_forgotten_when_the_server_changed_before_the_handoff_started(self):
        self.instance.db_task_state = task_states.DELETING
        self.referenced().run()
        self.assertEqual([], FakeEventReporter.events)
        self.assertEqual([('key-delete', self.ref)], self.log)     # never read, still deleted
        self.assert_forgotten()

    def test_a_failing_delete_does_not_change_the_outcome(self):
        self.useFixture(fixtures.MockPatchObject(
            fake_key_manager.FakeKeyManager, 'delete',
            side_effect=sender.credentials.castellan_exc.KeyManagerError(reason='token expired')))
        self.referenced().run()
        self.assertEqual(records.OK, self.record()['result'])
        self.assertEqual(1, len(FakeComputeRPCAPI.terminates))
        self.assertIn('could not be deleted from the key manager', self.stdlog.logger.output)

    def left_at_the_destination(self, failures):
        """A handoff whose roll back cannot delete some of what it made there (`failures`: the
        delete calls' failures before they delete): the handoff, what it left.
        """
        self.instance.network_info = [{'id': 'port-1', 'fip': True}]
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'delete_failures', failures))
        self.residue_kwargs = {'fail': OSError('link cut')}
        handoff = self.referenced()
        handoff.run()
        self.assert_rolled_back_to_running()
        return handoff, [what for what, _delete, _id in handoff.leftovers]

    def test_what_the_roll_back_left_is_retried_until_deleted_then_the_credential_forgotten(self):
        handoff, left = self.left_at_the_destination({'delete_server': 2, 'delete_port': 1})
        self.assertEqual(['server dest-server', 'port dest-port-1'], left)
        self.assertEqual(left, self.record()['destination_leftovers'])
        self.assertEqual([], self.keys.deleted)              # kept: the retries need it
        handoff.sweep(NoWait())
        # Two more tries for the server, one for the port; nothing else deleted twice.
        self.assertEqual([('delete_server', 'dest-server')] * 3, [e for e in self.log if e[0] == 'delete_server'])
        self.assertEqual(['dest-port-1'] * 2, [e[1] for e in self.log if e[0] == 'delete_port'])
        self.assertEqual(1, len([e for e in self.log if e[0] == 'delete_floating_ip']))
        self.assertEqual([], self.record()['destination_leftovers'])
        self.assertEqual(records.ERROR, self.record()['result'])
        self.assert_forgotten()

    def test_retries_end_at_their_timeout_naming_what_is_left(self):
        self.flags(cleanup_retry_timeout=0, group='cloudlet_handoff')
        handoff, left = self.left_at_the_destination({'delete_server': 5})
        handoff.sweep(NoWait())
        self.assertEqual(1, len([e for e in self.log if e[0] == 'delete_server']))
        self.assertEqual(['server dest-server'], self.record()['destination_leftovers'])
        self.assertIn('left at the destination', self.stdlog.logger.output)
        self.assert_forgotten()

    def test_a_compute_stop_ends_the_retries(self):
        self.flags(cleanup_retry_interval=3600, group='cloudlet_handoff')
        self.instance.network_info = [{'id': 'port-1', 'fip': True}]
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'delete_failures', {'delete_server': 1}))
        self.residue_kwargs = {'fail': OSError('link cut')}
        self.stop_the_sweep()
        self.assertEqual(['server dest-server'], self.record()['destination_leftovers'])

    def stop_the_sweep(self):
        """Run the handoff on Handoffs, see its sweep thread start, stop the compute service."""
        handoffs = sender.Handoffs(FakeDriver(self.guest), 'compute1')
        handoffs.run(self.context, self.instance, HANDOFF_ID, request(credential=self.reference))
        [sweep] = handoffs.sweeping().values()
        self.assertTrue(sweep.is_alive())
        self.assertTrue(handoffs.cancel_all('nova-compute is stopping', timeout=10))
        self.assertFalse(sweep.is_alive())
        self.assertEqual({}, handoffs.sweeping())
        self.assert_forgotten()

    def in_doubt(self, *answers):
        """A handoff whose switch lost the link: the VM left paused here; then the
        destination's answers to get_server (FakeDestination.answers).
        """
        self.instance.network_info = [{'id': 'port-1', 'fip': True}]
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'server_status', 'BUILD'))
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'fail_at', 'wait_gone'))
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'answers', answers))
        handoff = self.referenced()
        handoff.run()
        self.assertEqual(power_state.PAUSED, self.guest.state)
        self.assertEqual(('paused', None), (self.instance.vm_state, self.instance.db_task_state))
        self.assertTrue(handoff.unfinished())
        self.assertEqual([], self.keys.deleted)              # kept: settling needs it
        return handoff

    def test_a_doubt_never_keeps_the_destination_server_even_when_it_runs_the_vm(self):
        # The roll back's delete may land there late (its answer was what the link cut):
        # a server found ACTIVE is deleted again, and the VM resumes here once it is gone.
        unreachable = destination_client.HandoffDestinationError('destination: connection refused')
        handoff = self.in_doubt(unreachable, 'BUILD', 'ACTIVE', None)
        handoff.sweep(NoWait())
        self.assertEqual(['raises', 'BUILD', 'ACTIVE', None], [e[2] for e in self.log if e[0] == 'get_server'])
        # The roll back's delete, then one per answer that the server is still there.
        self.assertEqual(3, len([e for e in self.log if e[0] == 'delete_server']))
        self.assertEqual([], FakeComputeRPCAPI.terminates)
        self.assertEqual(power_state.RUNNING, self.guest.state)
        self.assertEqual(('active', power_state.RUNNING, None),
                         (self.instance.vm_state, self.instance.power_state, self.instance.db_task_state))
        record = self.record()
        self.assertEqual(('source', True, records.ERROR),
                         (record['settled'], record['in_doubt'], record['result']))
        self.assertFalse(handoff.unfinished())
        self.assert_forgotten()

    def test_a_doubt_waits_while_the_destination_server_is_deleting(self):
        handoff = self.in_doubt({'status': 'ACTIVE', 'OS-EXT-STS:task_state': 'deleting'}, None)
        handoff.sweep(NoWait())
        self.assertEqual(1, len([e for e in self.log if e[0] == 'delete_server']))     # the roll back's
        self.assertEqual(power_state.RUNNING, self.guest.state)
        self.assertEqual('source', self.record()['settled'])

    def test_a_doubt_settles_at_the_source_once_the_destination_server_is_gone(self):
        handoff = self.in_doubt('ERROR', None)
        handoff.sweep(NoWait())
        names = self.names()
        tail = names[names.index('get_server'):]
        # Resumed (the NICs went along: none to plug back), then what is left there deleted.
        self.assertEqual(['get_server', 'delete_server', 'get_server', 'residue-cancel', 'residue-resume',
                          'delete_floating_ip', 'delete_port', 'key-delete'], tail)
        self.assertEqual(power_state.RUNNING, self.guest.state)
        self.assertEqual(('active', power_state.RUNNING, None),
                         (self.instance.vm_state, self.instance.power_state, self.instance.db_task_state))
        self.assertEqual([], FakeComputeRPCAPI.terminates)
        self.assertEqual('source', self.record()['settled'])
        self.assert_forgotten()

    def test_the_owner_acting_first_settles_a_doubt(self):
        handoff = self.in_doubt('ACTIVE', None)
        self.instance.vm_state = 'active'             # unpaused by its owner meanwhile
        handoff.sweep(NoWait())
        self.assertEqual(2, len([e for e in self.log if e[0] == 'delete_server']))     # gone there all the same
        self.assertEqual([], FakeComputeRPCAPI.terminates)
        self.assertEqual(power_state.PAUSED, self.guest.state)    # the fake guest: nova's unpause not faked
        self.assertEqual('owner', self.record()['settled'])
        self.assert_forgotten()

    def test_a_doubt_never_settled_leaves_the_vm_paused_and_says_so(self):
        self.flags(cleanup_retry_timeout=0, group='cloudlet_handoff')
        handoff = self.in_doubt()
        handoff.sweep(NoWait())
        self.assertNotIn('get_server', self.names())
        self.assertEqual(power_state.PAUSED, self.guest.state)
        self.assertIsNone(self.record()['settled'])
        self.assertIn('never answered whether its server dest-server runs the VM', self.stdlog.logger.output)
        self.assert_forgotten()

    def test_a_doubt_is_settled_in_a_thread_of_its_own(self):
        self.flags(cleanup_retry_interval=3600, group='cloudlet_handoff')
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'server_status', 'BUILD'))
        self.useFixture(fixtures.MockPatchObject(FakeDestination, 'fail_at', 'wait_gone'))
        self.stop_the_sweep()
        self.assertEqual(power_state.PAUSED, self.guest.state)
        self.assertIsNone(self.record()['settled'])

    def test_the_credential_s_values_are_masked_in_the_event_the_record_and_the_log(self):
        self.residue_kwargs = {'fail': OSError('link cut while sending %s as %s' % (SECRET, APP_ID))}
        handoff = self.referenced()
        handoff.run()
        message = self.assert_rolled_back_to_running()
        self.assertIn('link cut while sending *** as ***', message)
        self.assertIn(SECRET, handoff.secrets)
        self.assertIn(APP_ID, handoff.secrets)
        record_text = self.record_text()
        self.assertIn('link cut while sending *** as ***', record_text)
        for secret in (SECRET, APP_ID):
            self.assertNotIn(secret, record_text)
            self.assertNotIn(secret, self.stdlog.logger.output)

    def test_a_message_credential_does_not_touch_the_key_manager(self):
        self.keys.contexts.clear()
        self.handoff().run()
        self.assertEqual(self.CREDENTIAL, self.credential_given)
        self.assertEqual([], self.keys.contexts)
        self.assertEqual(1, len(self.keys.objects))       # the unrelated secret stored in setUp
        self.assertEqual(records.OK, self.record()['result'])


class FakesTest(test.NoDBTestCase):

    def test_the_fake_destination_offers_only_what_the_real_one_does(self):
        for name, fake in vars(FakeDestination).items():
            if name.startswith('_') or not callable(fake):
                continue
            real = getattr(destination_client.DestinationClient, name, None)
            self.assertIsNotNone(real, 'DestinationClient has no %s' % name)
            self.assertLessEqual(set(inspect.signature(fake).parameters),
                                 set(inspect.signature(real).parameters), name)


class HelpersTest(test.NoDBTestCase):

    def test_secrets_of_every_credential_kind(self):
        self.assertEqual([SECRET, APP_ID], sender.secrets_of(request()))
        self.assertEqual([TOKEN], sender.secrets_of(request(credential={'token': TOKEN})))
        self.assertEqual([], sender.secrets_of({}))

    def test_mask(self):
        text = 'auth with %s at https://u:p@h.example/v3 failed' % SECRET
        self.assertEqual('auth with *** at https://***@h.example/v3 failed',
                         sender.mask(text, [SECRET]))

    def test_describe(self):
        self.assertEqual('no route', sender.describe(sender.HandoffFailed(reason='no route')))
        self.assertEqual('refused', sender.describe(destination_client.HandoffDestinationError('refused')))
        self.assertEqual('OSError: disk full', sender.describe(OSError('disk full')))
        self.assertEqual('ValueError', sender.describe(ValueError()))

    def test_sweep_workdirs(self):
        root = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(root, 'inst-1', 'cloudlet-handoff-x'))
        os.makedirs(os.path.join(root, 'inst-1', 'cloudlet-capture-y'))
        os.makedirs(os.path.join(root, '_base', 'cloudlet-handoff-z'))
        self.assertEqual([os.path.join(root, 'inst-1', 'cloudlet-handoff-x')],
                         sender.sweep_workdirs(root))
        self.assertEqual(['cloudlet-capture-y'], os.listdir(os.path.join(root, 'inst-1')))
        self.assertEqual([], sender.sweep_workdirs(os.path.join(root, 'nowhere')))


class RPCTest(test.NoDBTestCase):

    def test_client_casts_to_the_instance_host(self):
        client = mock.Mock()
        with mock.patch.object(rpc.rpc, 'get_client') as get_client, \
                mock.patch.object(rpc.rpc, 'ClientRouter') as router:
            router.return_value.client.return_value = client
            api = rpc.HandoffAPI()
            ctx = nova_context.RequestContext('u', 'p')
            instance = types.SimpleNamespace(host='compute7')
            api.handoff(ctx, instance, HANDOFF_ID, {'name': 'x'})
        target = get_client.call_args[0][0]
        self.assertEqual(('cloudlet', '1.2', None), (target.topic, target.version, target.server))
        router.return_value.client.assert_called_once_with(ctx)
        client.prepare.assert_called_once_with(server='compute7', version='1.0')
        client.prepare.return_value.cast.assert_called_once_with(
            ctx, 'handoff', instance=instance, handoff_id=HANDOFF_ID, request={'name': 'x'})

    def test_endpoint_runs_the_handoff_in_the_long_task_pool(self):
        runner = mock.Mock()
        endpoint = rpc.HandoffEndpoint(runner)
        self.assertEqual('1.2', endpoint.target.version)
        with mock.patch.object(rpc.thread_pool_factory, 'spawn_on') as spawn_on:
            endpoint.handoff('ctx', 'instance', HANDOFF_ID, {'r': 1})
        spawn_on.assert_called_once_with(rpc.thread_pool_factory.ExecutorType.LONG_TASK, runner,
                                         'ctx', 'instance', HANDOFF_ID, {'r': 1})
        runner.assert_not_called()

    def _api(self):
        client = mock.Mock()
        patches = [mock.patch.object(rpc.rpc, 'get_client'), mock.patch.object(rpc.rpc, 'ClientRouter')]
        router = [patch.start() for patch in patches][1]
        for patch in patches:
            self.addCleanup(patch.stop)
        router.return_value.client.return_value = client
        return rpc.HandoffAPI(), client

    def test_client_residue_status_is_a_call_to_version_1_1(self):
        api, client = self._api()
        ctx = nova_context.RequestContext('u', 'p')
        instance = types.SimpleNamespace(host='compute9')
        client.prepare.return_value.call.return_value = {'state': 'ready'}
        self.assertEqual({'state': 'ready'}, api.residue_status(ctx, instance, HANDOFF_ID))
        client.prepare.assert_called_once_with(server='compute9', version='1.1')
        client.prepare.return_value.call.assert_called_once_with(
            ctx, 'residue_status', instance=instance, handoff_id=HANDOFF_ID)

    def test_client_residue_data_sends_base64_with_a_longer_timeout(self):
        api, client = self._api()
        ctx = nova_context.RequestContext('u', 'p')
        instance = types.SimpleNamespace(host='compute9')
        client.prepare.return_value.call.return_value = {'state': 'receiving'}
        data = bytes(range(256))
        self.assertEqual({'state': 'receiving'},
                         api.residue_data(ctx, instance, HANDOFF_ID, 4096, data, end=True))
        client.prepare.assert_called_once_with(server='compute9', version='1.1',
                                               timeout=rpc.RECEIVE_WAIT_SECONDS * 2)
        args, kwargs = client.prepare.return_value.call.call_args
        self.assertEqual((ctx, 'residue_data'), args)
        encoded = kwargs.pop('data')
        self.assertIsInstance(encoded, str)                    # messages are JSON
        self.assertEqual(data, base64.b64decode(encoded))
        self.assertEqual({'instance': instance, 'handoff_id': HANDOFF_ID, 'offset': 4096, 'end': True},
                         kwargs)

    def test_client_residue_abort_is_a_cast(self):
        api, client = self._api()
        ctx = nova_context.RequestContext('u', 'p')
        instance = types.SimpleNamespace(host='compute9')
        api.residue_abort(ctx, instance, HANDOFF_ID, 'the body broke off')
        client.prepare.assert_called_once_with(server='compute9', version='1.1')
        client.prepare.return_value.cast.assert_called_once_with(
            ctx, 'residue_abort', instance=instance, handoff_id=HANDOFF_ID, reason='the body broke off')
        client.prepare.return_value.call.assert_not_called()

    def test_prepare_migration_is_a_call_to_the_destination_at_version_1_2(self):
        api, client = self._api()
        ctx = nova_context.RequestContext('u', 'p')
        instance = types.SimpleNamespace(host='compute1')
        api.prepare_migration(ctx, instance, 'compute2', 600)
        client.prepare.assert_called_once_with(server='compute2', version='1.2', timeout=600)
        client.prepare.return_value.call.assert_called_once_with(ctx, 'prepare_migration', instance=instance)

    def test_endpoint_prepare_migration_is_the_driver_s(self):
        prepare = mock.Mock(side_effect=RuntimeError('no base here'))
        endpoint = rpc.HandoffEndpoint(mock.Mock(), prepare_migration=prepare)
        self.assertRaises(RuntimeError, endpoint.prepare_migration, 'ctx', 'instance')
        prepare.assert_called_once_with('ctx', 'instance')

    def test_endpoint_residue_calls_reach_the_hosts_inboxes(self):
        inboxes = inbox_mod.Inboxes()
        endpoint = rpc.HandoffEndpoint(mock.Mock(), inboxes)
        waiting = {'state': 'waiting', 'bytes_received': 0, 'reason': None}
        self.assertEqual(waiting, endpoint.residue_status('ctx', 'instance', HANDOFF_ID))
        # No inbox yet (the spawn still fetches the base): nothing is taken.
        self.assertEqual(waiting, endpoint.residue_data('ctx', 'instance', HANDOFF_ID, 0,
                                                        base64.b64encode(b'early').decode(), False))
        inbox = inboxes.open(HANDOFF_ID, idle_timeout=10)
        self.assertEqual('ready', endpoint.residue_status('ctx', 'instance', HANDOFF_ID)['state'])
        self.assertEqual({'state': 'receiving', 'bytes_received': 5, 'reason': None},
                         endpoint.residue_data('ctx', 'instance', HANDOFF_ID, 0,
                                               base64.b64encode(b'\x00\xffab\n').decode(), False))
        self.assertEqual({'state': 'received', 'bytes_received': 5, 'reason': None},
                         endpoint.residue_data('ctx', 'instance', HANDOFF_ID, 5, '', True))
        self.assertEqual(b'\x00\xffab\n', inbox.read())
        self.assertEqual(b'', inbox.read())

    def test_endpoint_residue_data_at_a_wrong_offset_raises_an_inbox_error(self):
        inboxes = inbox_mod.Inboxes()
        inboxes.open(HANDOFF_ID, idle_timeout=10)
        endpoint = rpc.HandoffEndpoint(mock.Mock(), inboxes)
        self.assertRaisesRegex(inbox_mod.InboxError, 'at offset 3, expected 0', endpoint.residue_data,
                               'ctx', 'instance', HANDOFF_ID, 3, base64.b64encode(b'x').decode(), False)

    def test_endpoint_residue_data_waits_at_most_receive_wait_seconds(self):
        inboxes = mock.Mock()
        endpoint = rpc.HandoffEndpoint(mock.Mock(), inboxes)
        endpoint.residue_data('ctx', 'instance', HANDOFF_ID, 7, base64.b64encode(b'abc').decode(), True)
        inboxes.receive.assert_called_once_with(HANDOFF_ID, 7, b'abc', True, timeout=rpc.RECEIVE_WAIT_SECONDS)
        self.assertLess(rpc.RECEIVE_WAIT_SECONDS, 60)          # below nova's rpc_response_timeout

    def test_endpoint_takes_a_full_relay_call_and_refuses_a_larger_one(self):
        inboxes = inbox_mod.Inboxes()
        inbox = inboxes.open(HANDOFF_ID, idle_timeout=10)
        endpoint = rpc.HandoffEndpoint(mock.Mock(), inboxes)
        most = base64.b64encode(b'r' * rpc.RELAY_BYTES).decode()
        self.assertEqual(rpc.RELAY_BYTES, endpoint.residue_data('ctx', 'instance', HANDOFF_ID, 0, most,
                                                                False)['bytes_received'])
        too_much = base64.b64encode(b'r' * (rpc.RELAY_BYTES + 3)).decode()
        self.assertRaisesRegex(inbox_mod.InboxError, 'at most %d bytes a call' % rpc.RELAY_BYTES,
                               endpoint.residue_data, 'ctx', 'instance', HANDOFF_ID, rpc.RELAY_BYTES,
                               too_much, False)
        self.assertEqual(rpc.RELAY_BYTES, inbox.received)      # nothing of it taken

    def test_endpoint_residue_abort_fails_the_inbox(self):
        inboxes = inbox_mod.Inboxes()
        inbox = inboxes.open(HANDOFF_ID, idle_timeout=10)
        endpoint = rpc.HandoffEndpoint(mock.Mock(), inboxes)
        endpoint.residue_abort('ctx', 'instance', HANDOFF_ID, 'the residue upload broke off')
        self.assertEqual({'state': 'failed', 'bytes_received': 0, 'reason': 'the residue upload broke off'},
                         endpoint.residue_status('ctx', 'instance', HANDOFF_ID))
        self.assertRaises(inbox_mod.errors.SourceError, inbox.read)

    def test_server_on_topic_cloudlet_per_host(self):
        with mock.patch.object(rpc.rpc, 'get_server') as get_server:
            server = rpc.HandoffServer('compute7', 'endpoint')
            server.start()
            server.stop()
        target, endpoints, serializer = get_server.call_args[0]
        self.assertEqual(('cloudlet', 'compute7'), (target.topic, target.server))
        self.assertEqual(['endpoint'], endpoints)
        get_server.return_value.start.assert_called_once_with()
        get_server.return_value.stop.assert_called_once_with()
        get_server.return_value.wait.assert_called_once_with()
