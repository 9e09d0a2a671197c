"""The destination server of a handoff: the NICs that came along.

A residue that carries the VM's NICs (cloudlet_engine/nics.py) is restored
with them (virt/restore.py). Two things remain:

- the ports (`adopt`, while the residue still arrives: it needs only the
  residue's metadata): the source made them with the VM's MACs and passed
  them to `POST /servers`, so nova's network info cache marks them
  preserve_on_delete (ports a user brought). They exist for this server
  only: marked as nova's own, they are deleted with it, like the ports nova
  makes (a build that fails deletes them too; the source's roll back then
  finds them gone).
- the addresses (`settle`, once the VM runs): the guest still holds the
  source cloud's IP address. Its links go down and up once (libvirt
  `<link state>`), as when a laptop joins another network: the guest's DHCP
  client asks this cloud's Neutron for the port's address (the test guest
  renews on a carrier change, as NetworkManager and systemd-networkd do).
"""

import time

from lxml import etree
from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova.virt.libvirt import driver as libvirt_driver

from cloudlet_engine import nics

LOG = logging.getLogger(__name__)

LINK_DOWN_SECONDS = 0.2


def carried_macs(launch_meta):
    """The MACs of the NICs a residue carried ([] for any other launch)."""
    return [nic['mac'] for nic in nics.checked(launch_meta)]


def adopt_ports(instance, macs):
    """Mark the server's ports with these MACs as nova's own (deleted with the server).

    Under the lock nova's network API takes to refresh the same cache.
    """
    wanted = {mac.lower() for mac in macs}
    with lockutils.lock('refresh_cache-%s' % instance.uuid):
        network_info = instance.get_network_info()
        adopted = [vif for vif in network_info
                   if (vif.get('address') or '').lower() in wanted and vif.get('preserve_on_delete')]
        for vif in adopted:
            vif['preserve_on_delete'] = False
        if adopted:
            instance.info_cache.network_info = network_info
            instance.info_cache.save()
    return [vif['id'] for vif in adopted]


def renew_addresses(guest, macs, down_seconds=LINK_DOWN_SECONDS):
    """Take the links of the NICs with these MACs down, then up (the guest renews its address)."""
    libvirt = libvirt_driver.libvirt
    wanted = {mac.lower() for mac in macs}
    root = etree.fromstring(guest.get_xml_desc().encode())
    ifaces = [iface for iface in root.iterfind('devices/interface') if nics.mac_of(iface) in wanted]
    for state in ('down', 'up'):
        for iface in ifaces:
            for link in iface.findall('link'):
                iface.remove(link)
            etree.SubElement(iface, 'link', state=state)
            # nova's Guest wraps no device update: the raw virDomain does it.
            guest._domain.updateDeviceFlags(etree.tostring(iface, encoding='unicode'),
                                            libvirt.VIR_DOMAIN_AFFECT_LIVE)
        if state == 'down':
            time.sleep(down_seconds)
    return len(ifaces)


def adopt(instance, launch_meta):
    """Before the restore of a handoff's destination server: its carried NICs' ports become nova's own."""
    macs = carried_macs(launch_meta)
    if not macs:
        return
    adopted = adopt_ports(instance, macs)
    LOG.info('handoff: %d NIC(s) come along with the VM; %d port(s) now deleted with the server',
             len(macs), len(adopted), instance=instance)


def settle(instance, guest, launch_meta):
    """After the restore of a handoff's destination server: the guest renews its addresses."""
    macs = carried_macs(launch_meta)
    if not macs:
        return
    renewed = renew_addresses(guest, macs)
    LOG.info('handoff: %d link(s) renewed', renewed, instance=instance)
