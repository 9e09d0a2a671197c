"""The restored VM's identity: the launch memory image's domain XML, retargeted.

libvirt refuses a restore under another name or uuid, and a base's memory
snapshot was taken as another domain. So the domain XML stored in the launch
memory image (the base's own: it matches the memory state) is given the new
VM's identity and host side (name, uuid, disks, console log, kernel and
initrd, metadata, forwarded ports) and written back into the image header,
within the 64 KiB of slack libvirt leaves there (doc/overlay-format.md, "The
memory image"); the restore then needs no replacement XML. Devices stay the
base's, plus the NICs a handoff residue carries (nics.py): their state is in
the memory stream, so they must exist when QEMU loads it.

One path for every caller: the nova driver (cloudlet_nova/virt/restore.py)
and `synthesis.synthesize` (the `cloudlet` command, the bench) both call
`write`, so what the bench measures is what nova runs.
"""

import dataclasses

from lxml import etree

from cloudlet_engine import basevm
from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import ramfile
from cloudlet_engine import savefile


class DisksDiffer(errors.BaseVMError):
    """The new VM's disks are not the base's (by target device)."""


@dataclasses.dataclass
class Identity:
    """Who the restored VM is, and its files on this host."""
    name: str
    uuid: str
    # target device -> file, one for every disk of the base; the base's first
    # disk is the launch disk (qcow2 over the base disk).
    disks: dict
    console_log: str = None
    # {guest_port: host_port} for the base's user-mode hostfwd= forwards.
    port_forwards: dict = None
    # {'kernel': path, 'initrd': path} maps, in order of preference: QEMU
    # opens the kernel and initrd of a direct kernel boot even to restore.
    boot_sources: tuple = ()
    # A <metadata> element (XML) to put in place of the base's.
    metadata: str = None
    # The base's ramfile.RamFile when the launch image is sparse: guest RAM
    # is then mapped from its file (domainxml.with_ram_file).
    ram: object = None
    # <interface> elements (XML) to add: the NICs a handoff residue carries,
    # as this host wires them (nics.carried).
    nics: tuple = ()


def disks_by_target(xml_text):
    """{target dev: <disk> element} of a domain XML's disks, in order."""
    root = etree.fromstring(xml_text.encode()) if isinstance(xml_text, str) else xml_text
    disks = {}
    for disk in root.iterfind('devices/disk'):
        target = disk.find('target')
        if target is not None and target.get('dev'):
            disks[target.get('dev')] = disk
    return disks


def source_file(disk):
    source = disk.find('source')
    return source.get('file') if source is not None else None


def keeping_other_disks(image_xml, launch_disk):
    """The `disks` of an Identity whose only new disk is the launch disk."""
    disks = {target: source_file(disk) for target, disk in disks_by_target(image_xml).items()}
    if not disks:
        raise errors.BaseVMError('the base has no disk to restore from')
    disks[next(iter(disks))] = launch_disk
    return disks


def restore_xml(image_xml, identity, base_name):
    """The image's XML with `identity`; DisksDiffer, BaseVMError (a boot file
    missing everywhere) or CloudletError (e.g. a port forward the base lacks).
    """
    base_disks = disks_by_target(image_xml)
    if set(identity.disks) != set(base_disks):
        raise DisksDiffer('base %s has disks %s, the instance needs %s: capture bases with the flavor '
                          'disks, disk bus and config drive of the instances made from them'
                          % (base_name, ','.join(sorted(base_disks)) or 'none',
                             ','.join(sorted(identity.disks)) or 'none'))
    root_target = next(iter(base_disks), None)
    boot_files = basevm.restore_boot_files(image_xml, base_name, *identity.boot_sources)
    try:
        xml = domainxml.retarget(
            image_xml, name=identity.name, uuid=identity.uuid,
            disk_path=identity.disks[root_target] if root_target else None,
            disk_format='qcow2' if root_target else None,
            console_log=identity.console_log, port_forwards=identity.port_forwards,
            boot_files=boot_files)
    except ValueError as exc:
        raise errors.CloudletError('cannot give the VM its identity: %s' % exc)
    root = etree.fromstring(xml.encode())
    for target, disk in disks_by_target(root).items():
        if target != root_target and identity.disks[target]:
            domainxml.set_disk_source(disk, identity.disks[target])
    if identity.metadata is not None:
        metadata = etree.fromstring(identity.metadata.encode())
        old = root.find('metadata')
        if old is not None:
            root.replace(old, metadata)
        else:
            root.insert(2, metadata)
    devices = root.find('devices')
    for nic in identity.nics:
        devices.append(etree.fromstring(nic.encode()))
    xml = etree.tostring(root, encoding='unicode')
    if identity.ram is not None:
        xml = domainxml.with_ram_file(xml, identity.ram.path, identity.ram.size, ramfile.BACKEND_ID)
    return xml


def write(memory_path, identity, base_name):
    """Give the launch memory image at `memory_path` its identity; the XML written."""
    image = savefile.read_save_image(memory_path)
    xml = restore_xml(image.xml, identity, base_name)
    # No fsync: the image is read once by the restore, then deleted.
    savefile.rewrite_xml(memory_path, xml, fsync=False)
    return xml
