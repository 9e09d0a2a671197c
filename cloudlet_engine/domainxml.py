"""libvirt domain XML: the test guest's XML, identity rewrites, ABI digests.

No nova imports.  lxml, unlike ElementTree, keeps namespace prefixes as
written (no `ns0:`), so rewritten XML still reads `qemu:commandline`; libvirt
itself matches that element by its namespace URI, QEMU_NS.

Vocabulary:
- *identity and host side*: name, uuid, MACs, host file paths, log files and
  forwarded host ports.  `retarget()` changes these so that one memory
  snapshot can be restored as another VM.
- *ABI*: what the guest can see (machine type, CPU, memory, vCPUs, devices
  and their addresses).  A restore must match it exactly; `abi_summary()`
  extracts it and `abi_digest()` hashes it.  Compute both on the XML that
  libvirt checks a restore against: the save image's XML
  (conn.saveImageGetXMLDesc) or dom.XMLDesc(VIR_DOMAIN_XML_MIGRATABLE).  Not on
  the live XMLDesc(0), which spells the CPU out feature by feature, and not on
  hand-written XML such as guest_domain_xml()'s: libvirt resolves the machine
  alias 'pc' to e.g. 'pc-i440fx-7.2', picks a CPU model, adds addresses.
"""

import hashlib
import json
import re

from lxml import etree

from cloudlet_engine import errors

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
_Q = '{%s}' % QEMU_NS

# `hostfwd=tcp:127.0.0.1:18100-:8080` (QEMU user-mode network, one forward).
_HOSTFWD = re.compile(r'^(hostfwd=(?:tcp|udp):[^:]*:)(\d+)(-[^:]*:)(\d+)$')

_MEMORY_UNITS = {
    'b': 1, 'bytes': 1,
    'kb': 1000, 'k': 1024, 'kib': 1024,
    'mb': 1000 ** 2, 'm': 1024 ** 2, 'mib': 1024 ** 2,
    'gb': 1000 ** 3, 'g': 1024 ** 3, 'gib': 1024 ** 3,
    'tb': 1000 ** 4, 't': 1024 ** 4, 'tib': 1024 ** 4,
}

# Devices whose `type` attribute selects a host backend (file, pty, network,
# ...), not something the guest sees.
_BACKEND_TYPED = {'disk', 'interface', 'serial', 'console', 'channel', 'parallel',
                  'filesystem', 'hostdev', 'rng', 'smartcard', 'redirdev', 'shmem'}
# Elements under <devices> that are purely host side.
_HOST_ONLY = {'emulator', 'graphics', 'audio'}
# The <os> elements naming the files of a direct kernel boot.
BOOT_TAGS = ('kernel', 'initrd')


def _sub(parent, tag, text=None, **attrs):
    element = etree.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        element.text = str(text)
    return element


def _slirp_args(port_forwards):
    forwards = ','.join('hostfwd=tcp:127.0.0.1:%d-:%d' % (int(host), int(guest))
                        for guest, host in sorted(port_forwards.items(), key=lambda kv: int(kv[0])))
    return ['-netdev', 'user,id=n0,' + forwards,
            '-device', 'virtio-net-pci,netdev=n0,addr=0x8']


