"""cloudlet_nova.virt.launch: what a spawn restores, the flavor-fit check, overlay URL rules."""

import io
import os
import threading
import time
import types

import nova.conf
from nova import test

from cloudlet_engine import apply
from cloudlet_engine import errors
from cloudlet_glance import properties as props
from cloudlet_nova import conf as cloudlet_conf
from cloudlet_nova.handoff import inbox as inbox_mod
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import launch

CONF = nova.conf.CONF


def sysmeta(**image_props):
    meta = {props.system_metadata_key(props.CLOUDLET_TYPE): props.BASE_DISK}
    meta.update({props.system_metadata_key(k): v for k, v in image_props.items()})
    return meta


def instance(metadata=None, system_metadata=None, flavor=None):
    return types.SimpleNamespace(
        uuid='uuid-1', image_ref='base-image', metadata=metadata or {},
        system_metadata=sysmeta() if system_metadata is None else system_metadata,
        flavor=flavor or types.SimpleNamespace(name='m1.cloudlet', memory_mb=256, vcpus=1))


class FakeBaseVM:
    def __init__(self, memory_kib=262144, vcpus=1, name='test-base'):
        self.abi = {'memory_kib': memory_kib, 'vcpus': vcpus}
        self.name, self.base_id = name, 'ab' * 32


class LaunchTestCase(test.NoDBTestCase):

    def setUp(self):
        cloudlet_conf.register_opts(CONF)
        super().setUp()


class FlavorFitTest(LaunchTestCase):

    def test_fits(self):
        launch.check_flavor(instance().flavor, FakeBaseVM())
        self.assertIsNone(launch.flavor_fit_error(instance().flavor, 'b', 256, 1))

    def test_memory_differs(self):
        flavor = types.SimpleNamespace(name='m1.small', memory_mb=2048, vcpus=1)
        exc = self.assertRaises(faults.CloudletFlavorMismatch, launch.check_flavor, flavor, FakeBaseVM())
        self.assertEqual('flavor m1.small has 2048 MB / 1 vCPUs; base test-base needs 256 MB / 1 vCPUs',
                         exc.format_message())

    def test_vcpus_differ(self):
        exc = self.assertRaises(faults.CloudletFlavorMismatch, launch.check_flavor,
                                instance().flavor, FakeBaseVM(vcpus=4))
        self.assertIn('base test-base needs 256 MB / 4 vCPUs', exc.format_message())

    def test_hint_from_image_properties_before_any_download(self):
        inst = instance(system_metadata=sysmeta(**{props.MEMORY_MB: '512', props.VCPUS: '1',
                                                   props.BASE_NAME: 'big-base'}))
        exc = self.assertRaises(faults.CloudletFlavorMismatch, launch.check_flavor_hint, inst)
        self.assertEqual('flavor m1.cloudlet has 256 MB / 1 vCPUs; base big-base needs 512 MB / 1 vCPUs',
                         exc.format_message())

    def test_no_hint_no_check(self):
        launch.check_flavor_hint(instance())
        launch.check_flavor_hint(instance(system_metadata=sysmeta(**{props.MEMORY_MB: 'x'})))


class PlanTest(LaunchTestCase):

    def test_ordinary_instance(self):
        self.assertIsNone(launch.plan(instance(system_metadata={})))

    def test_overlay_on_an_ordinary_image_is_refused(self):
        exc = self.assertRaises(faults.CloudletSpawnFailed, launch.plan,
                                instance({props.META_OVERLAY_ID: 'x'}, system_metadata={}))
        self.assertIn('image base-image is not a cloudlet base disk', exc.format_message())

    def test_base_alone(self):
        self.assertEqual(launch.Plan('base-image', launch.BASE), launch.plan(instance()))

    def test_glance_overlay(self):
        plan = launch.plan(instance({props.META_OVERLAY_ID: 'overlay-1'}))
        self.assertEqual(launch.Plan('base-image', launch.GLANCE, 'overlay-1'), plan)
        self.assertEqual({'kind': 'glance', 'ref': 'overlay-1'}, plan.source_record())

    def test_url_overlay(self):
        plan = launch.plan(instance({props.META_OVERLAY_URL: 'https://u:p@h.example/a.clo'}))
        self.assertEqual(launch.URL, plan.kind)
        self.assertEqual('https://***@h.example/a.clo', plan.source_record()['ref'])

    def test_both_refused(self):
        self.assertRaises(faults.CloudletSpawnFailed, launch.plan,
                          instance({props.META_OVERLAY_ID: 'o', props.META_OVERLAY_URL: 'http://h/a'}))

    def test_handoff_destination(self):
        plan = launch.plan(instance({launch.HANDOFF_ID: 'h-1'}))
        self.assertEqual(launch.Plan('base-image', launch.HANDOFF, 'h-1'), plan)
        self.assertEqual({'kind': 'handoff', 'ref': 'h-1'}, plan.source_record())

    def test_an_overlay_named_beside_a_handoff_id_is_what_is_restored(self):
        plan = launch.plan(instance({props.META_OVERLAY_ID: 'overlay-1', launch.HANDOFF_ID: 'h-1'}))
        self.assertEqual(launch.Plan('base-image', launch.GLANCE, 'overlay-1'), plan)


