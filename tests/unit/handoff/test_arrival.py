"""cloudlet_nova.handoff.arrival: the destination server once its VM runs, with the NICs that came along.

nova's instance (its network info cache) and the libvirt domain are fakes
(named Fake*) that record what is done to them.
"""

import os

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

import nova.tests.unit  # noqa: E402,F401  (nova's test setup before the rest of nova)

import contextlib  # noqa: E402
import types  # noqa: E402
from unittest import mock  # noqa: E402

from lxml import etree  # noqa: E402
import pytest  # noqa: E402

from cloudlet_engine import errors  # noqa: E402
from cloudlet_nova.handoff import arrival  # noqa: E402

UUID = '5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d'
MAC1, MAC2, MAC3 = 'fa:16:3e:00:00:01', 'fa:16:3e:00:00:02', 'fa:16:3e:00:00:03'
ADDRESS = {'domain': '0x0000', 'bus': '0x00', 'slot': '0x03', 'function': '0x0'}


def _iface(mac, dev, link=''):
    return ("<interface type='ethernet'><mac address='%s'/><target dev='%s'/><model type='virtio'/>%s"
            "<address type='pci' domain='0x0000' bus='0x00' slot='0x0%s' function='0x0'/></interface>"
            % (mac, dev, link, dev[-1]))


def _meta(*macs):
    return {'kind': 'handoff-residue',
            'nics': [{'mac': mac, 'address': dict(ADDRESS, slot='0x0%d' % (i + 3)), 'model': 'virtio',
                      'rom': False} for i, mac in enumerate(macs)]}


class FakeInfoCache:
    def __init__(self, log, held):
        self.log, self.held, self.network_info = log, held, None

    def save(self):
        self.log.append(('save', [(vif['id'], vif['preserve_on_delete']) for vif in self.network_info]))
        self.held_at_save = list(self.held)


class FakeInstance:
    """objects.Instance as arrival uses it: the network info cache, its saves in `log`."""

    def __init__(self, vifs, held=()):
        self.uuid, self.log = UUID, []
        self.vifs = vifs
        self.info_cache = FakeInfoCache(self.log, held)

    def get_network_info(self):
        self.log.append(('get_network_info',))
        return self.vifs


class FakeDomain:
    def __init__(self, log):
        self.log = log

    def updateDeviceFlags(self, xml, flags):
        self.log.append(('update', xml, flags))


class FakeGuest:
    def __init__(self, *ifaces):
        self.xml = '<domain><devices><disk/>%s</devices></domain>' % ''.join(ifaces)
        self.log = []
        self._domain = FakeDomain(self.log)

    def get_xml_desc(self):
        return self.xml


def vifs():
    return [{'id': 'port-1', 'address': MAC1, 'preserve_on_delete': True},
            {'id': 'port-2', 'address': MAC2.upper(), 'preserve_on_delete': True},
            {'id': 'port-3', 'address': MAC3, 'preserve_on_delete': True},      # not carried
            {'id': 'port-4', 'address': None, 'preserve_on_delete': True}]


@pytest.fixture
def locks(monkeypatch):
    """lockutils.lock, recorded: the names taken, and whether one is held."""
    taken, held = [], []

    @contextlib.contextmanager
    def lock(name, *args, **kwargs):
        taken.append(name)
        held.append(name)
        try:
            yield
        finally:
            held.remove(name)
    monkeypatch.setattr(arrival.lockutils, 'lock', lock)
    return types.SimpleNamespace(taken=taken, held=held)


# ---------------------------------------------------------------- carried_macs

def test_carried_macs():
    assert arrival.carried_macs(_meta(MAC1, MAC2)) == [MAC1, MAC2]
    assert arrival.carried_macs({'kind': 'handoff-residue'}) == []
    assert arrival.carried_macs(None) == []


def test_carried_macs_of_bad_metadata_raise():
    with pytest.raises(errors.CorruptOverlay):
        arrival.carried_macs({'kind': 'handoff-residue', 'nics': [{'mac': 'not-a-mac'}]})


# ---------------------------------------------------------------- adopt_ports

def test_adopt_ports_flips_only_the_carried_ports_and_saves_once(locks):
    instance = FakeInstance(vifs(), locks.held)
    assert arrival.adopt_ports(instance, [MAC1, MAC2.upper()]) == ['port-1', 'port-2']
    assert [(vif['id'], vif['preserve_on_delete']) for vif in instance.vifs] == [
        ('port-1', False), ('port-2', False), ('port-3', True), ('port-4', True)]
    # One save, of the cache as flipped, under nova's own lock for that cache.
    assert [entry for entry in instance.log if entry[0] == 'save'] == [
        ('save', [('port-1', False), ('port-2', False), ('port-3', True), ('port-4', True)])]
    assert instance.info_cache.network_info is instance.vifs
    assert locks.taken == ['refresh_cache-%s' % UUID]
    assert instance.info_cache.held_at_save == ['refresh_cache-%s' % UUID]
    assert ('get_network_info',) in instance.log


