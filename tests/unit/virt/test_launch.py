"""cloudlet_nova.virt.launch: what a spawn restores, the flavor-fit check, overlay URL rules."""

import types

import nova.conf
from nova import test

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
        launch.check_overlay_url('http://10.0.0.5:8080/a.clo')
        exc = self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url,
                                'http://169.254.169.254/latest')
        self.assertIn('host 169.254.169.254 is not allowed', exc.format_message())

    def test_no_host(self):
        self.assertRaises(faults.CloudletSpawnFailed, launch.check_overlay_url, 'http:///a.clo')
