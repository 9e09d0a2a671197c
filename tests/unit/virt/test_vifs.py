"""cloudlet_nova.virt.vifs: taps made by os-vif for cloudlet instances, the early plug, the wiring wait."""

import types
from unittest import mock

import fixtures
from lxml import etree
from oslo_utils.fixture import uuidsentinel as uuids

import nova.conf
from nova import exception
from nova.network import model as network_model
from nova.network import os_vif_util
from nova import objects
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.virt.libvirt import vif as libvirt_vif

from cloudlet_nova.virt import vifs

CONF = nova.conf.CONF


def network():
    """A network as nova's own VIF tests build it (nova/tests/unit/virt/libvirt/test_vif.py)."""
    subnet = network_model.Subnet(cidr='101.168.1.0/24', dns=[network_model.IP(address='8.8.8.8')],
                                  gateway=network_model.IP(address='101.168.1.1', type='gateway'),
                                  ips=[network_model.FixedIP(address='101.168.1.9')], routes=None,
                                  dhcp_server='191.168.1.1')
    return network_model.Network(id=uuids.network, bridge='br-int', label=None, subnets=[subnet],
                                 bridge_interface=None, vlan=99, mtu=1450)


def ovs_vif(vif_id=uuids.vif, address='ca:fe:de:ad:be:ef', **kwargs):
    kwargs.setdefault('details', {network_model.VIF_DETAILS_PORT_FILTER: True})
    kwargs.setdefault('devname', 'tap%s' % vif_id[:11])
    kwargs.setdefault('type', network_model.VIF_TYPE_OVS)
    return network_model.VIF(id=vif_id, address=address, network=network(), ovs_interfaceid=vif_id, **kwargs)


def hybrid_vif():
    return ovs_vif(details={network_model.VIF_DETAILS_PORT_FILTER: False,
                            network_model.VIF_DETAILS_OVS_HYBRID_PLUG: True})


def direct_vif():
    return ovs_vif(vnic_type=network_model.VNIC_TYPE_DIRECT, profile={'pci_slot': '0000:0a:00.1'})


def bridge_vif():
    return ovs_vif(type=network_model.VIF_TYPE_BRIDGE, details={})


def os_vif_tap(vif):
    return vif['details'].get(network_model.VIF_DETAILS_OVS_CREATE_TAP) is True and vif['delegate_create'] is True


