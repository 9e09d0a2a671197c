"""Fakes for handoff tests on nova's functional harness.

- `FakeDestinationCloud`: the destination cloud of a handoff, played by the
  test's own nova (API, Glance fixture, CloudletDriver compute): the fake
  `Destination` it hands out creates the residue image in the Glance fixture
  (queued, as Glance does), "uploads" into it (saving, then active with the
  data) and creates the destination server through the test's nova API, so
  the destination side (CloudletDriver.spawn waiting for the residue image)
  runs for real. Steps can be made to refuse (`fail_at`).
- `FakeLiveResidue`: instead of QEMU's migration, writes a prepared overlay
  into the upload, pausing the fake libvirt domain before the last part (as
  the engine leaves the VM paused); `resume_source` resumes it. It can fail
  after the first part, or block until cancelled.

Both record what they were asked, for assertions. They replace the names
`cloudlet_nova.handoff.sender` uses (`destination_mod.Destination`,
`engine_handoff.LiveResidue`).
"""

import threading
import time
import types

from nova.tests.functional.api import client as api_client

from cloudlet_glance import properties as props
from cloudlet_nova.handoff import destination as destination_mod

HANDOFF_ID_KEY = 'cloudlet_handoff_id'


class FakeUpload:
    def __init__(self, cloud, image_id):
        self.cloud, self.image_id = cloud, image_id
        self.data = bytearray()
        self.bytes_sent = 0

    def __enter__(self):
        self.cloud.glance.images[self.image_id]['status'] = 'saving'
        return self

    def __exit__(self, exc_type, exc, tb):
        image = self.cloud.glance.images.get(self.image_id)
        if exc_type is not None:
            self.cloud.calls.append(('upload-aborted', self.image_id))
            if image is not None:
                image['status'] = 'queued'     # Glance drops a broken upload's data
            return False
        self.cloud.glance._imagedata[self.image_id] = bytes(self.data)
        image.update(status='active', size=len(self.data))
        self.cloud.calls.append(('upload-done', self.image_id, len(self.data)))
        return False

    def write(self, data):
        self.data += data
        self.bytes_sent += len(data)

    def bandwidth(self):
        return 100e6


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
            raise destination_mod.HandoffDestinationError(
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
        raise destination_mod.HandoffDestinationError('no base image %s' % base_id, refused=True)

    def pick_flavor(self, memory_mb, vcpus, flavor_id=None):
        self._step('pick_flavor', memory_mb, vcpus, flavor_id)
        return {'id': flavor_id or self.cloud.flavor_id}

    def create_residue_image(self, name, base_id, base_name, handoff_id):
        self._step('create_residue_image', name, base_id, base_name, handoff_id)
        image = self.cloud.glance.create(None, {
            'name': name, 'status': 'queued', 'disk_format': 'raw', 'container_format': 'bare',
            'visibility': 'private', 'is_public': False, 'os_hidden': True, 'size': 0,
            'properties': {props.CLOUDLET_TYPE: props.OVERLAY, props.BASE_ID: base_id,
                           props.BASE_NAME: base_name, HANDOFF_ID_KEY: handoff_id}})
        self.cloud.images_created.append(image['id'])
        return image['id']

    def upload(self, image_id):
        self.cloud.calls.append(('upload', image_id))
        return FakeUpload(self.cloud, image_id)

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
                raise destination_mod.HandoffDestinationError(
                    'destination %s: server %s is ERROR: %s' % (
                        self.auth_url, server_id, (server.get('fault') or {}).get('message')),
                    refused=True)
            if time.monotonic() > deadline:
                raise destination_mod.HandoffDestinationError(
                    'destination server %s is not ACTIVE after %d s' % (server_id, timeout))
            time.sleep(poll)

    def delete_server(self, server_id):
        self.cloud.calls.append(('delete_server', server_id))
        try:
            self.cloud.api.delete_server(server_id)
        except api_client.OpenStackApiNotFoundException:
            pass

    def delete_image(self, image_id):
        self.cloud.calls.append(('delete_image', image_id))
        self.cloud.glance.images.pop(image_id, None)
        self.cloud.glance._imagedata.pop(image_id, None)


class FakeDestinationCloud:
    """The destination cloud: the test's nova and Glance fixture, seen through FakeDestination."""

    def __init__(self, api, glance, flavor_id):
        self.api, self.glance, self.flavor_id = api, glance, flavor_id
        self.fail_at = None
        self.calls = []
        self.credentials = []
        self.images_created = []
        self.servers_created = []

    def __call__(self, destination, credential, **kwargs):
        return FakeDestination(self, destination, credential, **kwargs)

    def names(self):
        return [call[0] for call in self.calls]


class FakeLiveResidue:
    """Streams a prepared overlay instead of migrating the VM (see the module doc)."""

    def __init__(self, factory, domain, base, workdir, **kwargs):
        self.factory, self.domain, self.base, self.workdir = factory, domain, base, workdir
        self.kwargs = kwargs
        self.calls = []
        self.paused_by_us = False
        self.nics_during_run = None
        self.cancelled = threading.Event()

    def run(self, out):
        self.calls.append('run')
        self.nics_during_run = list(getattr(self.domain, '_fake_ifaces', []))
        blob = self.factory.blob
        half = len(blob) // 2
        out.write(blob[:half])
        if self.factory.block is not None:
            self.factory.block.set()
            if not self.cancelled.wait(30):
                raise AssertionError('FakeLiveResidue was never cancelled')
            raise RuntimeError('the handoff was cancelled')
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