def guest_domain_xml(name, uuid, kernel, initrd, disk_path, disk_format, memory_mib=256, vcpus=1,
                     port_forwards=None, console_log=None, virt_type='qemu'):
    """XML for the test guest (guest/ + tools/build-guest.sh).

    Direct kernel boot; the disk is virtio vda (none if `disk_path` is None);
    serial console on a pty, logged to `console_log`.  `port_forwards` ({guest_port: host_port}) adds a
    user-mode NIC with those TCP ports forwarded from 127.0.0.1 (slirp needs no
    bridge and nothing outside loopback); without it the guest has no NIC.
    """
    domain = etree.Element('domain', {'type': virt_type}, nsmap={'qemu': QEMU_NS})
    _sub(domain, 'name', name)
    _sub(domain, 'uuid', uuid)
    _sub(domain, 'memory', int(memory_mib), unit='MiB')
    _sub(domain, 'vcpu', int(vcpus))
    os_element = _sub(domain, 'os')
    _sub(os_element, 'type', 'hvm', arch='x86_64', machine='pc')
    _sub(os_element, 'kernel', kernel)
    _sub(os_element, 'initrd', initrd)
    _sub(os_element, 'cmdline', 'console=ttyS0 panic=-1 quiet')
    features = _sub(domain, 'features')
    _sub(features, 'acpi')   # PCI hotplug on 'pc' goes through ACPI
    # The guest's panic=-1 reboots on a panic; end the domain instead.
    _sub(domain, 'on_reboot', 'destroy')
    devices = _sub(domain, 'devices')
    if disk_path is not None:
        disk = _sub(devices, 'disk', type='file', device='disk')
        _sub(disk, 'driver', name='qemu', type=disk_format)
        _sub(disk, 'source', file=disk_path)
        _sub(disk, 'target', dev='vda', bus='virtio')
    serial = _sub(devices, 'serial', type='pty')
    if console_log:
        _sub(serial, 'log', file=console_log, append='on')
    _sub(serial, 'target', port=0)
    console = _sub(devices, 'console', type='pty')
    _sub(console, 'target', type='serial', port=0)
    _sub(devices, 'memballoon', model='none')
    if port_forwards:
        commandline = _sub(domain, _Q + 'commandline')
        for arg in _slirp_args(port_forwards):
            _sub(commandline, _Q + 'arg', value=arg)
    etree.indent(domain, space='  ')
    return etree.tostring(domain, encoding='unicode') + '\n'


def _parse(xml_text):
    return etree.fromstring(xml_text.encode() if isinstance(xml_text, str) else xml_text)


def _retarget_hostfwd(arg, port_forwards, seen):
    options = arg.split(',')
    for i, option in enumerate(options):
        match = _HOSTFWD.match(option)
        if match and int(match.group(4)) in port_forwards:
            guest_port = int(match.group(4))
            seen.add(guest_port)
            options[i] = '%s%d%s%d' % (match.group(1), int(port_forwards[guest_port]),
                                       match.group(3), guest_port)
    return ','.join(options)


def set_disk_source(disk, path):
    """Point a <disk> element at `path`, dropping the backing chain recorded
    for its old file (libvirt probes the new one).
    """
    source = disk.find('source')
    if source is None:
        source = etree.SubElement(disk, 'source')
    source.set('file', path)
    for backing in disk.findall('backingStore'):
        disk.remove(backing)


def direct_boot_files(xml_text):
    """{'kernel': path, 'initrd': path} of a domain that boots a kernel directly; {} for one that does not.

    'initrd' only where the domain names one. An <initrd> without a <kernel>
    boots nothing (libvirt ignores it), so it is left out too.
    """
    os_element = _parse(xml_text).find('os')
    if os_element is None:
        return {}
    paths = {tag: (os_element.findtext(tag) or '').strip() for tag in BOOT_TAGS}
    if not paths['kernel']:
        return {}
    return {tag: path for tag, path in paths.items() if path}


def kernel_cmdline(xml_text):
    """The kernel command line of a direct kernel boot (<os><cmdline>), or None."""
    return _parse(xml_text).findtext('os/cmdline')


def retarget(xml_text, name=None, uuid=None, disk_path=None, console_log=None, port_forwards=None,
             disk_format=None, boot_files=None):
    """Return `xml_text` with the VM's identity and host side replaced.

    Only the given fields change: `name`; `uuid` (also the SMBIOS uuid in
    <sysinfo>); the first disk's source file (its recorded backing chain is
    dropped, as it described the old file; libvirt probes the new one);
    the first disk's driver type (`disk_format`, e.g. 'qcow2'); the serial
    console's log file, where there is one; for `port_forwards` ({guest_port:
    new_host_port}) the host side of the matching `hostfwd=` forwards; and for
    `boot_files` ({'kernel': path, 'initrd': path}) the files of a direct kernel boot.
    """
    root = _parse(xml_text)
    if name is not None:
        root.find('name').text = name
    if uuid is not None:
        root.find('uuid').text = uuid
        for entry in root.iterfind('sysinfo/system/entry[@name="uuid"]'):
            entry.text = uuid
    if disk_path is not None:
        disk = root.find('devices/disk')
        if disk is None:
            raise ValueError('the domain has no disk to point at %s' % disk_path)
        set_disk_source(disk, disk_path)
    if disk_format is not None:
        disk = root.find('devices/disk')
        driver = disk.find('driver') if disk is not None else None
        if driver is None:
            raise ValueError('the domain has no disk driver to set to %s' % disk_format)
        driver.set('type', disk_format)
    if console_log is not None:
        # libvirt mirrors the serial port into <console>; keep both in step.
        for log in root.findall('devices/serial/log') + root.findall('devices/console/log'):
            log.set('file', console_log)
    if port_forwards:
        wanted = {int(guest): host for guest, host in port_forwards.items()}
        seen = set()
        for arg in root.iterfind('%scommandline/%sarg' % (_Q, _Q)):
            if 'hostfwd=' in arg.get('value', ''):
                arg.set('value', _retarget_hostfwd(arg.get('value'), wanted, seen))
        missing = sorted(set(wanted) - seen)
        if missing:
            raise ValueError('no hostfwd for guest port(s) %s' % ', '.join(map(str, missing)))
    for tag, path in (boot_files or {}).items():
        element = root.find('os/' + tag)
        if element is None:
            raise ValueError('the domain has no <%s> to point at %s' % (tag, path))
        element.text = path
    return etree.tostring(root, encoding='unicode')