class OverlayURLTest(LaunchTestCase):

    def test_http_and_https(self):
        launch.check_overlay_url('http://h.example/a.clo')
        launch.check_overlay_url('https://h.example:8443/a.clo')

    def test_never_files(self):
        for url in ('file:///etc/passwd', '/etc/passwd', 'ftp://h/a', 'gopher://h/'):
            self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url, url)
        self.flags(overlay_url_schemes=['http', 'https', 'file'], group='cloudlet')
        exc = self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url, 'file:///x')
        self.assertEqual("overlay_url scheme 'file' is not allowed (allowed: http, https)",
                         exc.format_message())

    def test_schemes_narrowed_by_config(self):
        self.flags(overlay_url_schemes=['https'], group='cloudlet')
        self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url, 'http://h/a')
        launch.check_overlay_url('https://h/a')

    def test_host_allow_list(self):
        self.flags(overlay_url_allowed_hosts=['overlays.example', '10.0.0.5'], group='cloudlet')
        launch.check_overlay_url('http://OVERLAYS.example/a.clo')
        exc = self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url, 'http://8.8.8.8/a.clo')
        self.assertIn('host 8.8.8.8 is not allowed', exc.format_message())
        # The allow-list only narrows: a private address needs the outbound policy's consent too.
        exc = self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url,
                                'http://10.0.0.5:8080/a.clo')
        self.assertIn('overlay_url refused by policy: host 10.0.0.5', exc.format_message())
        self.flags(outbound_allowed_networks=['10.0.0.5/32'], group='cloudlet')
        launch.check_overlay_url('http://10.0.0.5:8080/a.clo')
        # The metadata service: refused by the policy, whatever the allow-list says.
        exc = self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url,
                                'http://169.254.169.254/latest')
        self.assertIn('overlay_url refused by policy: host 169.254.169.254', exc.format_message())

    def test_the_outbound_policy_refuses_what_is_not_public(self):
        for url in ('http://127.0.0.1:8774/', 'http://169.254.169.254/latest', 'https://[::1]/a.clo',
                    'http://[::ffff:127.0.0.1]/a.clo', 'http://[fe80::1]/a.clo', 'http://192.168.0.1/a.clo',
                    'http://100.64.0.1/a.clo', 'http://0.0.0.0:8080/a.clo', 'http://2130706433/a.clo',
                    'http://localhost:5000/v3'):
            exc = self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url, url)
            self.assertIn('overlay_url refused by policy: host ', exc.format_message())
            self.assertIn('outbound_allowed_networks', exc.format_message())
        self.flags(outbound_allowed_hosts=['localhost'], group='cloudlet')
        launch.check_overlay_url('http://localhost:5000/v3')

    def test_the_fetch_goes_through_the_policy(self):
        spawn_plan = launch.Plan('base-image', launch.URL, 'http://169.254.169.254/latest/x.clo')
        connects = []
        self.stub_out('socket.socket.connect', lambda sock, address: connects.append(address))
        exc = self.assertRaises(errors.SourceError, launch.open_overlay, None, spawn_plan)
        self.assertIn('refused by policy: host 169.254.169.254', str(exc))
        self.assertEqual([], connects)

    def test_no_host(self):
        self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url, 'http:///a.clo')


def feed(inboxes, handoff_id, pieces, timeout=10.0):
    """The relay's side: wait for the inbox to open, then send `pieces` and the end."""
    deadline = time.monotonic() + timeout
    while inboxes.status(handoff_id)['state'] == inbox_mod.WAITING:
        if time.monotonic() > deadline:
            raise AssertionError('the inbox of %s never opened' % handoff_id)
        time.sleep(0.01)
    offset = 0
    for index, piece in enumerate(pieces):
        inboxes.receive(handoff_id, offset, piece, end=index == len(pieces) - 1)
        offset += len(piece)


class Feeder(threading.Thread):
    def __init__(self, inboxes, handoff_id, pieces):
        super().__init__(daemon=True)
        self.args, self.error = (inboxes, handoff_id, pieces), None
        self.start()

    def run(self):
        try:
            feed(*self.args)
        except Exception as exc:      # noqa: BLE001 - asserted by the test
            self.error = exc


