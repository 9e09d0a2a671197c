"""cloudlet_nova.virt.launch: what a spawn restores, the flavor-fit check, overlay URL rules."""

import types

import nova.conf
from nova import test

from cloudlet_engine import errors
from cloudlet_glance import errors as glance_errors
from cloudlet_glance import properties as props
from cloudlet_nova import conf as cloudlet_conf
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


class FakeResidueImages:
    """Glance as the destination of a handoff sees it: the residue image's status changes per get()."""

    def __init__(self, statuses, handoff_id='h-1', data=b''):
        self.statuses = list(statuses)
        self.handoff_id, self.data = handoff_id, data
        self.gets = 0

    def image(self, status):
        image = {'id': 'residue-1', 'status': status, props.CLOUDLET_TYPE: props.OVERLAY,
                 props.BASE_ID: 'ab' * 32}
        if self.handoff_id:
            image[launch.HANDOFF_ID] = self.handoff_id
        return image

    def get(self, image_id):
        self.gets += 1
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if isinstance(status, Exception):
            raise status
        return self.image(status)

    def download(self, image_id, fileobj):
        fileobj.write(self.data)
        return len(self.data)


class FakeClock:
    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class ResidueWaitTest(LaunchTestCase):

    def setUp(self):
        super().setUp()
        self.clock = FakeClock()
        self.useFixture(test.fixtures.MonkeyPatch('cloudlet_nova.virt.launch._clock', self.clock))
        self.useFixture(test.fixtures.MonkeyPatch('cloudlet_nova.virt.launch._sleep', self.clock.sleep))

    def wait(self, images, timeout=None):
        first = images.get('residue-1')
        return launch.wait_for_residue(images, 'residue-1', first, timeout=timeout)

    def test_waits_until_active(self):
        images = FakeResidueImages(['queued', 'saving', 'saving', 'active'])
        image = self.wait(images)
        self.assertEqual('active', image['status'])
        self.assertEqual(4, images.gets)
        self.assertEqual([launch.RESIDUE_POLL_SECONDS] * 3, self.clock.sleeps)

    def test_active_at_once_does_not_poll(self):
        images = FakeResidueImages(['active'])
        self.assertEqual('active', self.wait(images)['status'])
        self.assertEqual([], self.clock.sleeps)

    def test_killed_upload_fails_the_spawn(self):
        images = FakeResidueImages(['queued', 'saving', 'killed'])
        exc = self.assertRaises(faults.CloudletSpawnFailed, self.wait, images)
        self.assertEqual('residue image residue-1 of handoff h-1 is killed: the source cloud gave up '
                         'the handoff', exc.format_message())

    def test_deleted_image_fails_the_spawn(self):
        images = FakeResidueImages(['queued', glance_errors.ImageNotFound('image residue-1 not found')])
        exc = self.assertRaises(faults.CloudletSpawnFailed, self.wait, images)
        self.assertIn('residue image residue-1 of handoff h-1 disappeared', exc.format_message())

    def test_timeout(self):
        self.flags(handoff_receive_timeout=3, group='cloudlet')
        images = FakeResidueImages(['saving'])
        exc = self.assertRaises(faults.CloudletSpawnFailed, self.wait, images)
        self.assertIn('is still saving after 3 s ([cloudlet] handoff_receive_timeout)',
                      exc.format_message())
        self.assertEqual(3.0, sum(self.clock.sleeps))

    def test_glance_hiccups_are_retried(self):
        images = FakeResidueImages(['queued', glance_errors.ImageServiceError('HTTP 503'), 'active'])
        self.assertEqual('active', self.wait(images)['status'])

    def test_hiccup_until_the_deadline_names_it(self):
        images = FakeResidueImages(['queued', glance_errors.ImageServiceError('HTTP 503')])
        exc = self.assertRaises(faults.CloudletSpawnFailed, self.wait, images, 2)
        self.assertIn('HTTP 503', exc.format_message())

    def test_open_overlay_waits_for_a_residue_then_streams_it(self):
        images = FakeResidueImages(['queued', 'uploading', 'active'], data=b'overlay bytes')
        spawn_plan = launch.Plan('base-image', launch.GLANCE, 'residue-1')
        launch.overlay_image(images, spawn_plan, FakeBaseVM())
        with launch.open_overlay(images, spawn_plan) as stream:
            self.assertEqual(b'overlay bytes', stream.read())
        self.assertEqual(2, len(self.clock.sleeps))

    def test_an_ordinary_overlay_image_is_not_waited_for(self):
        # Without cloudlet_handoff_id a queued image is not waited for (nothing is uploading it).
        images = FakeResidueImages(['queued', 'active'], handoff_id=None)
        spawn_plan = launch.Plan('base-image', launch.GLANCE, 'residue-1')
        self.assertEqual('queued', launch.overlay_image(images, spawn_plan, FakeBaseVM())['status'])
        with launch.open_overlay(images, spawn_plan) as stream:
            stream.read()
        self.assertEqual([], self.clock.sleeps)
        self.assertEqual(1, images.gets)

    def test_handoff_metadata_key_is_accepted_by_the_plan(self):
        plan = launch.plan(instance({props.META_OVERLAY_ID: 'residue-1', launch.HANDOFF_ID: 'h-1'}))
        self.assertEqual(launch.Plan('base-image', launch.GLANCE, 'residue-1'), plan)
