"""cloudlet-handoff on the whole nova stack: API -> `cloudlet` RPC topic -> CloudletDriver's sender.

The source is a cloudlet server on compute1 (CloudletDriver on fake libvirt).
The destination cloud is played by the same nova (FakeDestinationCloud): the
destination server is created through its API with the handoff's id in its
metadata; CloudletDriver.spawn on the destination side fetches the base,
opens the handoff's inbox (the driver's `_inboxes`) and synthesizes the
server from the residue as the "upload" (FakeLiveResidue writing a real
overlay, relayed into the inbox as nova-api's relay does) brings it. Only the
WAN client (`Destination`, with nova-api's relay), QEMU's migration
(`LiveResidue`) and the key manager holding the credential while the handoff
runs (castellan's API: tests/fixtures/fake_key_manager.py; [cloudlet_handoff]
credential_store = key_manager, the default) are fakes.
"""

import json
import os
import threading
import uuid

from castellan.common import exception as castellan_exc
import fixtures
from lxml import etree

from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt

from api_extensions import router
from cloudlet_nova.handoff import destination_client
from cloudlet_nova.handoff import inbox as inbox_mod
from cloudlet_nova.handoff import records
from cloudlet_nova.handoff import rpc as handoff_rpc
from cloudlet_nova.virt import launch
import nova.conf
from tests.fixtures import fake_key_manager
from tests.functional.api import base as api_base
from tests.functional import cloudlet_base
from tests.functional import fake_handoff
from tests.functional.log_capture import CollectingHandler

CONF = nova.conf.CONF
SECRET = 'Sup3r-S3cret-application-credential-value'
APP_ID = '9f8e7d6c5b4a39281706f5e4d3c2b1a0'
TOKEN = 'gAAAAABfunctional-keystone-token-value-of-the-destination'
AUTH_URL = 'https://edge-b.example:5000/v3'


