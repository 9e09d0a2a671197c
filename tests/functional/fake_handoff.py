"""Fakes for handoff tests on nova's functional harness.

- `FakeDestinationCloud`: the destination cloud of a handoff, played by the
  test's own nova (API, Glance fixture, CloudletDriver compute): the fake
  `DestinationClient` it hands out creates the destination server through the
  test's nova API (metadata `cloudlet_handoff_id`), asks the inbox of the
  server's compute host (its CloudletDriver's `_inboxes`) whether it is
  ready, and "uploads" the residue into that inbox as nova-api's relay
  (api_extensions.residue) does: pieces at their offsets, held while the
  spawn is not ready yet (state `waiting`), the inbox aborted when the
  upload breaks off. So the destination side (CloudletDriver.spawn applying
  the residue as it arrives) runs for real. Steps can be made to refuse
  (`fail_at`).
- `FakeLiveResidue`: instead of QEMU's migration, writes a prepared overlay
  into the upload: its first half (the disk pre-copy), then `before_memory`
  (the sender waits there for the destination to be ready), then it pauses
  the fake libvirt domain and writes the rest (as the engine leaves the VM
  paused); `resume_source` resumes it. It can fail after the pause, or block
  after the first half until cancelled.

Both record what they were asked, for assertions. They replace the names
`cloudlet_nova.handoff.sender` uses (`destination_client.DestinationClient`,
`engine_handoff.LiveResidue`).
"""

import threading
import time
import types

from nova.compute import vm_states
from nova import context as nova_context
from nova import exception
from nova import objects
from nova.tests.functional.api import client as api_client

from cloudlet_glance import properties as props
from cloudlet_nova.handoff import destination_client
from cloudlet_nova.handoff import inbox as inbox_mod
from cloudlet_nova.handoff import rpc as handoff_rpc

# What nova-api's relay holds of a body while the spawn is not ready, and how
# long it waits for it (api_extensions.residue has 32 MiB and 900 s).
HOLD_BYTES = 32 << 20
WAIT_READY_SECONDS = 60
POLL_SECONDS = 0.05


class FakeUpload:
    """`PUT /servers/{id}/cloudlet-residue` and nova-api's relay of it into the inbox."""

    def __init__(self, cloud, server_id, handoff_id):
        self.cloud, self.server_id, self.handoff_id = cloud, server_id, handoff_id
        self.held = bytearray()     # written, not taken by the inbox yet (it was not open)
        self.offset = 0             # bytes the inbox took
        self.bytes_sent = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            # The body broke off: the relay aborts the inbox (the spawn fails at once).
            self.cloud.abort(self.server_id, self.handoff_id,
                             'the residue upload broke off after %d bytes (%s)'
                             % (self.bytes_sent, exc_type.__name__))
            self.cloud.calls.append(('upload-aborted', self.server_id))
            return False
        self._relay(end=True, wait=True)
        self.cloud.calls.append(('upload-done', self.server_id, self.bytes_sent))
        return False

    def write(self, data):
        self.held += data
        self.bytes_sent += len(data)
        self._relay(end=False, wait=len(self.held) > HOLD_BYTES)

    def bandwidth(self):
        return 100e6

    def _relay(self, end, wait):
        """The held bytes into the inbox, in RPC-sized pieces; kept while it is not open (unless `wait`)."""
        deadline = time.monotonic() + WAIT_READY_SECONDS
        while self.held or end:
            piece = bytes(self.held[:handoff_rpc.RELAY_BYTES])
            last = end and len(piece) == len(self.held)
            status = self.cloud.receive(self.server_id, self.handoff_id, self.offset, piece, last)
            if status['state'] != inbox_mod.WAITING:
                del self.held[:len(piece)]
                self.offset += len(piece)
                if last:
                    return
                continue
            if not wait:
                return
            if time.monotonic() > deadline:
                self.cloud.abort(self.server_id, self.handoff_id, 'not ready in time')
                raise destination_client.HandoffDestinationError(
                    'residue upload to server %s: not ready for the residue after %d s (HTTP 409)'
                    % (self.server_id, WAIT_READY_SECONDS), refused=True)
            time.sleep(POLL_SECONDS)