def _ram_file_args(path, size, backend_id):
    if ',' in path:
        raise ValueError('a RAM file path may not contain a comma: %s' % path)
    return ['-object', 'memory-backend-file,id=%s,mem-path=%s,share=off,size=%d' % (backend_id, path, size),
            '-machine', 'memory-backend=%s' % backend_id]


def with_ram_file(xml_text, path, size, backend_id):
    """`xml_text` with guest RAM mapped from the file `path`, copy-on-write.

    libvirt 9 has no element for a memory backend file of our choosing (its
    <memoryBacking><source type='file'/> puts one of its own, per domain id,
    under memory_backing_dir and deletes it when the domain stops), so these
    are qemu:commandline arguments: a memory-backend-file object mapped
    share=off (MAP_PRIVATE), made the machine's RAM by a second -machine
    option, which QEMU merges over libvirt's memory-backend=pc.ram.
    """
    root = _parse(without_ram_file(xml_text, backend_id))
    commandline = root.find(_Q + 'commandline')
    if commandline is None:
        commandline = etree.SubElement(root, _Q + 'commandline', nsmap={'qemu': QEMU_NS})
    for arg in _ram_file_args(path, size, backend_id):
        etree.SubElement(commandline, _Q + 'arg', value=arg)
    return etree.tostring(root, encoding='unicode')


def without_ram_file(xml_text, backend_id):
    """`xml_text` without the arguments `with_ram_file` adds (unchanged if it has none)."""
    root = _parse(xml_text)
    commandline = root.find(_Q + 'commandline')
    if commandline is None:
        return xml_text if isinstance(xml_text, str) else xml_text.decode()
    args = commandline.findall(_Q + 'arg')
    ours = ('memory-backend-file,id=%s,' % backend_id, 'memory-backend=%s' % backend_id)
    for option, value in zip(args, args[1:]):
        if option.get('value') in ('-object', '-machine') and value.get('value', '').startswith(ours):
            commandline.remove(option)
            commandline.remove(value)
    if len(commandline) == 0:
        root.remove(commandline)
    return etree.tostring(root, encoding='unicode')


def virt_type(xml_text):
    """The domain's type: `kvm`, or `qemu` for TCG."""
    try:
        return _parse(xml_text).get('type')
    except etree.XMLSyntaxError as exc:
        raise errors.HypervisorError('cannot read the domain XML: %s' % exc) from exc


def ram_file(xml_text, backend_id):
    """The path `with_ram_file` mapped in `xml_text`, or None."""
    root = _parse(xml_text)
    prefix = 'memory-backend-file,id=%s,' % backend_id
    for arg in root.iterfind('%scommandline/%sarg' % (_Q, _Q)):
        value = arg.get('value', '')
        if value.startswith(prefix):
            for option in value[len(prefix):].split(','):
                if option.startswith('mem-path='):
                    return option[len('mem-path='):]
    return None


def _memory_kib(element):
    if element is None:
        return None
    unit = element.get('unit', 'KiB').lower()
    return int(element.text.strip()) * _MEMORY_UNITS[unit] // 1024


def _pci_or_other_address(address):
    """A canonical address: 'pci:0000:00:04.0', or type + sorted attributes."""
    attrs = dict(address.attrib)
    kind = attrs.pop('type', '')
    if kind == 'pci':
        numbers = [int(attrs.get(key, '0'), 0) for key in ('domain', 'bus', 'slot', 'function')]
        return 'pci:%04x:%02x:%02x.%x' % tuple(numbers)
    return kind + ':' + ','.join('%s=%s' % kv for kv in sorted(attrs.items()))