def test_adopt_ports_leaves_ports_nova_already_owns(locks):
    instance = FakeInstance(vifs())
    instance.vifs[0]['preserve_on_delete'] = False           # already nova's
    assert arrival.adopt_ports(instance, [MAC1, MAC2]) == ['port-2']
    assert [entry for entry in instance.log if entry[0] == 'save'] == [
        ('save', [('port-1', False), ('port-2', False), ('port-3', True), ('port-4', True)])]


def test_adopt_ports_saves_nothing_when_nothing_changes(locks):
    instance = FakeInstance(vifs())
    assert arrival.adopt_ports(instance, ['fa:16:3e:00:00:99']) == []
    assert arrival.adopt_ports(instance, []) == []
    assert [entry for entry in instance.log if entry[0] == 'save'] == []
    assert instance.info_cache.network_info is None
    assert all(vif['preserve_on_delete'] for vif in instance.vifs)


# ---------------------------------------------------------------- renew_addresses

def test_renew_addresses_takes_the_matching_links_down_then_up(monkeypatch):
    sleeps = []
    monkeypatch.setattr(arrival.time, 'sleep', sleeps.append)
    guest = FakeGuest(_iface(MAC1, 'tap1'), _iface(MAC3, 'tap3'), _iface(MAC2.upper(), 'tap2'))
    assert arrival.renew_addresses(guest, [MAC1, MAC2], down_seconds=0.05) == 2
    live = arrival.libvirt_driver.libvirt.VIR_DOMAIN_AFFECT_LIVE
    updates = [(etree.fromstring(xml.encode()), flags) for _, xml, flags in guest.log]
    assert [flags for _, flags in updates] == [live] * 4
    seen = [(iface.find('target').get('dev'), [link.get('state') for link in iface.findall('link')])
            for iface, _ in updates]
    # Every NIC down first, then every NIC up, one <link> each time; tap3 untouched.
    assert seen == [('tap1', ['down']), ('tap2', ['down']), ('tap1', ['up']), ('tap2', ['up'])]
    # The rest of the device is the live one (libvirt finds the device by it).
    assert updates[0][0].find('mac').get('address') == MAC1
    assert updates[0][0].find('address').get('slot') == '0x01'
    assert sleeps == [0.05]


def test_renew_addresses_replaces_a_link_state_the_nic_had(monkeypatch):
    monkeypatch.setattr(arrival.time, 'sleep', lambda seconds: None)
    guest = FakeGuest(_iface(MAC1, 'tap1', link="<link state='up'/>"))
    assert arrival.renew_addresses(guest, [MAC1], down_seconds=0) == 1
    states = [[link.get('state') for link in etree.fromstring(xml.encode()).findall('link')]
              for _, xml, _ in guest.log]
    assert states == [['down'], ['up']]


def test_renew_addresses_without_a_matching_nic_touches_nothing(monkeypatch):
    monkeypatch.setattr(arrival.time, 'sleep', lambda seconds: None)
    guest = FakeGuest(_iface(MAC3, 'tap3'))
    assert arrival.renew_addresses(guest, [MAC1], down_seconds=0) == 0
    assert guest.log == []


# ---------------------------------------------------------------- settle

def test_settle_without_carried_nics_does_nothing():
    instance, guest = mock.Mock(), mock.Mock()
    with mock.patch.object(arrival, 'adopt_ports') as adopt, mock.patch.object(arrival, 'renew_addresses') as renew:
        arrival.settle(instance, guest, {'kind': 'handoff-residue'})
        arrival.settle(instance, guest, {'kind': 'handoff-residue', 'nics': []})
        arrival.settle(instance, guest, None)
    adopt.assert_not_called()
    renew.assert_not_called()
    assert instance.mock_calls == [] and guest.mock_calls == []


def test_adopt_before_the_restore_then_settle_once_the_vm_runs(locks, monkeypatch):
    monkeypatch.setattr(arrival.time, 'sleep', lambda seconds: None)
    instance = FakeInstance(vifs())
    guest = FakeGuest(_iface(MAC1, 'tap1'), _iface(MAC3, 'tap3'))
    guest.log = instance.log                           # one log for the order
    guest._domain.log = instance.log
    arrival.adopt(instance, _meta(MAC1))
    assert [entry[0] for entry in instance.log] == ['get_network_info', 'save']
    assert [vif['preserve_on_delete'] for vif in instance.vifs] == [False, True, True, True]
    arrival.settle(instance, guest, _meta(MAC1))
    assert [entry[0] for entry in instance.log] == ['get_network_info', 'save', 'update', 'update']


def test_bad_metadata_raises_before_touching_anything():
    instance, guest = mock.Mock(), mock.Mock()
    with pytest.raises(errors.CorruptOverlay):
        arrival.adopt(instance, {'kind': 'handoff-residue', 'nics': 'all of them'})
    with pytest.raises(errors.CorruptOverlay):
        arrival.settle(instance, guest, {'kind': 'handoff-residue', 'nics': 'all of them'})
    assert instance.mock_calls == [] and guest.mock_calls == []