class TransformTest(test.NoDBTestCase):

    def test_an_ovs_port_gets_a_tap_made_by_os_vif(self):
        original = ovs_vif()
        vif = vifs.with_os_vif_tap(original)
        self.assertIsInstance(vif, network_model.VIF)
        self.assertTrue(os_vif_tap(vif))
        # Everything else as it was, the port filter detail included.
        self.assertTrue(vif['details'][network_model.VIF_DETAILS_PORT_FILTER])
        for key in ('id', 'address', 'network', 'type', 'devname', 'ovs_interfaceid', 'vnic_type', 'active',
                    'profile', 'preserve_on_delete', 'meta'):
            self.assertEqual(original[key], vif[key], key)
        self.assertEqual({network_model.VIF_DETAILS_PORT_FILTER: True, 'ovs_create_tap': True},
                         vif['details'])

    def test_the_original_is_not_altered(self):
        original = ovs_vif()
        details = original['details']
        vif = vifs.with_os_vif_tap(original)
        self.assertIsNot(original, vif)
        self.assertIsNot(details, vif['details'])
        self.assertEqual({network_model.VIF_DETAILS_PORT_FILTER: True}, original['details'])
        self.assertIs(details, original['details'])
        self.assertFalse(original['delegate_create'])
        self.assertFalse(os_vif_tap(original))

    def test_a_port_without_details(self):
        original = ovs_vif(details=None)
        vif = vifs.with_os_vif_tap(original)
        self.assertTrue(os_vif_tap(vif))
        self.assertEqual({}, original['details'])

    def test_idempotent(self):
        once = vifs.with_os_vif_tap(ovs_vif())
        twice = vifs.with_os_vif_tap(once)
        self.assertEqual(once, twice)
        self.assertEqual(once['details'], twice['details'])
        self.assertTrue(os_vif_tap(twice))

    def test_other_ports_are_unchanged(self):
        for original in (hybrid_vif(), direct_vif(), bridge_vif(),
                         ovs_vif(vnic_type=network_model.VNIC_TYPE_VIRTIO_FORWARDER),
                         ovs_vif(type=network_model.VIF_TYPE_VHOSTUSER, details={}),
                         ovs_vif(type=None)):
            vif = vifs.with_os_vif_tap(original)
            self.assertIs(original, vif)
            self.assertFalse(os_vif_tap(vif))
            self.assertNotIn(network_model.VIF_DETAILS_OVS_CREATE_TAP, vif['details'])

    def test_none(self):
        self.assertIsNone(vifs.with_os_vif_tap(None))
        self.assertIsNone(vifs.with_os_vif_taps(None))

    def test_network_info_of_copies(self):
        ovs, hybrid = ovs_vif(), hybrid_vif()
        original = network_model.NetworkInfo([ovs, hybrid])
        network_info = vifs.with_os_vif_taps(original)
        self.assertIsInstance(network_info, network_model.NetworkInfo)
        self.assertIsNot(original, network_info)
        self.assertEqual(2, len(network_info))
        self.assertTrue(os_vif_tap(network_info[0]))
        self.assertIsNot(ovs, network_info[0])
        self.assertIs(hybrid, network_info[1])
        self.assertEqual([ovs, hybrid], list(original))          # unchanged
        self.assertFalse(os_vif_tap(original[0]))
        self.assertEqual([], list(vifs.with_os_vif_taps(network_model.NetworkInfo())))
        # A plain list, as some callers pass, gives a NetworkInfo too.
        self.assertIsInstance(vifs.with_os_vif_taps([ovs_vif()]), network_model.NetworkInfo)
        # Of the transformed: the same again.
        self.assertEqual(list(network_info), list(vifs.with_os_vif_taps(network_info)))


class AsPluggedTest(test.NoDBTestCase):
    """detach_interface needs the VIF as the domain has it, for nova to find the device."""

    def domain(self, kind, mac='ca:fe:de:ad:be:ef'):
        return ("<domain><devices><interface type='%s'><mac address='%s'/></interface>"
                "</devices></domain>" % (kind, mac))

    def test_a_tap_made_by_os_vif(self):
        self.assertTrue(os_vif_tap(vifs.as_plugged(ovs_vif(), self.domain('ethernet'))))

    def test_a_tap_libvirt_made_before_this_release_stays_libvirt_s(self):
        original = ovs_vif()
        self.assertIs(original, vifs.as_plugged(original, self.domain('bridge', mac='CA:FE:DE:AD:BE:EF')))

    def test_an_interface_the_domain_lacks_is_os_vif_s(self):
        self.assertTrue(os_vif_tap(vifs.as_plugged(ovs_vif(), self.domain('bridge', mac='fa:16:3e:00:00:09'))))


