"""The guest's NICs across a handoff: the same devices on both sides of the move.

A handoff that keeps the VM's NICs plugged until QEMU pauses it (so the app
answers at its old address until then) carries their device state in the
memory stream. The destination must then restore the VM with the very same
NICs: same MAC (the guest's driver keeps it), same PCI address, same model.
The residue's metadata lists them (`nics`, written by the source from the
live domain XML); the destination gives its own ports (made with those MACs)
those addresses.

Option ROMs: a NIC with a ROM brings a RAM block of its own
(`<pci address>/virtio-net-pci.rom`) that no base has. NICs hot-plugged
after a restore have none (`<rom enabled='no'/>`, `without_rom`): the guest
is running, nothing boots from them. A NIC that has one cannot be carried
(`carriable`), and the handoff replaces it instead.

No nova imports.
"""

import re

from lxml import etree

from cloudlet_engine import errors

MAX_NICS = 16
_MAC = re.compile(r'[0-9a-f]{2}(:[0-9a-f]{2}){5}')
_PCI_FIELDS = ('domain', 'bus', 'slot', 'function')
_PCI_NUMBER = re.compile(r'0x[0-9a-f]{1,4}')
_MODEL = re.compile(r'[a-z0-9_-]{1,32}')


def _element(xml):
    return etree.fromstring(xml.encode()) if isinstance(xml, str) else xml


def _nic(iface):
    mac = iface.find('mac')
    address = iface.find('address')
    model = iface.find('model')
    rom = iface.find('rom')
    return {'mac': (mac.get('address') or '').lower() if mac is not None else None,
            'address': ({key: address.get(key) for key in _PCI_FIELDS}
                        if address is not None and address.get('type') == 'pci' else None),
            'model': model.get('type') if model is not None else None,
            'rom': rom is None or rom.get('enabled', 'yes') != 'no'}


def guest_nics(domain_xml):
    """The NICs of a domain XML, as the residue carries them:
    [{'mac', 'address': {domain, bus, slot, function} or None, 'model', 'rom': bool}].
    """
    return [_nic(iface) for iface in _element(domain_xml).iterfind('devices/interface')]


def carriable(domain_xml):
    """None if every NIC of the domain can be carried through a handoff, else why not."""
    for nic in guest_nics(domain_xml):
        if nic['rom']:
            return 'NIC %s has an option ROM (plugged before ROMs were left out)' % nic['mac']
        if nic['address'] is None or not nic['mac']:
            return 'NIC %s has no PCI address' % (nic['mac'] or '(no MAC)')
    return None


RESIDUE_KIND = 'handoff-residue'      # the metadata `kind` of a handoff's residue (handoff.py)


def checked(meta):
    """The `nics` of a handoff residue's metadata, validated (it comes from another
    cloud): a list of dicts as guest_nics() makes, MACs unique; CorruptOverlay
    otherwise. [] for any other overlay: only a handoff carries NICs.
    """
    meta = meta or {}
    if meta.get('kind') != RESIDUE_KIND:
        return []
    meta_nics = meta.get('nics')
    if meta_nics is None:
        return []
    if not isinstance(meta_nics, list) or len(meta_nics) > MAX_NICS:
        raise errors.CorruptOverlay('residue metadata: nics must be a list of at most %d NICs' % MAX_NICS)
    seen = set()
    for nic in meta_nics:
        if not isinstance(nic, dict):
            raise errors.CorruptOverlay('residue metadata: a NIC is not an object')
        mac, address, model = nic.get('mac'), nic.get('address'), nic.get('model')
        if not isinstance(mac, str) or not _MAC.fullmatch(mac) or mac in seen:
            raise errors.CorruptOverlay('residue metadata: NIC MAC %r is not a unique MAC address' % (mac,))
        seen.add(mac)
        if not isinstance(address, dict) or set(address) != set(_PCI_FIELDS) or not all(
                isinstance(address[key], str) and _PCI_NUMBER.fullmatch(address[key])
                for key in _PCI_FIELDS):
            raise errors.CorruptOverlay('residue metadata: NIC %s has no valid PCI address' % mac)
        if model is not None and (not isinstance(model, str) or not _MODEL.fullmatch(model)):
            raise errors.CorruptOverlay('residue metadata: NIC %s has an invalid model' % mac)
        if nic.get('rom') is not False:
            raise errors.CorruptOverlay('residue metadata: NIC %s has an option ROM' % mac)
    return meta_nics


def carried(iface_xml, nic):
    """A host's <interface> for `nic` (same MAC): given the NIC's PCI address, and no ROM."""
    iface = _element(iface_xml)
    mine = _nic(iface)
    if mine['mac'] != nic['mac']:
        raise errors.CloudletError('interface %s is not NIC %s' % (mine['mac'], nic['mac']))
    if nic.get('model') and mine['model'] and mine['model'] != nic['model']:
        raise errors.CloudletError('NIC %s is a %s here, a %s in the residue'
                                   % (nic['mac'], mine['model'], nic['model']))
    old = iface.find('address')
    if old is not None:
        iface.remove(old)
    etree.SubElement(iface, 'address', dict(nic['address'], type='pci'))
    return etree.tostring(_without_rom(iface), encoding='unicode')


def without_rom(iface_xml):
    """An <interface> with no option ROM (`<rom enabled='no'/>`)."""
    return etree.tostring(_without_rom(_element(iface_xml)), encoding='unicode')


def _without_rom(iface):
    for rom in iface.findall('rom'):
        iface.remove(rom)
    etree.SubElement(iface, 'rom', enabled='no')
    return iface


def mac_of(iface_xml):
    return _nic(_element(iface_xml))['mac']