class FakeDestination:
    """One handoff's view of the FakeDestinationCloud (the Destination interface)."""

    key_manager_url = None      # no Barbican: the residue is not encrypted (tests/unit/handoff covers it)

    def __init__(self, cloud, destination, credential, **kwargs):
        self.cloud = cloud
        cloud.credentials.append(credential)
        cloud.calls.append(('init', dict(destination), dict(kwargs)))
        self.auth_url = destination.get('auth_url') or (kwargs.get('known_clouds') or {}).get(
            destination.get('cloud')) or 'https://discovered.example/v3'
        self._step('init')

    def _step(self, name, *args):
        if name != 'init':
            self.cloud.calls.append((name,) + args)
        if self.cloud.fail_at == name:
            raise destination_client.HandoffDestinationError(
                'destination %s refused %s (fake)' % (self.auth_url, name), refused=True)

    def connect(self):
        self._step('connect')

    def find_base_image(self, base_id):
        self._step('find_base_image', base_id)
        for image in self.cloud.glance.images.values():
            properties = image.get('properties') or {}
            if properties.get(props.CLOUDLET_TYPE) == props.BASE_DISK and \
                    properties.get(props.BASE_ID) == base_id:
                return {'id': image['id']}
        raise destination_client.HandoffDestinationError('no base image %s' % base_id, refused=True)

    def pick_flavor(self, memory_mb, vcpus, flavor_id=None):
        self._step('pick_flavor', memory_mb, vcpus, flavor_id)
        return {'id': flavor_id or self.cloud.flavor_id}

    def create_server(self, name, image_id, flavor_id, metadata, networks='none'):
        self._step('create_server', name, image_id, flavor_id, dict(metadata), networks)
        server = self.cloud.api.post_server({'server': {
            'name': name, 'imageRef': image_id, 'flavorRef': flavor_id, 'networks': networks,
            'metadata': dict(metadata)}})
        self.cloud.servers_created.append(server['id'])
        return server['id']

    def wait_active(self, server_id, timeout, poll=0.2):
        self.cloud.calls.append(('wait_active', server_id, timeout))
        deadline = time.monotonic() + min(timeout, 60)
        while True:
            server = self.cloud.api.get_server(server_id)
            if server['status'] == 'ACTIVE':
                return server
            if server['status'] == 'ERROR':
                raise destination_client.HandoffDestinationError(
                    'destination %s: server %s is ERROR: %s' % (
                        self.auth_url, server_id, (server.get('fault') or {}).get('message')),
                    refused=True)
            if time.monotonic() > deadline:
                raise destination_client.HandoffDestinationError(
                    'destination server %s is not ACTIVE after %d s' % (server_id, timeout))
            time.sleep(poll)

    def residue_status(self, server_id, handoff_id, timeout=None):
        self.cloud.calls.append(('residue_status', server_id, handoff_id))
        return self.cloud.status(server_id, handoff_id)

    def wait_ready(self, server_id, handoff_id, timeout, poll=0.2):
        """Poll the inbox of the server's compute host, as DestinationClient.wait_ready polls nova-api."""
        self._step('wait_ready', server_id, handoff_id, timeout)
        deadline = time.monotonic() + min(timeout, 60)
        while True:
            status = self.cloud.status(server_id, handoff_id)
            if status['state'] == inbox_mod.FAILED:
                raise destination_client.HandoffDestinationError(
                    'destination %s: server %s gave the residue up: %s'
                    % (self.auth_url, server_id, status['reason']), refused=True)
            if status['state'] != inbox_mod.WAITING:
                return status
            if time.monotonic() > deadline:
                raise destination_client.HandoffDestinationError(
                    'destination %s: server %s not ready for the residue after %d s'
                    % (self.auth_url, server_id, timeout))
            time.sleep(poll)

    def residue_upload(self, server_id, handoff_id):
        self.cloud.calls.append(('residue_upload', server_id, handoff_id))
        upload = FakeUpload(self.cloud, server_id, handoff_id)
        self.cloud.uploads.append(upload)
        return upload

    def project_network(self):
        """No network of the project's own: the NICs are replaced (the e2e handoff carries them)."""
        self._step('project_network')
        return None

    def delete_port(self, port_id):
        self.cloud.calls.append(('delete_port', port_id))
        return True

    def delete_floating_ip(self, floating_ip_id):
        self.cloud.calls.append(('delete_floating_ip', floating_ip_id))
        return True

    def wait_gone(self, server_id, timeout, poll=0.5):
        """Poll the server until nova no longer shows it, as DestinationClient.wait_gone does."""
        self.cloud.calls.append(('wait_gone', server_id))
        deadline = time.monotonic() + min(timeout, 60)
        while time.monotonic() < deadline:
            try:
                self.cloud.api.get_server(server_id)
            except api_client.OpenStackApiNotFoundException:
                return True
            time.sleep(0.2)
        raise destination_client.HandoffDestinationError('destination server %s is not deleted' % server_id)

    def delete_server(self, server_id):
        self.cloud.calls.append(('delete_server', server_id))
        try:
            self.cloud.api.delete_server(server_id)
        except api_client.OpenStackApiNotFoundException:
            pass
        return True         # deleted, or gone already (the real one's answer)