def _cpu_summary(root):
    cpu = root.find('cpu')
    if cpu is None or (not cpu.attrib and len(cpu) == 0):
        return 'default'
    summary = {'mode': cpu.get('mode', 'custom')}
    if cpu.findtext('model'):
        summary['model'] = cpu.findtext('model').strip()
    features = sorted('%s=%s' % (f.get('name'), f.get('policy', 'require'))
                      for f in cpu.iterfind('feature'))
    if features:
        summary['features'] = features
    topology = cpu.find('topology')
    if topology is not None:
        summary['topology'] = dict(sorted(topology.attrib.items()))
    return summary


def _device_descriptor(device):
    descriptor = {'kind': device.tag}
    if device.tag not in _BACKEND_TYPED and device.get('type'):
        descriptor['type'] = device.get('type')
    for attr in ('device', 'model', 'bus', 'index'):
        if device.get(attr) is not None:
            descriptor[attr] = device.get(attr)
    target = device.find('target')
    # An interface's <target dev='vnet0'> is the host tap name.
    if target is not None and device.tag != 'interface':
        descriptor['target'] = dict(sorted(target.attrib.items()))
        if target.find('model') is not None:
            descriptor['target_model'] = dict(sorted(target.find('model').attrib.items()))
    model = device.find('model')   # e.g. <interface><model type='virtio'/>
    if model is not None:
        descriptor['model_element'] = dict(sorted(model.attrib.items()))
    address = device.find('address')
    if address is not None:
        descriptor['address'] = _pci_or_other_address(address)
    return descriptor


def _is_implicit(descriptor):
    """Devices libvirt adds to every x86 guest by itself and leaves out of the
    migratable XML, so that save-image and migratable XML digest alike.
    """
    kind, kind_type = descriptor['kind'], descriptor.get('type')
    if kind == 'controller' and descriptor.get('index') == '0':
        if kind_type == 'pci' and descriptor.get('model') == 'pci-root':
            return True
        if (kind_type == 'usb' and descriptor.get('model') == 'piix3-uhci'
                and descriptor.get('address') in (None, 'pci:0000:00:01.2')):
            return True
    return kind == 'input' and descriptor.get('bus') == 'ps2'


def _commandline_descriptors(root):
    """Guest devices added through qemu:commandline, host details removed."""
    args = [arg.get('value', '') for arg in root.iterfind('%scommandline/%sarg' % (_Q, _Q))]
    descriptors = []
    for option, value in zip(args, args[1:] + ['']):
        if option == '-device':
            props = [p for p in value.split(',') if not p.startswith('mac=')]
            descriptors.append({'kind': 'qemu-device', 'value': ','.join(props)})
        elif option == '-netdev':
            # Only the backend kind; ids, forwards and ports are host side.
            descriptors.append({'kind': 'qemu-netdev', 'type': value.split(',')[0]})
    return descriptors


def abi_summary(xml_text):
    """What a restore of a memory snapshot taken with this XML must match.

    Excludes identity and host side: name, uuid, MACs, file paths, logs, host
    ports, aliases, disk formats and cache modes.  (libvirt's own ABI check
    also compares NIC MACs: a restore under a new identity must carry them
    over, like name and uuid; they are not hardware the digest is about.)
    """
    root = _parse(xml_text)
    os_type = root.find('os/type')
    devices = root.find('devices')
    device_list = []
    if devices is not None:
        device_list = [_device_descriptor(device) for device in devices
                       if isinstance(device.tag, str) and device.tag not in _HOST_ONLY]
        device_list = [d for d in device_list if not _is_implicit(d)]
    features = root.find('features')
    return {
        'virt_type': root.get('type'),
        'arch': os_type.get('arch') if os_type is not None else None,
        'machine': os_type.get('machine') if os_type is not None else None,
        'cpu': _cpu_summary(root),
        'memory_kib': _memory_kib(root.find('memory')),
        'vcpus': int(root.findtext('vcpu', '1').strip()),
        'features': sorted(f.tag for f in features if isinstance(f.tag, str)) if features is not None else [],
        'devices': device_list + _commandline_descriptors(root),
    }


def abi_digest(xml_text):
    """sha256 hex of abi_summary() as canonical JSON."""
    canonical = json.dumps(abi_summary(xml_text), sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(canonical.encode()).hexdigest()