class ReceiveResidueTest(LaunchTestCase):

    def setUp(self):
        super().setUp()
        self.inboxes = inbox_mod.Inboxes()

    def test_applies_from_the_inbox_then_closes_it_received(self):
        self.flags(handoff_receive_timeout=7, group='cloudlet')
        seen = []

        def apply_from(fileobj):
            seen.append((fileobj.handoff_id, fileobj.idle_timeout,
                         self.inboxes.status('h-1')['state']))
            feed(self.inboxes, 'h-1', [b'resi', b'due'])
            return fileobj.read(), fileobj.read()

        self.assertEqual((b'residue', b''), launch.receive_residue(self.inboxes, 'h-1', apply_from))
        self.assertEqual([('h-1', 7, inbox_mod.READY)], seen)
        self.assertEqual({'state': inbox_mod.RECEIVED, 'bytes_received': 7, 'reason': None},
                         self.inboxes.status('h-1'))
        # Closed: the relay's later pieces are refused.
        self.assertRaises(inbox_mod.InboxError, self.inboxes.receive, 'h-1', 7, b'x')

    def test_a_failed_apply_closes_it_failed_with_the_reason(self):
        def apply_from(fileobj):
            fileobj.read(1)
            raise errors.CorruptOverlay('bad record 3')

        self.inboxes_receive_soon('h-1', [b'abc'])
        self.assertRaises(errors.CorruptOverlay, launch.receive_residue, self.inboxes, 'h-1', apply_from)
        status = self.inboxes.status('h-1')
        self.assertEqual(inbox_mod.FAILED, status['state'])
        self.assertEqual('overlay is corrupt: bad record 3', status['reason'])
        error = self.assertRaises(inbox_mod.InboxError, self.inboxes.receive, 'h-1', 3, b'x')
        self.assertIn('no longer received here (failed: overlay is corrupt: bad record 3)', str(error))

    def test_any_other_exception_is_named(self):
        def apply_from(fileobj):
            raise KeyboardInterrupt()

        self.assertRaises(KeyboardInterrupt, launch.receive_residue, self.inboxes, 'h-1', apply_from)
        self.assertEqual({'state': inbox_mod.FAILED, 'bytes_received': 0, 'reason': 'KeyboardInterrupt'},
                         self.inboxes.status('h-1'))

    def test_the_relay_giving_up_fails_the_apply(self):
        def apply_from(fileobj):
            self.inboxes.abort('h-1', 'the residue upload broke off after 3 bytes')
            return fileobj.read()

        error = self.assertRaises(errors.SourceError, launch.receive_residue, self.inboxes, 'h-1',
                                  apply_from)
        self.assertEqual('handoff h-1: the residue upload broke off after 3 bytes', str(error))
        self.assertEqual(inbox_mod.FAILED, self.inboxes.status('h-1')['state'])

    def test_a_second_inbox_for_the_handoff_is_refused(self):
        self.inboxes.open('h-1', 5)
        self.assertRaises(inbox_mod.InboxError, launch.receive_residue, self.inboxes, 'h-1',
                          lambda fileobj: self.fail('applied'))

    def inboxes_receive_soon(self, handoff_id, pieces):
        feeder = Feeder(self.inboxes, handoff_id, pieces)
        self.addCleanup(feeder.join, 10)


class FakeApply:
    """apply.apply_overlay: reads the whole overlay and writes into the launch dir."""

    def __init__(self, error=None):
        self.calls, self.error = [], error

    def __call__(self, base, fileobj, launch_dir, **kwargs):
        os.makedirs(launch_dir, exist_ok=True)
        data = b''
        while True:
            chunk = fileobj.read(4)
            if self.error:          # fails inside the overlay
                raise self.error
            if not chunk:
                break
            data += chunk
        with open(os.path.join(launch_dir, 'memory'), 'wb') as f:
            f.write(data)
        self.calls.append((base, data, launch_dir, kwargs))
        return apply.Launch(os.path.join(launch_dir, 'disk'), os.path.join(launch_dir, 'memory'), {},
                            overlay_bytes=len(data))