class NovaConfigTest(test.NoDBTestCase):
    """What nova's own code makes of a transformed VIF: the libvirt interface, the os-vif object."""

    def setUp(self):
        super().setUp()
        self.useFixture(nova_fixtures.LibvirtFixture(stub_os_vif=False))
        self.instance = objects.Instance(id=1, uuid=uuids.instance, project_id=723)
        self.flavor = objects.Flavor(name='m1.small', memory_mb=128, vcpus=1, root_gb=0, ephemeral_gb=0,
                                     swap=0, extra_specs={}, deleted_at=None, deleted=0, created_at=None,
                                     flavorid=1, is_public=True, vcpu_weight=None, id=2, disabled=False,
                                     rxtx_factor=1.0)

    def interface(self, vif):
        conf = libvirt_vif.LibvirtGenericVIFDriver().get_config(
            self.instance, vif, objects.ImageMeta.from_dict({}), self.flavor, CONF.libvirt.virt_type)
        return etree.fromstring(conf.to_xml())

    def test_libvirt_interface_is_ethernet_on_an_unmanaged_tap(self):
        vif = ovs_vif()
        iface = self.interface(vifs.with_os_vif_tap(vif))
        self.assertEqual('ethernet', iface.get('type'))
        target = iface.find('target')
        self.assertEqual(vif['devname'], target.get('dev'))
        self.assertEqual('no', target.get('managed'))
        self.assertIsNone(iface.find('virtualport'))          # os-vif plugs it into OVS, not libvirt
        self.assertIsNone(iface.find('source'))
        self.assertEqual(vif['address'], iface.find('mac').get('address'))

    def test_untransformed_the_interface_is_libvirt_s_bridge(self):
        # What the transform changes: nova's default for the same port.
        iface = self.interface(ovs_vif())
        self.assertEqual('bridge', iface.get('type'))
        self.assertEqual('br-int', iface.find('source').get('bridge'))
        self.assertEqual('openvswitch', iface.find('virtualport').get('type'))
        self.assertIsNone(iface.find('target').get('managed'))

    def test_a_hybrid_port_stays_on_its_linux_bridge(self):
        iface = self.interface(vifs.with_os_vif_tap(hybrid_vif()))
        self.assertEqual('bridge', iface.get('type'))
        self.assertTrue(iface.find('source').get('bridge').startswith('qbr'))
        self.assertIsNone(iface.find('target').get('managed'))

    def test_os_vif_creates_the_port_and_the_tap(self):
        vif = vifs.with_os_vif_tap(ovs_vif())
        os_vif = os_vif_util.nova_to_osvif_vif(vif)
        self.assertEqual('VIFOpenVSwitch', os_vif.obj_name())
        self.assertEqual('ovs', os_vif.plugin)
        self.assertEqual('br-int', os_vif.bridge_name)
        self.assertEqual(vif['devname'], os_vif.vif_name)
        self.assertIs(True, os_vif.port_profile.create_port)
        self.assertIs(True, os_vif.port_profile.create_tap)
        self.assertEqual(vif['id'], os_vif.port_profile.interface_id)

    def test_untransformed_os_vif_creates_neither(self):
        os_vif = os_vif_util.nova_to_osvif_vif(ovs_vif())
        self.assertIs(False, os_vif.port_profile.create_port)
        self.assertIs(False, os_vif.port_profile.create_tap)


class PlugEarlyTest(test.NoDBTestCase):

    def test_plugs_through_the_driver(self):
        driver = mock.Mock()
        instance = objects.Instance(uuid=uuids.instance)
        network_info = network_model.NetworkInfo([ovs_vif()])
        vifs.plug_early(driver, instance, network_info)
        driver.plug_vifs.assert_called_once_with(instance, network_info)

    def test_a_failed_plug_is_raised(self):
        driver = mock.Mock()
        driver.plug_vifs.side_effect = exception.VirtualInterfacePlugException('ovsdb is down')
        self.assertRaises(exception.VirtualInterfacePlugException, vifs.plug_early, driver,
                          objects.Instance(uuid=uuids.instance), network_model.NetworkInfo([ovs_vif()]))


class FakeNeutron:
    """show_port answers from a list of statuses per port (the last one repeats)."""

    def __init__(self, **statuses):
        self.statuses = {port: list(values) for port, values in statuses.items()}
        self.calls = []

    def show_port(self, port_id, fields=None):
        self.calls.append((port_id, fields))
        values = self.statuses[port_id]
        status = values.pop(0) if len(values) > 1 else values[0]
        return {'port': {'status': status}}


