"""Restore instead of boot: the per-spawn restore flag, the domain's identity, the NICs.

Why a per-spawn flag (doc/nova-driver.md, Spawn): LibvirtDriver._create_guest
is also what hard reboot, power-on, resume, rescue/unrescue and
finish_migration call. Deciding "restore" from the instance's properties
would make them restore the launch memory again, over a disk that has moved
on. The flag (the launch files of one spawn) exists only while that spawn
runs, and `claim()` hands it out once.

Identity: the engine writes nova's identity (name, uuid, disks, console log,
kernel paths, nova's <metadata>, read from the XML nova made for the
instance) into the launch memory image (cloudlet_engine/identity.py says why
and how); the restore then needs no replacement XML. Devices stay the base's.

Kernel and initrd: QEMU opens those of a direct kernel boot even for a
restore. nova's XML names them when the base disk image has kernel_id /
ramdisk_id (nova fetched them into the instance directory); otherwise the
base's own copies in the host's base store; and if neither exists the spawn
fails naming the file, before libvirt is asked.

NICs: bases and overlays are captured without NICs (capture.py unplugs them
first), because libvirt refuses a restore whose NIC MACs or count differ from
the snapshot's ("Target network card mac X does not match source Y", libvirt
9.0). After the restore, the <interface> elements of nova's XML (nova's Neutron ports, already plugged by
plug_vifs) are hot-plugged, live and into the persistent definition, without
option ROM (cloudlet_engine/nics.py: so that a handoff can carry them).
A handoff residue that carries the VM's NICs (its metadata lists them) is
the exception: those are in the memory stream, so nova's interfaces with
their MACs go into the restored XML itself, at the residue's PCI addresses.

Streamed (a handoff's residue over a RAM file, launch.stream_residue): the
launch memory is a named pipe the residue's apply is still writing. The XML
goes into its header as it is written (`give_xml`), and the restore loads
the pipe while the residue arrives: it returns, the VM running, once the
apply has checked the residue's last byte and closed the launch disk
(doc/handoff.md, "The restore streamed").
"""

import collections
import contextlib
import os
import threading
import time

from lxml import etree
from oslo_log import log as logging

import nova.conf
import nova.privsep.linux_net
import nova.privsep.path
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import guest as libvirt_guest

from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import identity
from cloudlet_engine import nics
from cloudlet_engine import ramfile
from cloudlet_nova.virt import faults

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)
ROOT_DISK = 'disk'

# What a spawn hands to its _create_guest: the launch files, the base's name
# and its own boot files ({} when it has none).
Pending = collections.namedtuple('Pending', 'launch base_name base_boot_files', defaults=({},))


class PendingRestores:
    """instance uuid -> the launch of the spawn running for it; thread-safe.

    nova 34 runs spawns in parallel native threads, hence the lock.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._launches = {}      # uuid -> [launch, claimed, timings]

    @contextlib.contextmanager
    def pending(self, instance_uuid, launch):
        with self._lock:
            if instance_uuid in self._launches:
                raise faults.CloudletSpawnFailed(
                    reason='a cloudlet spawn of instance %s is already running' % instance_uuid)
            self._launches[instance_uuid] = [launch, False, {}]
        try:
            yield
        finally:
            with self._lock:
                self._launches.pop(instance_uuid, None)

    def get(self, instance_uuid):
        """The pending launch (claimed or not), or None."""
        with self._lock:
            entry = self._launches.get(instance_uuid)
            return entry[0] if entry else None

    def claim(self, instance_uuid):
        """The pending launch the first time it is asked for, then None."""
        with self._lock:
            entry = self._launches.get(instance_uuid)
            if entry is None or entry[1]:
                return None
            entry[1] = True
            return entry[0]

    def timings(self, instance_uuid):
        """The spawn's timing marks (time.monotonic() by name); {} when no spawn runs."""
        with self._lock:
            entry = self._launches.get(instance_uuid)
            return entry[2] if entry else {}

    def __len__(self):
        with self._lock:
            return len(self._launches)


