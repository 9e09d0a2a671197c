"""The ports of cloudlet instances: taps made by os-vif, so a port can be wired before its VM runs.

With libvirt making the tap (nova's `<interface type='bridge'>` with an
Open vSwitch virtualport), the tap exists only once QEMU does, and Neutron's
OVS agent wires the port (a 2 s polling loop, ~2 s of work on a small host)
only then: for a handoff, after the source has paused the VM. So for
cloudlet instances the driver asks os-vif to make the tap and its switch port
(`ovs_create_tap` and `delegate_create` on the VIF: the flow Neutron 2026.2
selects itself for kernel-datapath ports, and nova's own code then writes
`<interface type='ethernet'>` with `<target managed='no'>`), whatever the
datapath. One transform, `with_os_vif_taps`, applied to every network_info
and VIF the driver hands to nova's code for a cloudlet instance, keeps plug,
XML, hot-plug and unplug (which deletes the tap) in agreement.

A handoff's destination plugs its ports before the residue arrives
(`plug_early`), and after it waits until Neutron says they are ACTIVE
(`wait_wired`, usually at once), marking them active: nova then waits for no
`network-vif-plugged` event and restores the VM running.
"""

import copy
import time

from lxml import etree
from oslo_log import log as logging

import nova.conf
from nova import exception
from nova.network import model as network_model
from nova.network import neutron
from nova.virt.libvirt import vif as libvirt_vif

from cloudlet_glance import properties as props

from cloudlet_engine import nics

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


def _os_vif_tap(vif):
    return (vif.get('type') == network_model.VIF_TYPE_OVS and not vif.is_hybrid_plug_enabled()
            and vif.get('vnic_type', network_model.VNIC_TYPE_NORMAL) == network_model.VNIC_TYPE_NORMAL)


def with_os_vif_tap(vif):
    """A copy of `vif` whose tap os-vif makes (unchanged: other than OVS, or hybrid plug)."""
    if vif is None or not _os_vif_tap(vif):
        return vif
    vif = copy.copy(vif)
    vif['details'] = dict(vif.get('details') or {}, **{network_model.VIF_DETAILS_OVS_CREATE_TAP: True})
    vif['delegate_create'] = True
    return vif


def as_plugged(vif, domain_xml):
    """`vif` as the domain has it: os-vif's tap, unless its interface there is libvirt's
    (`type='bridge'`: plugged by an earlier release), for nova to find the device.
    """
    root = etree.fromstring(domain_xml.encode())
    for iface in root.iterfind('devices/interface'):
        if nics.mac_of(iface) == (vif.get('address') or '').lower():
            return vif if iface.get('type') == 'bridge' else with_os_vif_tap(vif)
    return with_os_vif_tap(vif)


def with_os_vif_taps(network_info):
    """A NetworkInfo of `with_os_vif_tap` copies (None stays None)."""
    if network_info is None:
        return None
    return network_model.NetworkInfo([with_os_vif_tap(vif) for vif in network_info])


class CloudletVIFDriver(libvirt_vif.LibvirtGenericVIFDriver):
    """nova's VIF driver, writing os-vif's taps into a cloudlet instance's interface XML.

    The driver's entry points pass transformed VIFs already; nova's live
    migration builds the destination's interfaces from the port bindings
    itself (migration.get_updated_guest_xml), and reaches only this.
    """

    def get_config(self, instance, vif, image_meta, flavor, virt_type):
        if props.is_cloudlet_instance(instance):
            vif = with_os_vif_tap(vif)
        return super().get_config(instance, vif, image_meta, flavor, virt_type)


def plug_early(driver, instance, network_info):
    """Plug the ports now (taps and switch ports); their wiring overlaps what comes next."""
    started = time.monotonic()
    driver.plug_vifs(instance, network_info)
    LOG.info('cloudlet spawn: %d port(s) plugged before the restore (%.2f s)', len(network_info),
             time.monotonic() - started, instance=instance)


def wait_wired(context, instance, network_info, timeout=None, poll=0.2):
    """Wait until Neutron reports every port of `network_info` ACTIVE; mark them active.

    Ports still down after `timeout` (default [DEFAULT] vif_plugging_timeout)
    fail the spawn when [DEFAULT] vif_plugging_is_fatal, as nova's own wait
    does; otherwise they are left to nova's wait for their events.
    """
    down = [vif for vif in network_info if vif.get('active') is False]
    timeout = CONF.vif_plugging_timeout if timeout is None else timeout
    if not down or not timeout:     # nova would wait for nothing either
        return
    client = neutron.get_client(context, admin=True)
    deadline = time.monotonic() + timeout
    while True:
        for vif in list(down):
            if client.show_port(vif['id'], fields=['status'])['port'].get('status') == 'ACTIVE':
                vif['active'] = True
                down.remove(vif)
        if not down or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if down and CONF.vif_plugging_is_fatal:
        raise exception.VirtualInterfaceCreateException()
    if down:
        LOG.warning('ports %s not ACTIVE after %d s: nova waits for their events',
                    ', '.join(vif['id'] for vif in down), timeout, instance=instance)