class WaitWiredTest(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.context = mock.sentinel.context
        self.instance = objects.Instance(uuid=uuids.instance)
        self.neutron = FakeNeutron()
        self.get_client = self.useFixture(fixtures.MockPatch('nova.network.neutron.get_client',
                                                             return_value=self.neutron)).mock
        self.flags(vif_plugging_timeout=5, vif_plugging_is_fatal=True)

    def network_info(self, *actives):
        return network_model.NetworkInfo(
            [ovs_vif(vif_id=getattr(uuids, 'port%d' % i), address='fa:16:3e:00:00:%02x' % i, active=active)
             for i, active in enumerate(actives)])

    def test_an_active_port_is_marked_active(self):
        network_info = self.network_info(False)
        self.neutron.statuses = {uuids.port0: ['ACTIVE']}
        vifs.wait_wired(self.context, self.instance, network_info, poll=0)
        self.assertIs(True, network_info[0]['active'])
        self.get_client.assert_called_once_with(self.context, admin=True)
        self.assertEqual([(uuids.port0, ['status'])], self.neutron.calls)

    def test_polls_again_while_down(self):
        network_info = self.network_info(False, False)
        self.neutron.statuses = {uuids.port0: ['DOWN', 'DOWN', 'ACTIVE'], uuids.port1: ['BUILD', 'ACTIVE']}
        vifs.wait_wired(self.context, self.instance, network_info, timeout=30, poll=0.001)
        self.assertEqual([True, True], [vif['active'] for vif in network_info])
        # An active port is asked no more.
        self.assertEqual([uuids.port0, uuids.port1, uuids.port0, uuids.port1, uuids.port0],
                         [port for port, fields in self.neutron.calls])

    def test_only_the_ports_down_are_asked(self):
        network_info = self.network_info(True, False)
        self.neutron.statuses = {uuids.port1: ['ACTIVE']}
        vifs.wait_wired(self.context, self.instance, network_info, poll=0)
        self.assertEqual([uuids.port1], [port for port, fields in self.neutron.calls])
        self.assertEqual([True, True], [vif['active'] for vif in network_info])

    def test_nothing_to_do_when_all_are_active(self):
        network_info = self.network_info(True, True)
        vifs.wait_wired(self.context, self.instance, network_info)
        vifs.wait_wired(self.context, self.instance, network_model.NetworkInfo())
        self.get_client.assert_not_called()
        self.assertEqual([], self.neutron.calls)

    def test_no_timeout_returns_at_once(self):
        # [DEFAULT] vif_plugging_timeout = 0: nova waits for no event either.
        self.flags(vif_plugging_timeout=0)
        network_info = self.network_info(False)
        vifs.wait_wired(self.context, self.instance, network_info)
        vifs.wait_wired(self.context, self.instance, network_info, timeout=0)
        self.get_client.assert_not_called()
        self.assertIs(False, network_info[0]['active'])

    def test_the_default_timeout_is_nova_s(self):
        self.flags(vif_plugging_timeout=1)
        self.neutron.statuses = {uuids.port0: ['DOWN']}
        network_info = self.network_info(False)
        clock = types.SimpleNamespace(monotonic=mock.Mock(side_effect=[100.0, 100.5, 101.0]), sleep=mock.Mock())
        with mock.patch.object(vifs, 'time', clock):
            self.assertRaises(exception.VirtualInterfaceCreateException, vifs.wait_wired, self.context,
                              self.instance, network_info, poll=0.25)
        clock.sleep.assert_called_once_with(0.25)
        self.assertEqual(2, len(self.neutron.calls))

    def test_a_fatal_timeout_fails_the_spawn(self):
        network_info = self.network_info(False, False)
        self.neutron.statuses = {uuids.port0: ['ACTIVE'], uuids.port1: ['DOWN']}
        self.assertRaises(exception.VirtualInterfaceCreateException, vifs.wait_wired, self.context,
                          self.instance, network_info, timeout=0.05, poll=0.01)
        self.assertEqual([True, False], [vif['active'] for vif in network_info])
        self.assertGreater(len(self.neutron.calls), 2)      # asked again until the deadline

    def test_a_non_fatal_timeout_leaves_the_port_to_nova(self):
        self.flags(vif_plugging_is_fatal=False)
        network_info = self.network_info(False)
        self.neutron.statuses = {uuids.port0: ['DOWN']}
        with mock.patch.object(vifs.LOG, 'warning') as warning:
            vifs.wait_wired(self.context, self.instance, network_info, timeout=0.05, poll=0.01)
        self.assertIs(False, network_info[0]['active'])
        warning.assert_called_once()
        self.assertIn(uuids.port0, warning.call_args[0][1])