class HandoffTest(cloudlet_base.CloudletTestBase):
    # As the box's bases: restored over their RAM file, so the destination's restore reads
    # the residue's launch memory from a pipe as it arrives.
    SYNTHETIC_BALLOON = 'none'

    def _setup_services(self):
        # CloudletDriver's harness with nova-api loaded from OUR api-paste.ini (the
        # cloudlet actions), not the wheel's.
        router.register_opts()
        self.useFixture(api_base.CloudletPolicyFixture())
        self.flags(api_state_dir=self.useFixture(fixtures.TempDir()).path, group='cloudlet')
        self.flags(api_paste_config=api_base.API_PASTE_INI, group='wsgi')
        super(cloudlet_base.CloudletTestBase, self)._setup_services()

    def setUp(self):
        super().setUp()
        self.logs = CollectingHandler()
        self.useFixture(fixtures.LogHandler(self.logs, nuke_handlers=False))
        self.disk, self.pages = self.synthetic.changed()
        overlay = self.synthetic.make_overlay(os.path.join(self.work, 'residue.clo'), self.disk,
                                              self.pages)
        with open(overlay, 'rb') as f:
            self.residue_blob = f.read()
        self.cloud = fake_handoff.FakeDestinationCloud(self.api, self.glance, self.flavor_id,
                                                       self.computes)
        self.residues = fake_handoff.FakeLiveResidueFactory(self.residue_blob)
        self.useFixture(fixtures.MonkeyPatch(
            'cloudlet_nova.handoff.destination_client.DestinationClient', self.cloud))
        self.useFixture(fixtures.MonkeyPatch(
            'cloudlet_engine.handoff.LiveResidue', self.residues))
        self.keys = fake_key_manager.FakeKeyManager()
        self.useFixture(fixtures.MockPatch('castellan.key_manager.API', return_value=self.keys))
        # What the compute host receives on the `cloudlet` topic (serialized, as it travels).
        self.messages = []
        receive = handoff_rpc.HandoffEndpoint.handoff

        def handoff(endpoint, context, instance, handoff_id, request):
            self.messages.append(json.dumps({'handoff_id': handoff_id, 'request': request}))
            return receive(endpoint, context, instance, handoff_id, request)

        self.useFixture(fixtures.MonkeyPatch(
            'cloudlet_nova.handoff.rpc.HandoffEndpoint.handoff', handoff))

    # -- helpers ----------------------------------------------------------------------

    def handoff(self, server, credential=None, expect=202, **entity):
        body = {'destination': {'auth_url': AUTH_URL},
                'credential': credential or {'application_credential': {'id': APP_ID,
                                                                        'secret': SECRET}},
                'name': 'app-b'}
        body.update(entity)
        resp = self.api.api_post('/servers/%s/action' % server['id'], {'cloudlet-handoff': body},
                                 check_response_status=[expect])
        return resp.body['handoff_id'] if expect == 202 else resp.body

    def wait_handoff_failed(self, server):
        """The source server back to ACTIVE without a task, its event in Error; the event."""
        event = self._wait_for_instance_action_event(server, 'cloudlet-handoff', 'cloudlet_handoff',
                                                     'error')
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None}, max_retries=40)
        return server, event

    def record(self, handoff_id):
        for _ in range(40):
            record = records.load(CONF.cloudlet.state_dir, handoff_id)
            if record and record['result'] != records.RUNNING:
                return record
            self._sleep(0.25)
        self.fail('handoff %s has no finished record: %s' % (handoff_id, record))

    @staticmethod
    def _sleep(seconds):
        threading.Event().wait(seconds)

    def record_text(self, handoff_id):
        with open(records.path(CONF.cloudlet.state_dir, handoff_id)) as f:
            return f.read()

    def assert_vm_running(self, server):
        dom = self.domain(server)
        self.assertTrue(dom.isActive())
        self.assertEqual(fakelibvirt.VIR_DOMAIN_RUNNING, dom.info()[0])

    def assert_no_secret_anywhere(self, handoff_id, server=None, secrets=(SECRET,)):
        places = {'logs': self.logs.text(), 'record': self.record_text(handoff_id)}
        if server is not None:
            instance = objects.Instance.get_by_uuid(self.admin_context, server['id'],
                                                    expected_attrs=['metadata', 'system_metadata'])
            places['metadata'] = repr(instance.metadata)
            places['system_metadata'] = repr(instance.system_metadata)
            actions = self.admin_api.get_instance_actions(server['id'])
            places['actions'] = repr([self.admin_api.get_instance_action_details(
                server['id'], action['request_id']) for action in actions])
        for secret in secrets:
            for place, text in places.items():
                self.assertNotIn(secret, text, 'the credential is in the %s' % place)

    def macs(self, server):
        return [etree.fromstring(i.encode()).find('mac').get('address')
                for i in self.domain(server)._fake_ifaces]

    def destination_dom(self, server_id):
        # driver._host: nova exposes no public accessor for the fake libvirt connection.
        return self.driver()._host.get_connection().lookupByUUIDString(server_id)

    # -- success -------------------------------------------------------------------

    def test_handoff_moves_the_server(self):
        server = self.create_cloudlet_server()
        images_before = set(self.glance.images)
        seen = []
        original_receive = launch.receive_residue

        def receive_residue(inboxes, handoff_id, apply_from):
            # The destination's spawn is not ready (as if still fetching its base) until the
            # source has sent its disk pre-copy and waits before the memory.
            for _ in range(300):
                if 'wait_ready' in self.cloud.names():
                    break
                self._sleep(0.1)
            [upload] = self.cloud.uploads
            seen.append((self.api.get_server(upload.server_id)['status'],
                         self.domain(server).info()[0], len(upload.held), upload.offset,
                         inboxes.status(handoff_id)['state']))
            return original_receive(inboxes, handoff_id, apply_from)

        self.useFixture(fixtures.MonkeyPatch('cloudlet_nova.virt.launch.receive_residue',
                                             receive_residue))

        handoff_id = self.handoff(server, options={'codec': 'zstd'})
        self._wait_until_deleted(server)

        # The destination server was created first; the disk pre-copy waited in the relay
        # while its spawn was not ready, the source VM still running; then the spawn took
        # the residue into its inbox and synthesized the server from it: the VM's state
        # continues there.
        half = len(self.residue_blob) // 2
        self.assertEqual([('BUILD', fakelibvirt.VIR_DOMAIN_RUNNING, half, 0, inbox_mod.WAITING)], seen)
        [dest_id] = self.cloud.servers_created
        dest = self._wait_for_state_change({'id': dest_id}, 'ACTIVE')
        self.assertEqual('app-b', dest['name'])
        self.assertEqual({'cloudlet_handoff_id': handoff_id}, dest['metadata'])
        # Restored from a pipe the residue's apply wrote as the residue arrived.
        [restore] = self.restores_of(dest)
        self.assertEqual([restore[2]], self.fake_libvirt.piped)
        self.assertEqual(cloudlet_base.guest_memory(self.pages),
                         cloudlet_base.guest_memory(self.destination_dom(dest_id)._fake_pages))
        self.assertEqual(self.disk, self.disk_bytes(os.path.join(self.instance_dir(dest), 'disk')))
        # The whole residue went into the inbox, which the spawn closed; nothing went
        # through the destination's Glance.
        self.assertEqual({'state': inbox_mod.RECEIVED, 'bytes_received': len(self.residue_blob),
                          'reason': None}, self.driver()._inboxes.status(handoff_id))
        self.assertEqual(len(self.residue_blob), self.cloud.uploads[0].offset)
        self.assertEqual(images_before, set(self.glance.images))
        self.assertEqual(
            ['init', 'connect', 'find_base_image', 'pick_flavor', 'create_server',
             'residue_upload', 'wait_ready', 'upload-done', 'wait_active'],
            self.cloud.names())
        self.assertEqual(('find_base_image', self.synthetic.base.base_id), self.cloud.calls[2])
        self.assertEqual(('pick_flavor', cloudlet_base.MEMORY_MIB, cloudlet_base.VCPUS, None),
                         self.cloud.calls[3])
        self.assertEqual(('residue_upload', dest_id, handoff_id), self.cloud.calls[5])
        self.assertEqual([{'application_credential': {'id': APP_ID, 'secret': SECRET}}],
                         self.cloud.credentials)
        [residue] = self.residues.made
        self.assertEqual('zstd', residue.kwargs['codec'])
        self.assertEqual(['run', 'before_memory'], residue.calls)

        event = self._wait_for_instance_action_event(server, 'cloudlet-handoff', 'cloudlet_handoff',
                                                     'success')
        self.assertEqual('compute1', event['host'])
        actions = [a['action'] for a in self.admin_api.get_instance_actions(server['id'])]
        self.assertIn('delete', actions)
        record = self.record(handoff_id)
        self.assertEqual(records.OK, record['result'])
        self.assertEqual(server['id'], record['instance_uuid'])
        self.assertEqual(dest_id, record['destination_server_id'])
        self.assertEqual({'auth_url': AUTH_URL, 'flavor_id': self.flavor_id}, record['destination'])
        self.assertEqual(len(self.residue_blob), record['bytes_sent'])
        self.assertEqual(['destination', 'residue', 'activate', 'switch'],
                         [p['name'] for p in record['phases']])
        self.assertGreater(record['downtime_seconds'], 0)
        self.assert_no_secret_anywhere(handoff_id)
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        # The credential waited in the key manager (stored by nova-api with the user's
        # context, read by the compute host), and the compute's RPC message held only its
        # reference; the secret was deleted when the handoff ended.
        [(stored_context, ref)] = self.keys.stored
        [message] = self.messages
        self.assertEqual({'secret_ref': ref}, json.loads(message)['request']['credential'])
        for secret in (SECRET, APP_ID):
            self.assertNotIn(secret, message)
        self.assertEqual([ref], [read for _, read in self.keys.reads])
        self.assertEqual([ref], [deleted for _, deleted in self.keys.deleted])
        self.assertEqual({}, self.keys.objects)
        self.assertEqual({server['tenant_id']}, {c.project_id for c in self.keys.contexts})
        self.assertEqual({False}, {c.is_admin for c in self.keys.contexts})

    def test_handoff_over_a_full_memory_image_restores_from_a_file(self):
        # No RAM file ([cloudlet] memory_restore, or a base with a balloon): the launch memory
        # is a whole file, applied first, then restored.
        self.flags(memory_restore='full_image', group='cloudlet')
        server = self.create_cloudlet_server()
        self.handoff(server)
        self._wait_until_deleted(server)
        [dest_id] = self.cloud.servers_created
        dest = self._wait_for_state_change({'id': dest_id}, 'ACTIVE')
        self.assertEqual(1, len(self.restores_of(dest)))
        self.assertEqual([], self.fake_libvirt.piped)
        self.assertEqual(self.pages, self.destination_dom(dest_id)._fake_pages)

    def test_handoff_to_a_configured_cloud_with_a_token(self):
        self.flags(destinations={'edge-b': AUTH_URL}, group='cloudlet_handoff')
        server = self.create_cloudlet_server()
        handoff_id = self.handoff(server, credential={'token': TOKEN},
                                  destination={'cloud': 'edge-b', 'flavor': self.flavor_id})
        self._wait_until_deleted(server)
        self.assertEqual({'cloud': 'edge-b', 'flavor': self.flavor_id}, self.cloud.calls[0][1])
        self.assertEqual({'edge-b': AUTH_URL}, self.cloud.calls[0][2]['known_clouds'])
        self.assertEqual([{'token': TOKEN}], self.cloud.credentials)
        record = self.record(handoff_id)
        self.assertEqual({'auth_url': AUTH_URL, 'cloud': 'edge-b', 'flavor_id': self.flavor_id},
                         record['destination'])
        self.assert_no_secret_anywhere(handoff_id, secrets=(TOKEN,))

    def test_rpc_message_mode_sends_the_credential_in_the_message(self):
        self.flags(credential_store='rpc_message', group='cloudlet_handoff')
        server = self.create_cloudlet_server()
        handoff_id = self.handoff(server)
        self._wait_until_deleted(server)
        self.assertEqual(records.OK, self.record(handoff_id)['result'])
        [message] = self.messages
        self.assertEqual({'application_credential': {'id': APP_ID, 'secret': SECRET}},
                         json.loads(message)['request']['credential'])
        self.assertEqual([{'application_credential': {'id': APP_ID, 'secret': SECRET}}],
                         self.cloud.credentials)
        self.assertEqual([], self.keys.contexts)
        self.assert_no_secret_anywhere(handoff_id)

    # -- the credential cannot be kept or read ---------------------------------------------

    def test_a_key_manager_that_cannot_store_the_credential_is_a_503(self):
        server = self.create_cloudlet_server()
        self.keys.error = castellan_exc.KeyManagerError(reason='barbican is down')
        body = self.handoff(server, expect=503)
        self.assertEqual('the key manager could not keep the destination credential; try again later',
                         body['serviceUnavailable']['message'])
        server = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', None), (server['status'], server['OS-EXT-STS:task_state']))
        self.assertEqual([], self.messages)
        self.assertEqual([], self.cloud.calls)
        self.assert_vm_running(server)
        self.assertNotIn(SECRET, self.logs.text())
        # Once the key manager is back, the handoff goes.
        self.keys.error = None
        self.handoff(server)
        self._wait_until_deleted(server)

    def test_a_credential_gone_from_the_key_manager_fails_the_handoff(self):
        server = self.create_cloudlet_server()
        # Deleted between nova-api and the compute host (e.g. by the user).
        self.useFixture(fixtures.MonkeyPatch(
            'cloudlet_nova.handoff.rpc.HandoffEndpoint.handoff', self.emptying(
                handoff_rpc.HandoffEndpoint.handoff)))
        handoff_id = self.handoff(server)
        server, event = self.wait_handoff_failed(server)
        self.assertIn('cloudlet handoff failed: the destination credential could not be read from the '
                      'key manager', event['details'])
        self.assertEqual([], self.cloud.calls)                 # nothing reached the destination
        self.assert_vm_running(server)
        self.assertEqual(1, len(self.restores_of(server)))
        self.assertEqual(records.ERROR, self.record(handoff_id)['result'])
        self.assert_no_secret_anywhere(handoff_id, server)

    def emptying(self, receive):
        def handoff(endpoint, context, instance, handoff_id, request):
            self.keys.objects.clear()
            return receive(endpoint, context, instance, handoff_id, request)
        return handoff

    # -- the destination refuses: the VM was never touched --------------------------------

    def _refused(self, step):
        server = self.create_cloudlet_server()
        self.cloud.fail_at = step
        handoff_id = self.handoff(server)
        server, event = self.wait_handoff_failed(server)
        self.assertEqual('cloudlet handoff failed: destination %s refused %s (fake)'
                         % (AUTH_URL, step), event['details'])
        self.assert_vm_running(server)
        self.assertEqual([], self.residues.made)
        self.assertEqual(1, len(self.restores_of(server)))   # its spawn, nothing since
        self.assertEqual([], self.fake_libvirt.saves)
        record = self.record(handoff_id)
        self.assertEqual(records.ERROR, record['result'])
        self.assertIn('refused %s' % step, record['error'])
        self.assert_no_secret_anywhere(handoff_id, server)
        self.assertEqual({}, self.keys.objects)               # forgotten on failure too
        self.assertEqual(1, len(self.keys.deleted))
        return server

    def test_refused_at_connect(self):
        self._refused('connect')
        self.assertEqual(['init', 'connect'], self.cloud.names())

    def test_refused_at_find_base_image(self):
        self._refused('find_base_image')
        self.assertNotIn('create_server', self.cloud.names())

    def test_refused_at_create_server(self):
        self._refused('create_server')
        # Nothing was created at the destination: nothing to delete, no residue sent.
        self.assertEqual([], self.cloud.servers_created)
        self.assertEqual([], [n for n in self.cloud.names()
                              if n.startswith('delete') or n.startswith('residue')])

    def test_the_server_can_be_handed_off_again_after_a_failure(self):
        server = self._refused('connect')
        self.cloud.fail_at = None
        self.handoff(server)
        self._wait_until_deleted(server)

    # -- failures after the VM was touched: roll back --------------------------------------

    def test_link_cut_mid_stream_rolls_back(self):
        server = self.create_cloudlet_server(networks=[{'uuid': self.neutron.network_1['id']}])
        macs = self.macs(server)
        self.assertEqual(1, len(macs))
        self.residues.fail = OSError('connection reset by peer while sending %s' % SECRET)
        handoff_id = self.handoff(server)
        server, event = self.wait_handoff_failed(server)

        self.assertIn('connection reset by peer', event['details'])
        [residue] = self.residues.made
        self.assertEqual(['run', 'before_memory', 'cancel', 'resume_source'], residue.calls)
        self.assertEqual([], residue.nics_during_run)        # unplugged while streaming
        self.assert_vm_running(server)
        self.assertEqual(macs, self.macs(server))     # plugged back
        # The destination's inbox was aborted with the upload (its build fails at once),
        # then the destination server is deleted.
        [dest_id] = self.cloud.servers_created
        self.assertEqual(['upload-aborted', 'delete_server'],
                         [n for n in self.cloud.names() if n in ('upload-aborted', 'delete_server')])
        status = self.driver()._inboxes.status(handoff_id)
        self.assertEqual(inbox_mod.FAILED, status['state'])
        self.assertIn('the residue upload broke off after %d bytes' % (len(self.residue_blob) // 2),
                      status['reason'])
        self.assertNotIn(SECRET, status['reason'])
        self._wait_until_deleted({'id': dest_id})
        record = self.record(handoff_id)
        self.assertEqual(records.ERROR, record['result'])
        self.assertEqual('residue', record['phases'][-1]['name'])
        self.assert_no_secret_anywhere(handoff_id, server)
        self.assertEqual([], [n for n in os.listdir(self.instance_dir(server))
                              if n.startswith('cloudlet-handoff')])

    def test_destination_server_error_keeps_the_source(self):
        server = self.create_cloudlet_server()
        # The destination cannot synthesize from this residue: its server goes ERROR.
        self.residues.blob = self.residue_blob[:len(self.residue_blob) // 2]
        handoff_id = self.handoff(server)
        server, event = self.wait_handoff_failed(server)

        [dest_id] = self.cloud.servers_created
        self.assertIn('server %s is ERROR' % dest_id, event['details'])
        self.assertIn('overlay is truncated', event['details'])
        [residue] = self.residues.made
        self.assertEqual(['run', 'before_memory', 'cancel', 'resume_source'], residue.calls)
        self.assert_vm_running(server)
        self._wait_until_deleted({'id': dest_id})
        self.assertEqual('activate', self.record(handoff_id)['phases'][-1]['name'])

    def test_compute_stop_cancels_a_running_handoff(self):
        server = self.create_cloudlet_server()
        self.residues.block = threading.Event()
        handoff_id = self.handoff(server)
        self.assertTrue(self.residues.block.wait(30))
        compute = self.restart_compute_service('compute1')
        self.assertIsNotNone(compute)
        server, event = self.wait_handoff_failed(server)
        self.assertEqual('cloudlet handoff cancelled: nova-compute is stopping', event['details'])
        [residue] = self.residues.made
        self.assertIn('cancel', residue.calls)
        self.assert_vm_running(server)
        self.assertEqual(records.ERROR, self.record(handoff_id)['result'])
        # The restarted compute serves the `cloudlet` topic again.
        self.residues.block = None
        self.handoff(server)
        self._wait_until_deleted(server)

    # -- the destination side --------------------------------------------------------------

    def test_aborted_residue_upload_fails_the_destination_spawn(self):
        images_before = set(self.glance.images)
        handoff_id = str(uuid.uuid4())
        destination = self.cloud({'auth_url': AUTH_URL}, {'token': TOKEN})
        server_id = destination.create_server('app-b', self.base_images.disk_id, self.flavor_id,
                                              {'cloudlet_handoff_id': handoff_id})
        # Its spawn has the base and waits for the residue.
        self.assertEqual({'state': inbox_mod.READY, 'bytes_received': 0, 'reason': None},
                         destination.wait_ready(server_id, handoff_id, 60))
        half = len(self.residue_blob) // 2

        def upload_breaking_off():
            with destination.residue_upload(server_id, handoff_id) as upload:
                upload.write(self.residue_blob[:half])
                raise OSError('connection reset by peer')

        self.assertRaises(OSError, upload_breaking_off)

        # The spawn fails at once (not after [cloudlet] handoff_receive_timeout), naming why.
        server = self._wait_for_state_change({'id': server_id}, 'ERROR')
        fault = server['fault']['message']
        self.assertIn('handoff %s' % handoff_id, fault)
        self.assertIn('the residue upload broke off after %d bytes (OSError)' % half, fault)
        # Nothing left behind: no launch files, no domain, no restore, the inbox closed
        # (a late piece is refused), nothing in Glance.
        self.assert_no_launch_files(server)
        self.assertEqual([], self.restores_of(server))
        inboxes = self.driver()._inboxes
        self.assertEqual(inbox_mod.FAILED, inboxes.status(handoff_id)['state'])
        self.assertRaises(inbox_mod.InboxError, inboxes.receive, handoff_id, half, b'late')
        self.assertEqual(images_before, set(self.glance.images))
        # The source, asking again, is refused: the server failed to build.
        error = self.assertRaises(destination_client.HandoffDestinationError, destination.wait_ready,
                                  server_id, handoff_id, 5)
        self.assertTrue(error.refused)