def spawn_timings(marks):
    """Seconds from a spawn's timing marks: the restore (with the NIC plug), and
    the wait for Neutron's network-vif-plugged events until the guest runs
    (0 when nova waited for none).
    """
    def between(start, end):
        if start in marks and end in marks:
            return round(marks[end] - marks[start], 3)
        return None
    return {'restore_seconds': between('restore_started', 'nics_plugged'),
            'vif_plugged_wait_seconds': between('nics_plugged', 'guest_running')}


# How long a spawn whose launch disk vanished waits for the streamed apply's error.
APPLY_END_TIMEOUT = 30.0


def place_launch_disk(launch, instance_dir):
    """Move the launch disk (qcow2 over the base disk) in as the instance's root disk.

    Idempotent: returns True when it moved the disk, False when it was in
    place already. Everything nova does with `<instance dir>/disk` (XML,
    snapshots, console, cleanup) then works on the VM's real disk.
    """
    target = os.path.join(instance_dir, ROOT_DISK)
    if launch.disk_path == target:
        return False
    if not os.path.exists(launch.disk_path):
        if os.path.exists(target):
            return False
        if launch.streamed is not None:
            # A residue apply that fails removes its launch files: its error is the cause.
            with faults.spawn_errors():
                launch.streamed.result(APPLY_END_TIMEOUT)
        raise faults.CloudletSpawnFailed(reason='launch disk %s vanished' % launch.disk_path)
    os.replace(launch.disk_path, target)
    launch.disk_path = target
    return True


# -- the domain XML -------------------------------------------------------------

def restore_xml(image_xml, nova_xml, base_name, base_boot_files=None):
    """The launch memory image's XML with nova's identity and host side.

    Disks are matched by target device: every disk of nova's XML (root disk,
    config drive, ephemeral, swap) must exist in the base, and the reverse.
    The kernel and initrd the image boots are nova's, else the base's own
    (`base_boot_files`); a missing one is a BaseVMError naming it.
    """
    with _disks_refused():
        return identity.restore_xml(image_xml, nova_identity(nova_xml, base_boot_files), base_name)


@contextlib.contextmanager
def _disks_refused():
    """A base whose disks are not the instance's: the request's fault, said as it is."""
    try:
        yield
    except identity.DisksDiffer as exc:
        raise faults.CloudletSpawnFailed(reason=str(exc))


def nova_identity(nova_xml, base_boot_files=None, ram=None, carried_nics=()):
    """The identity nova gave the instance, from the domain XML it made for it
    (`ram`: the base's RamFile when the launch image is sparse; `carried_nics`:
    the <interface> elements a handoff residue's NICs get, see `carried_nics`).
    """
    nova_root = etree.fromstring(nova_xml.encode())
    console_logs = [log.get('file') for log in nova_root.iterfind('devices/serial/log')]
    metadata = nova_root.find('metadata')
    return identity.Identity(
        name=nova_root.findtext('name'), uuid=nova_root.findtext('uuid'),
        disks={target: identity.source_file(disk)
               for target, disk in identity.disks_by_target(nova_root).items()},
        console_log=console_logs[0] if console_logs else None,
        boot_sources=(domainxml.direct_boot_files(nova_xml), base_boot_files or {}),
        metadata=etree.tostring(metadata, encoding='unicode') if metadata is not None else None,
        ram=ram, nics=tuple(carried_nics))


def carried_nics(nova_xml, launch_meta):
    """nova's <interface> elements for the NICs a handoff residue carries (its
    metadata's `nics`), at their PCI addresses; [] for any other launch.

    The source made this server's ports with the VM's MACs: a carried NIC
    without nova's interface of that MAC is a spawn fault, said as it is.
    """
    with faults.spawn_errors('cloudlet restore failed'):
        wanted = nics.checked(launch_meta)
    by_mac = {nics.mac_of(iface): iface for iface in interfaces(nova_xml)}
    carried = []
    for nic in wanted:
        if nic['mac'] not in by_mac:
            raise faults.CloudletSpawnFailed(
                reason='the handoff residue carries NIC %s, but this server has no port with that MAC '
                       '(its ports: %s)' % (nic['mac'], ', '.join(sorted(by_mac)) or 'none'))
        with faults.spawn_errors('cloudlet restore failed'):
            carried.append(nics.carried(by_mac[nic['mac']], nic))
    return carried


