"""cloudlet_engine.nics: the guest's NICs a handoff carries, and the residue metadata that lists them."""

import copy

from lxml import etree
import pytest

from cloudlet_engine import errors
from cloudlet_engine import nics

MAC1, MAC2 = 'fa:16:3e:00:00:01', 'fa:16:3e:00:00:02'
ADDRESS1 = {'domain': '0x0000', 'bus': '0x00', 'slot': '0x03', 'function': '0x0'}
ADDRESS2 = {'domain': '0x0000', 'bus': '0x00', 'slot': '0x07', 'function': '0x0'}

# As libvirt's live XML shows NICs: a hot-plugged one without ROM, one with its
# default ROM, one without an address yet (only a definition has none).
LIVE_XML = """<domain type='kvm'><name>instance-00000001</name><devices>
  <disk type='file' device='disk'><target dev='vda' bus='virtio'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>
  <interface type='ethernet'><mac address='FA:16:3E:00:00:01'/><target dev='tap1'/>
    <model type='virtio'/><rom enabled='no'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>
  <interface type='bridge'><mac address='fa:16:3e:00:00:02'/><model type='e1000'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/></interface>
  <interface type='ethernet'><mac address='fa:16:3e:00:00:03'/></interface>
</devices></domain>"""


def domain(*ifaces):
    return '<domain><devices>%s</devices></domain>' % ''.join(ifaces)


def iface(mac=MAC1, model='virtio', rom="<rom enabled='no'/>", address=ADDRESS1):
    address_xml = ("<address type='pci' domain='%(domain)s' bus='%(bus)s' slot='%(slot)s' "
                   "function='%(function)s'/>" % address) if address else ''
    model_xml = "<model type='%s'/>" % model if model else ''
    return ("<interface type='ethernet'><mac address='%s'/><target dev='tap1'/>%s%s%s</interface>"
            % (mac, model_xml, rom or '', address_xml))


def nic(mac=MAC1, address=ADDRESS1, model='virtio', rom=False):
    return {'mac': mac, 'address': dict(address) if isinstance(address, dict) else address,
            'model': model, 'rom': rom}


# ---------------------------------------------------------------- guest_nics, carriable

def test_guest_nics_lists_mac_pci_address_model_and_rom():
    assert nics.guest_nics(LIVE_XML) == [
        {'mac': MAC1, 'address': ADDRESS1, 'model': 'virtio', 'rom': False},     # MAC lower-cased
        {'mac': MAC2, 'address': ADDRESS2, 'model': 'e1000', 'rom': True},       # no <rom>: QEMU's default
        {'mac': 'fa:16:3e:00:00:03', 'address': None, 'model': None, 'rom': True},
    ]


def test_guest_nics_takes_an_element_and_a_rom_enabled_yes():
    root = etree.fromstring(domain(iface(rom="<rom enabled='yes'/>")).encode())
    assert nics.guest_nics(root) == [nic(rom=True)]
    assert nics.guest_nics(domain(iface(rom="<rom bar='off'/>"))) == [nic(rom=True)]


def test_a_non_pci_address_is_no_address():
    xml = domain(iface(address=None).replace(
        '</interface>', "<address type='ccw' cssid='0xfe' ssid='0x0' devno='0x0001'/></interface>"))
    assert nics.guest_nics(xml) == [nic(address=None)]


def test_no_nics():
    assert nics.guest_nics(domain()) == []
    assert nics.carriable(domain()) is None


def test_carriable_when_every_nic_has_an_address_and_no_rom():
    assert nics.carriable(domain(iface(), iface(MAC2, address=ADDRESS2))) is None


def test_not_carriable_with_an_option_rom():
    why = nics.carriable(domain(iface(), iface(MAC2, rom='', address=ADDRESS2)))
    assert why == 'NIC %s has an option ROM (plugged before ROMs were left out)' % MAC2


def test_not_carriable_without_a_pci_address():
    assert nics.carriable(domain(iface(address=None))) == 'NIC %s has no PCI address' % MAC1


def test_not_carriable_without_a_mac():
    xml = domain(iface().replace("<mac address='%s'/>" % MAC1, ''))
    assert nics.carriable(xml) == 'NIC (no MAC) has no PCI address'


# ---------------------------------------------------------------- checked: the residue's metadata

def residue(meta_nics):
    return {'kind': nics.RESIDUE_KIND, 'nics': meta_nics}


def test_checked_accepts_what_guest_nics_makes():
    meta = nics.guest_nics(domain(iface(), iface(MAC2, model=None, address=ADDRESS2)))
    assert nics.checked(residue(copy.deepcopy(meta))) == meta
    assert nics.checked(None) == []
    assert nics.checked(residue(None)) == []
    assert nics.checked(residue([])) == []


def test_only_a_handoff_residue_carries_nics():
    meta = nics.guest_nics(domain(iface()))
    assert nics.checked({'kind': 'overlay', 'nics': meta}) == []
    assert nics.checked({'nics': meta}) == []


def test_checked_takes_sixteen_nics():
    meta = [nic('fa:16:3e:00:00:%02x' % i) for i in range(nics.MAX_NICS)]
    assert nics.checked(residue(meta)) == meta