class FakeDestinationCloud:
    """The destination cloud: the test's nova and Glance fixture, seen through FakeDestination.

    `computes`: the test's compute services by host name (nova's
    `self.computes`, which a restart updates): the residue goes to the
    CloudletDriver of the destination server's host, as nova-api's RPC relay
    sends it there.
    """

    def __init__(self, api, glance, flavor_id, computes):
        self.api, self.glance, self.flavor_id = api, glance, flavor_id
        self.computes = computes
        self.fail_at = None
        self.calls = []
        self.credentials = []
        self.servers_created = []
        self.uploads = []

    def __call__(self, destination, credential, **kwargs):
        return FakeDestination(self, destination, credential, **kwargs)

    def names(self):
        return [call[0] for call in self.calls]

    # -- what nova-api does for GET/PUT /servers/{id}/cloudlet-residue (api_extensions.residue) --

    @staticmethod
    def _instance(server_id):
        try:
            # Not expected_attrs=['fault']: nova 34's get_by_uuid would join a column
            # models.Instance does not have (AttributeError); instance.fault lazy-loads.
            return objects.Instance.get_by_uuid(nova_context.get_admin_context(), server_id)
        except exception.InstanceNotFound:
            return None

    def inboxes(self, server_id):
        """The Inboxes of the server's compute host; None while it has no host."""
        instance = self._instance(server_id)
        if instance is None or not instance.host or instance.host not in self.computes:
            return None
        return self.computes[instance.host].manager.driver._inboxes

    def _build_failed(self, server_id):
        """The API's 409 for a server that failed to build (or is gone)."""
        instance = self._instance(server_id)
        if instance is None:
            raise destination_client.HandoffDestinationError(
                'server %s not found (HTTP 404)' % server_id, refused=True)
        if instance.vm_state != vm_states.BUILDING:
            fault = instance.fault.message if instance.fault else 'no fault'
            raise destination_client.HandoffDestinationError(
                'server %s is %s: %s (HTTP 409)' % (server_id, instance.vm_state, fault), refused=True)

    def status(self, server_id, handoff_id):
        self._build_failed(server_id)
        inboxes = self.inboxes(server_id)
        if inboxes is None:
            return {'state': inbox_mod.WAITING, 'bytes_received': 0, 'reason': None}
        return inboxes.status(handoff_id)

    def receive(self, server_id, handoff_id, offset, data, end):
        """One `residue_data` call of the relay: the inbox's status ('waiting': nothing taken)."""
        inboxes = self.inboxes(server_id)
        if inboxes is None:
            self._build_failed(server_id)
            return {'state': inbox_mod.WAITING, 'bytes_received': 0, 'reason': None}
        try:
            status = inboxes.receive(handoff_id, offset, data, end)
        except inbox_mod.InboxError as error:
            # The relay answers 409 and aborts the inbox.
            self.abort(server_id, handoff_id, str(error))
            raise destination_client.HandoffDestinationError(
                'residue upload to server %s: %s (HTTP 409)' % (server_id, error), refused=True) from None
        if status['state'] == inbox_mod.WAITING:
            self._build_failed(server_id)
        return status

    def abort(self, server_id, handoff_id, reason):
        """The relay's `residue_abort` cast: the body broke off."""
        self.calls.append(('residue_abort', server_id, reason))
        inboxes = self.inboxes(server_id)
        if inboxes is not None:
            inboxes.abort(handoff_id, reason)


class FakeLiveResidue:
    """Streams a prepared overlay instead of migrating the VM (see the module doc)."""

    def __init__(self, factory, domain, base, workdir, **kwargs):
        self.factory, self.domain, self.base, self.workdir = factory, domain, base, workdir
        self.kwargs = kwargs
        self.calls = []
        self.paused_by_us = False
        self.nics_during_run = None
        self.cancelled = threading.Event()

    def run(self, out, before_memory=None):
        self.calls.append('run')
        self.nics_during_run = list(getattr(self.domain, '_fake_ifaces', []))
        blob = self.factory.blob
        half = len(blob) // 2
        out.write(blob[:half])              # the disk pre-copy
        if self.factory.block is not None:
            self.factory.block.set()
            if not self.cancelled.wait(30):
                raise AssertionError('FakeLiveResidue was never cancelled')
            raise RuntimeError('the handoff was cancelled')
        if before_memory is not None:
            self.calls.append('before_memory')
            before_memory()                 # the destination is ready for the memory
        self.domain.suspend()               # QEMU pauses the VM for the last iteration
        self.paused_by_us = True
        paused_at = time.monotonic()
        if self.factory.fail is not None:
            raise self.factory.fail
        out.write(blob[half:])
        return types.SimpleNamespace(
            bytes_out=len(blob), paused_at=paused_at, precopy_seconds=0.5, final_seconds=0.01,
            codecs={'zstd': 1}, disk_chunks_sent=3, disk_chunks_resent=0,
            memory_stream_bytes=len(blob))

    def cancel(self):
        self.calls.append('cancel')
        self.cancelled.set()

    def resume_source(self):
        self.calls.append('resume_source')
        if self.paused_by_us:
            self.domain.resume()
            self.paused_by_us = False


class FakeLiveResidueFactory:
    """Stands in for the LiveResidue class; `blob` is what every residue streams."""

    def __init__(self, blob=b''):
        self.blob = blob
        self.fail = None            # an exception raised after the VM paused
        self.block = None           # a threading.Event: run() blocks after setting it, until cancel
        self.made = []

    def __call__(self, domain, base, workdir, **kwargs):
        residue = FakeLiveResidue(self, domain, base, workdir, **kwargs)
        self.made.append(residue)
        return residue