def interfaces(xml):
    """The <interface> elements of a domain XML, as XML strings."""
    root = etree.fromstring(xml.encode())
    return [etree.tostring(iface, encoding='unicode') for iface in root.iterfind('devices/interface')]


class _RawDevice:
    """What nova's Guest.attach_device/detach_device need from a device config."""

    def __init__(self, xml):
        self.xml = xml

    def to_xml(self, pretty_print=True):
        return self.xml


# -- the restore -------------------------------------------------------------------

def restore_guest(driver, nova_xml, instance, launch, base_name, pause=False, post_xml_callback=None,
                  base_boot_files=None):
    """Define the domain, restore the launch memory, plug nova's NICs; return the Guest.

    Mirrors LibvirtDriver._create_guest (define, config drive callback,
    CPU power-up, start) with the start being a restore. `pause`: restore
    paused, as nova asks when it waits for Neutron's vif-plugged events (it
    resumes the guest itself once they arrive).
    """
    libvirt = libvirt_driver.libvirt
    carried = carried_nics(nova_xml, launch.meta)
    with faults.spawn_errors('cloudlet restore failed'):
        with _disks_refused():
            ident = nova_identity(nova_xml, base_boot_files, launch.ram, carried)
            if launch.streamed is None:
                xml = identity.write(launch.memory_path, ident, base_name)
            else:
                xml = identity.restore_xml(launch.streamed.header().xml, ident, base_name)
                launch.streamed.give_xml(xml)
    # The definition never maps the base's RAM file: only this restore (the
    # image's XML) does, so a cold boot, power-on or hard reboot starts on
    # ordinary RAM.
    definition = domainxml.without_ram_file(xml, ramfile.BACKEND_ID)
    # driver._host: nova exposes no public accessor for the libvirt connection's Host.
    guest = libvirt_guest.Guest.create(definition, driver._host)
    if post_xml_callback is not None:
        post_xml_callback()
    driver.cpu_api.power_up_for_instance(instance)
    flags = libvirt.VIR_DOMAIN_SAVE_PAUSED if pause else libvirt.VIR_DOMAIN_SAVE_RUNNING
    try:
        driver._host.get_connection().restoreFlags(launch.memory_path, None, flags)
    except libvirt.libvirtError as exc:
        cause = _residue_error(launch.streamed) if launch.streamed is not None else None
        if cause is not None:
            # The residue failed and closed the pipe short: its error says why.
            with faults.spawn_errors():
                raise cause
        raise faults.CloudletSpawnFailed(
            reason='libvirt could not restore the memory of base %s: %s'
                   % (base_name, exc.get_error_message() or exc)) from exc
    if launch.streamed is not None:
        with faults.spawn_errors():
            launch.streamed.result(30.0)    # ended: the restore had its last byte
    guest = driver._host.get_guest(instance)
    carried_macs = {nics.mac_of(iface) for iface in carried}
    plugged = [nics.without_rom(iface) for iface in interfaces(nova_xml)
               if nics.mac_of(iface) not in carried_macs]
    for iface in plugged:
        guest.attach_device(_RawDevice(iface), persistent=True, live=True)
    ensure_taps_up(carried + plugged)
    return guest


def _residue_error(streamed, timeout=30.0):
    """After a failed restore from its pipe: the streamed apply's own error
    (a bad residue, a broken link), or None when it only lost its reader.
    """
    streamed.abort()
    try:
        streamed.result(timeout)
    except errors.LaunchAbandoned:
        return None
    except errors.CloudletError as exc:
        return exc
    except Exception:   # noqa: BLE001 - e.g. the pipe broken by the reader: libvirt's error says why
        return None
    return None