@pytest.mark.parametrize('meta,message', [
    ({'mac': MAC1}, 'must be a list of at most 16 NICs'),
    ('fa:16:3e:00:00:01', 'must be a list of at most 16 NICs'),
    ([nic('fa:16:3e:00:00:%02x' % i) for i in range(17)], 'must be a list of at most 16 NICs'),
    (['fa:16:3e:00:00:01'], 'a NIC is not an object'),
    ([nic(mac='FA:16:3E:00:00:01')], 'not a unique MAC address'),
    ([nic(mac='fa:16:3e:00:00')], 'not a unique MAC address'),
    ([nic(mac=None)], 'not a unique MAC address'),
    ([nic(mac=42)], 'not a unique MAC address'),
    ([nic(), nic(address=ADDRESS2)], 'not a unique MAC address'),
    ([nic(address=None)], 'has no valid PCI address'),
    ([{'mac': MAC1, 'model': 'virtio', 'rom': False}], 'has no valid PCI address'),
    ([nic(address=dict(ADDRESS1, slot='3'))], 'has no valid PCI address'),
    ([nic(address=dict(ADDRESS1, slot='0x00003'))], 'has no valid PCI address'),
    ([nic(address=dict(ADDRESS1, slot="0x3' onload='x"))], 'has no valid PCI address'),
    ([nic(address=dict(ADDRESS1, slot=3))], 'has no valid PCI address'),
    ([nic(address={'domain': '0x0', 'bus': '0x0', 'slot': '0x3'})], 'has no valid PCI address'),
    ([nic(address=dict(ADDRESS1, type='pci'))], 'has no valid PCI address'),
    ([nic(model='virtio"/><rom file="/etc/shadow')], 'has an invalid model'),
    ([nic(model='')], 'has an invalid model'),
    ([nic(model=7)], 'has an invalid model'),
    ([nic(model='x' * 33)], 'has an invalid model'),
    ([nic(rom=True)], 'has an option ROM'),
    ([{'mac': MAC1, 'address': ADDRESS1, 'model': 'virtio'}], 'has an option ROM'),
    ([nic(rom=0)], 'has an option ROM'),
    ([nic(mac='fa:16:3e:00:00:01\n')], 'not a unique MAC address'),
    ([nic(address=dict(ADDRESS1, slot='0x03\n'))], 'has no valid PCI address'),
    ([nic(model='virtio\n')], 'has an invalid model'),
])
def test_checked_refuses_bad_metadata(meta, message):
    with pytest.raises(errors.CorruptOverlay, match=message):
        nics.checked(residue(meta))


# ---------------------------------------------------------------- carried, without_rom, mac_of

def test_carried_gives_the_residue_s_pci_address_and_no_rom():
    host_iface = iface(rom='', address=ADDRESS2)            # nova's interface: another slot, a ROM
    result = etree.fromstring(nics.carried(host_iface, nic(address=ADDRESS1)).encode())
    [address] = result.findall('address')
    assert dict(address.attrib) == dict(ADDRESS1, type='pci')
    [rom] = result.findall('rom')
    assert rom.attrib == {'enabled': 'no'}
    # The rest stays the host's.
    assert result.get('type') == 'ethernet'
    assert result.find('target').get('dev') == 'tap1'
    assert result.find('mac').get('address') == MAC1
    assert result.find('model').get('type') == 'virtio'


def test_carried_adds_an_address_to_an_interface_without_one():
    result = etree.fromstring(nics.carried(iface(rom='', address=None), nic(address=ADDRESS2)).encode())
    assert [dict(a.attrib) for a in result.findall('address')] == [dict(ADDRESS2, type='pci')]
    assert [dict(r.attrib) for r in result.findall('rom')] == [{'enabled': 'no'}]


def test_carried_takes_any_model_when_one_side_names_none():
    assert nics.carried(iface(model=None), nic()) is not None
    assert nics.carried(iface(), nic(model=None)) is not None


def test_carried_refuses_another_mac():
    with pytest.raises(errors.CloudletError, match='interface %s is not NIC %s' % (MAC2, MAC1)):
        nics.carried(iface(MAC2), nic(MAC1))


def test_carried_refuses_another_model():
    with pytest.raises(errors.CloudletError, match='NIC %s is a e1000 here, a virtio in the residue' % MAC1):
        nics.carried(iface(model='e1000'), nic(model='virtio'))


def test_without_rom_replaces_an_existing_rom():
    result = etree.fromstring(nics.without_rom(iface(rom="<rom bar='on' file='/x.rom'/>")).encode())
    assert [dict(r.attrib) for r in result.findall('rom')] == [{'enabled': 'no'}]
    result = etree.fromstring(nics.without_rom(iface(rom='')).encode())
    assert [dict(r.attrib) for r in result.findall('rom')] == [{'enabled': 'no'}]
    assert result.find('mac').get('address') == MAC1


def test_mac_of():
    assert nics.mac_of(iface(mac='FA:16:3E:00:00:0A')) == 'fa:16:3e:00:00:0a'
    assert nics.mac_of(etree.fromstring(iface().encode())) == MAC1