class PrepareTest(LaunchTestCase):
    """prepare() with the base fetch, RAM file, trust and apply faked: which overlay, where from."""

    def setUp(self):
        super().setUp()
        self.base = FakeBaseVM()
        self.instance_dir = self.useFixture(test.fixtures.TempDir()).path
        self.launch_dir = os.path.join(self.instance_dir, 'cloudlet-launch')
        self.inboxes = inbox_mod.Inboxes()
        self.apply = FakeApply()
        self.stub_out('cloudlet_nova.virt.launch.glance_images.NovaImages', lambda context: 'images')
        self.stub_out('cloudlet_nova.virt.launch.base_store', lambda: 'store')
        self.stub_out('cloudlet_nova.virt.launch.hostcache.fetch_base',
                      lambda images, image_id, store, progress: self.base)
        self.stub_out('cloudlet_nova.virt.launch.ram_file', lambda base, owner: 'ram')
        self.stub_out('cloudlet_nova.virt.launch.overlay_trust',
                      lambda context, inst, image: (b'k' * 32, 'verifier'))
        self.stub_out('cloudlet_nova.virt.launch.apply.apply_overlay', self.apply)

    def prepare(self, spawn_plan, inst=None):
        return launch.prepare('context', inst or instance({launch.HANDOFF_ID: 'h-1'}), spawn_plan,
                              self.instance_dir, inboxes=self.inboxes)

    def test_handoff_residue_comes_from_the_inbox(self):
        self.stub_out('cloudlet_nova.virt.launch.open_overlay',
                      lambda *args: self.fail('a handoff opens no overlay source'))
        self.stub_out('cloudlet_nova.virt.launch.overlay_image',
                      lambda *args: self.fail('a handoff has no overlay image'))
        feeder = Feeder(self.inboxes, 'h-1', [b'resid', b'ue ', b'bytes'])
        base, prepared = self.prepare(launch.Plan('base-image', launch.HANDOFF, 'h-1'))
        feeder.join(10)
        self.assertIsNone(feeder.error)
        self.assertIs(self.base, base)
        self.assertEqual(13, prepared.overlay_bytes)
        [(applied_base, data, launch_dir, kwargs)] = self.apply.calls
        self.assertIs(self.base, applied_base)
        self.assertEqual((b'residue bytes', self.launch_dir), (data, launch_dir))
        self.assertEqual((b'k' * 32, 'verifier', 'ram'), (kwargs['key'], kwargs['verifier'], kwargs['ram']))
        self.assertEqual({'state': inbox_mod.RECEIVED, 'bytes_received': 13, 'reason': None},
                         self.inboxes.status('h-1'))

    def test_a_failed_handoff_apply_fails_the_spawn_and_the_inbox(self):
        self.apply.error = errors.CorruptOverlay('bad record header')
        feeder = Feeder(self.inboxes, 'h-1', [b'abcdefgh'])
        exc = self.assertRaises(faults.CloudletSpawnFailed, self.prepare,
                                launch.Plan('base-image', launch.HANDOFF, 'h-1'))
        feeder.join(10)
        self.assertEqual('cloudlet spawn failed: overlay is corrupt: bad record header',
                         exc.format_message())
        self.assertFalse(os.path.exists(self.launch_dir))
        self.assertEqual({'state': inbox_mod.FAILED, 'bytes_received': 8,
                          'reason': 'overlay is corrupt: bad record header'}, self.inboxes.status('h-1'))

    def test_no_residue_byte_in_time_fails_the_spawn(self):
        self.flags(handoff_receive_timeout=1, group='cloudlet')
        ticks = iter(range(1000, 2000))      # a second passes at every look at the clock
        self.stub_out('cloudlet_nova.handoff.inbox.clock', lambda: float(next(ticks)))
        exc = self.assertRaises(faults.CloudletSpawnFailed, self.prepare,
                                launch.Plan('base-image', launch.HANDOFF, 'h-1'))
        self.assertIn('no residue byte for 1 s ([cloudlet] handoff_receive_timeout)', exc.format_message())
        self.assertEqual(inbox_mod.FAILED, self.inboxes.status('h-1')['state'])
        self.assertFalse(os.path.exists(self.launch_dir))

    def test_glance_overlay_is_streamed_into_the_same_apply(self):
        opened = []
        self.stub_out('cloudlet_nova.virt.launch.overlay_image',
                      lambda images, spawn_plan, base: {'id': spawn_plan.ref})
        self.stub_out('cloudlet_nova.virt.launch.open_overlay',
                      lambda images, spawn_plan: opened.append(spawn_plan.ref) or io.BytesIO(b'overlay'))
        base, prepared = self.prepare(launch.Plan('base-image', launch.GLANCE, 'overlay-1'),
                                      instance({props.META_OVERLAY_ID: 'overlay-1'}))
        self.assertEqual(['overlay-1'], opened)
        self.assertEqual(b'overlay', self.apply.calls[0][1])
        self.assertEqual(7, prepared.overlay_bytes)
        self.assertEqual(inbox_mod.WAITING, self.inboxes.status('h-1')['state'])