# IFF_UP and IFF_PROMISC in /sys/class/net/<dev>/flags.
_IFF_UP, _IFF_PROMISC = 0x1, 0x100


def _flags(dev):
    try:
        with open('/sys/class/net/%s/flags' % dev) as f:
            return int(f.read().strip(), 16)
    except (OSError, ValueError):
        return None


def ensure_taps_up(nics, settle=0.5, poll=0.02):
    """See that the taps libvirt made for `nics` stay up.

    Open vSwitch's userspace datapath sets a new port's tap promiscuous with a
    read-modify-write of its flags; when that races with libvirt bringing the
    tap up, the tap ends down, the guest's packets are dropped at the host and
    the NIC is deaf for good (seen about once in 30 restores here). So: wait
    until each tap is promiscuous (the switch has opened it) or `settle` s
    have passed (other backends), and bring up any tap left down.
    """
    devs = [etree.fromstring(nic.encode()).find('target') for nic in nics]
    devs = [target.get('dev') for target in devs if target is not None and target.get('dev')]
    started = time.monotonic()
    pending = set(devs)
    while pending:
        elapsed = time.monotonic() - started
        for dev in sorted(pending):
            flags = _flags(dev)
            if flags is None:
                pending.discard(dev)      # not a tap here (libvirt made it in the attach)
                continue
            if flags & _IFF_PROMISC or elapsed > settle:
                if not flags & _IFF_UP:
                    LOG.warning('tap %s was left down after its hot-plug: bringing it up', dev)
                    nova.privsep.linux_net.set_device_enabled(dev)
                pending.discard(dev)
        if pending:
            time.sleep(poll)


def unplug_nics(driver, instance, guest, timeout=None):
    """Hot-unplug every NIC from the live domain, then its port from the virtual switch.

    The persistent definition keeps the NICs. Returns their live XML, for
    `replug_nics`. Waits until libvirt no longer lists them: the guest
    acknowledges the unplug (ACPI), which takes a moment. The ports leave the
    switch too (os-vif, as nova's unplug_vifs does) because the tap libvirt
    makes on the replug is a new device under the old name: Open vSwitch's
    userspace datapath would keep reading the vanished one, and the NIC would
    come back deaf. Plugged anew, the port is a new device to the switch and
    to Neutron's agent.
    """
    nics = interfaces(guest.get_xml_desc())
    if not nics:
        return []
    for nic in nics:
        guest.detach_device(_RawDevice(nic), persistent=False, live=True)
    timeout = CONF.libvirt.device_detach_timeout if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while interfaces(guest.get_xml_desc()):
        if time.monotonic() > deadline:
            for nic in nics:
                if nic not in interfaces(guest.get_xml_desc()):
                    guest.attach_device(_RawDevice(nic), persistent=False, live=True)
            raise faults.CloudletCaptureFailed(
                reason='the guest did not release its network interfaces within %d s' % timeout)
        time.sleep(0.2)
    try:
        driver.unplug_vifs(instance, instance.get_network_info())
    except Exception as exc:
        for nic in nics:
            guest.attach_device(_RawDevice(nic), persistent=False, live=True)
        raise faults.CloudletCaptureFailed(
            reason='could not take the ports off the virtual switch: %s' % exc) from exc
    return nics


def own_stock_image(path):
    """A memory image libvirt just saved at `path`: owned by this process, and a stock image
    (a VM restored over its base's RAM file is saved mapping it; a restore of the image
    runs on ordinary RAM).
    """
    if os.stat(path).st_uid != os.getuid():
        # libvirtd (root) wrote the file; make it ours, as _live_snapshot does.
        nova.privsep.path.chown(path, uid=os.getuid())
    ramfile.normalize_saved(path)


def replug_nics(driver, instance, guest, nics):
    """Put back what `unplug_nics` took: the ports on the switch, then the NICs."""
    if not nics:
        return
    driver.plug_vifs(instance, instance.get_network_info())
    for nic in nics:
        guest.attach_device(_RawDevice(nic), persistent=False, live=True)
    ensure_taps_up(nics)
