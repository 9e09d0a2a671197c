"""domainxml: the test guest's XML, retarget(), abi_summary()/abi_digest()."""

import copy

from lxml import etree
import pytest

from cloudlet_engine import domainxml

Q = '{%s}' % domainxml.QEMU_NS

# The XML inside a real save image (libvirt 9.0, QEMU 7.2) of the test guest,
# plus a <sysinfo> block to show that retarget() keeps the SMBIOS uuid in step.
SAVED_XML = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>cl-smoke</name>
  <uuid>d18a8c6b-5924-4265-8153-80311f1b3772</uuid>
  <memory unit='KiB'>262144</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>OpenStack Foundation</entry>
      <entry name='uuid'>d18a8c6b-5924-4265-8153-80311f1b3772</entry>
    </system>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/var/cache/openstack-cloudlet/guest/vmlinuz</kernel>
    <initrd>/var/cache/openstack-cloudlet/guest/initrd.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
  </features>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/tmp/cl-smoke/overlay.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'/>
    <serial type='pty'>
      <log file='/var/tmp/cl-smoke/console.log' append='on'/>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <log file='/var/tmp/cl-smoke/console.log' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:34487-:7,hostfwd=tcp:127.0.0.1:38511-:8080'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=n0,addr=0x8'/>
  </qemu:commandline>
</domain>
"""

NEW_UUID = '0b5e1c1e-1111-4222-8333-444455556666'


def _leaves(xml_text):
    """{path: (text, attributes)} for every element, to diff two XMLs."""
    root = etree.fromstring(xml_text.encode())
    tree = root.getroottree()
    return {tree.getpath(el): ((el.text or '').strip(), dict(el.attrib))
            for el in root.iter() if isinstance(el.tag, str)}


def _changed_paths(old_xml, new_xml):
    old, new = _leaves(old_xml), _leaves(new_xml)
    assert old.keys() == new.keys()
    return {path for path in old if old[path] != new[path]}


def _edit(xml_text, func):
    root = etree.fromstring(xml_text.encode())
    func(root)
    return etree.tostring(root, encoding='unicode')


def _qemu_args(xml_text):
    root = etree.fromstring(xml_text.encode())
    return [arg.get('value') for arg in root.iterfind('%scommandline/%sarg' % (Q, Q))]


# guest_domain_xml

def _guest_xml(**kwargs):
    args = dict(name='g1', uuid=NEW_UUID, kernel='/k/vmlinuz', initrd='/k/initrd.gz',
                disk_path='/d/overlay.qcow2', disk_format='qcow2', console_log='/d/console.log')
    args.update(kwargs)
    return domainxml.guest_domain_xml(**args)


def test_guest_xml_shape():
    root = etree.fromstring(_guest_xml(memory_mib=512, vcpus=2).encode())
    assert root.get('type') == 'qemu'
    assert (root.findtext('name'), root.findtext('uuid')) == ('g1', NEW_UUID)
    assert root.find('memory').get('unit') == 'MiB' and root.findtext('memory') == '512'
    assert root.findtext('vcpu') == '2'
    assert root.find('os/type').get('machine') == 'pc'
    assert root.findtext('os/kernel') == '/k/vmlinuz' and root.findtext('os/initrd') == '/k/initrd.gz'
    assert root.findtext('os/cmdline') == 'console=ttyS0 panic=-1 quiet'
    assert root.find('features/acpi') is not None
    assert root.findtext('on_reboot') == 'destroy'
    disk = root.find('devices/disk')
    assert disk.find('driver').get('type') == 'qcow2'
    assert disk.find('source').get('file') == '/d/overlay.qcow2'
    assert dict(disk.find('target').attrib) == {'dev': 'vda', 'bus': 'virtio'}
    log = root.find('devices/serial/log')
    assert (log.get('file'), log.get('append')) == ('/d/console.log', 'on')
    assert root.find('devices/memballoon').get('model') == 'none'


def test_guest_xml_virt_type_and_no_disk():
    root = etree.fromstring(_guest_xml(virt_type='kvm', disk_path=None).encode())
    assert root.get('type') == 'kvm'
    assert root.find('devices/disk') is None


def test_guest_xml_port_forwards_make_a_slirp_nic_on_loopback():
    xml = _guest_xml(port_forwards={8080: 18100, 7: 18101})
    assert 'xmlns:qemu="%s"' % domainxml.QEMU_NS in xml and '<qemu:commandline>' in xml
    assert _qemu_args(xml) == [
        '-netdev', 'user,id=n0,hostfwd=tcp:127.0.0.1:18101-:7,hostfwd=tcp:127.0.0.1:18100-:8080',
        '-device', 'virtio-net-pci,netdev=n0,addr=0x8']


@pytest.mark.parametrize('port_forwards', [None, {}])
def test_guest_xml_without_port_forwards_has_no_nic(port_forwards):
    xml = _guest_xml(port_forwards=port_forwards)
    root = etree.fromstring(xml.encode())
    assert root.find(Q + 'commandline') is None
    assert root.find('devices/interface') is None
    assert 'hostfwd' not in xml


# retarget

def test_retarget_changes_only_what_it_is_given():
    new = domainxml.retarget(SAVED_XML, name='instance-0000002a', uuid=NEW_UUID,
                             disk_path='/new/disk.qcow2', console_log='/new/console.log',
                             port_forwards={8080: 20080, 7: 20007})
    assert _changed_paths(SAVED_XML, new) == {
        '/domain/name', '/domain/uuid', '/domain/sysinfo/system/entry[2]',
        '/domain/devices/disk/source', '/domain/devices/serial/log', '/domain/devices/console/log',
        '/domain/qemu:commandline/qemu:arg[2]'}
    root = etree.fromstring(new.encode())
    assert root.findtext('name') == 'instance-0000002a'
    assert root.findtext('uuid') == NEW_UUID
    assert root.findtext('sysinfo/system/entry[@name="uuid"]') == NEW_UUID
    assert root.find('devices/disk/source').get('file') == '/new/disk.qcow2'
    assert root.find('devices/serial/log').get('file') == '/new/console.log'
    assert root.find('devices/console/log').get('file') == '/new/console.log'
    assert _qemu_args(new)[1] == 'user,id=n0,hostfwd=tcp:127.0.0.1:20007-:7,hostfwd=tcp:127.0.0.1:20080-:8080'
    # The qemu: prefix survives (libvirt keys qemu:commandline on the namespace URI).
    assert 'xmlns:qemu="%s"' % domainxml.QEMU_NS in new and '<qemu:commandline>' in new


@pytest.mark.parametrize('kwargs, paths', [
    ({}, set()),
    ({'name': 'other'}, {'/domain/name'}),
    ({'uuid': NEW_UUID}, {'/domain/uuid', '/domain/sysinfo/system/entry[2]'}),
    ({'disk_path': '/x.qcow2'}, {'/domain/devices/disk/source'}),
    ({'console_log': '/x.log'}, {'/domain/devices/serial/log', '/domain/devices/console/log'}),
    ({'port_forwards': {8080: 1234}}, {'/domain/qemu:commandline/qemu:arg[2]'}),
])
def test_retarget_one_field_at_a_time(kwargs, paths):
    assert _changed_paths(SAVED_XML, domainxml.retarget(SAVED_XML, **kwargs)) == paths


def test_retarget_port_forwards_keep_other_forwards():
    args = _qemu_args(domainxml.retarget(SAVED_XML, port_forwards={'8080': 1234}))
    assert args[1] == 'user,id=n0,hostfwd=tcp:127.0.0.1:34487-:7,hostfwd=tcp:127.0.0.1:1234-:8080'


def test_retarget_unknown_guest_port_is_an_error():
    with pytest.raises(ValueError, match='guest port.* 22'):
        domainxml.retarget(SAVED_XML, port_forwards={22: 2222})


def test_retarget_drops_the_old_backing_chain_of_a_moved_disk():
    live = SAVED_XML.replace(
        "<source file='/var/tmp/cl-smoke/overlay.qcow2'/>",
        "<source file='/var/tmp/cl-smoke/overlay.qcow2' index='1'/>"
        "<backingStore type='file' index='2'><format type='raw'/>"
        "<source file='/base/disk.raw'/><backingStore/></backingStore>")
    root = etree.fromstring(domainxml.retarget(live, disk_path='/new.qcow2').encode())
    assert root.find('devices/disk/backingStore') is None
    assert root.find('devices/disk/source').get('file') == '/new.qcow2'


def test_retarget_without_disk_is_an_error_without_log_a_no_op():
    bare = _guest_xml(disk_path=None, console_log=None)
    with pytest.raises(ValueError):
        domainxml.retarget(bare, disk_path='/x.qcow2')
    with pytest.raises(ValueError):
        domainxml.retarget(bare, disk_format='qcow2')
    # A base captured without a serial log (e.g. by nova) keeps having none.
    assert 'x.log' not in domainxml.retarget(bare, console_log='/x.log')


def test_retarget_sets_disk_format():
    xml = _guest_xml(disk_path='/d/disk.raw', disk_format='raw')
    root = etree.fromstring(domainxml.retarget(xml, disk_format='qcow2').encode())
    assert root.find('devices/disk/driver').get('type') == 'qcow2'


# abi_summary / abi_digest

def test_abi_summary_of_a_saved_image():
    summary = domainxml.abi_summary(SAVED_XML)
    assert summary['machine'] == 'pc-i440fx-7.2'
    assert summary['arch'] == 'x86_64' and summary['virt_type'] == 'qemu'
    assert summary['cpu'] == {'mode': 'custom', 'model': 'qemu64'}
    assert (summary['memory_kib'], summary['vcpus']) == (262144, 1)
    assert summary['features'] == ['acpi']
    kinds = [device['kind'] for device in summary['devices']]
    # Implicit x86 devices and host-only elements (emulator, audio) are left out.
    assert kinds == ['disk', 'serial', 'console', 'memballoon', 'qemu-netdev', 'qemu-device']
    assert summary['devices'][0]['address'] == 'pci:0000:00:02.0'
    flat = repr(summary)
    for host_side in ('/var/tmp', 'cl-smoke', 'd18a8c6b', 'console.log', '34487', '38511', 'qcow2'):
        assert host_side not in flat


def test_abi_digest_is_stable_under_retarget():
    new = domainxml.retarget(SAVED_XML, name='instance-0000002a', uuid=NEW_UUID,
                             disk_path='/new/disk.qcow2', console_log='/new/console.log',
                             port_forwards={8080: 20080, 7: 20007})
    assert domainxml.abi_digest(new) == domainxml.abi_digest(SAVED_XML)
    assert len(domainxml.abi_digest(SAVED_XML)) == 64


def test_abi_digest_matches_the_migratable_form():
    """libvirt's migratable XML leaves out implicit devices the save image lists."""
    def migratable(root):
        devices = root.find('devices')
        for xpath in ('controller', 'input[@type="keyboard"]', 'audio'):
            for element in devices.findall(xpath):
                devices.remove(element)
    assert domainxml.abi_digest(_edit(SAVED_XML, migratable)) == domainxml.abi_digest(SAVED_XML)


def test_abi_digest_ignores_memory_units_and_mac_of_slirp_device():
    def in_mib(root):
        root.find('memory').set('unit', 'MiB')
        root.find('memory').text = '256'

    def with_mac(root):
        root.findall('%scommandline/%sarg' % (Q, Q))[3].set(
            'value', 'virtio-net-pci,netdev=n0,addr=0x8,mac=52:54:00:12:34:56')
    digest = domainxml.abi_digest(SAVED_XML)
    assert domainxml.abi_digest(_edit(SAVED_XML, in_mib)) == digest
    assert domainxml.abi_digest(_edit(SAVED_XML, with_mac)) == digest


def _set(xpath, attr, value):
    def edit(root):
        element = root.find(xpath)
        if attr is None:
            element.text = value
        else:
            element.set(attr, value)
    return edit


def _remove_nic(root):
    root.remove(root.find(Q + 'commandline'))


def _add_disk(root):
    disk = copy.deepcopy(root.find('devices/disk'))
    disk.find('target').set('dev', 'vdb')
    disk.find('address').set('slot', '0x03')
    root.find('devices').append(disk)


@pytest.mark.parametrize('edit', [
    _set('os/type', 'machine', 'pc-i440fx-7.1'),
    _set('os/type', 'machine', 'pc-q35-7.2'),
    _set('memory', None, '524288'),
    _set('vcpu', None, '2'),
    _set('cpu/model', None, 'Nehalem'),
    _set('devices/disk/address', 'slot', '0x05'),
    _set('devices/disk/target', 'bus', 'sata'),
    _set('devices/memballoon', 'model', 'virtio'),
    _remove_nic,
    _add_disk,
], ids=['machine', 'machine-q35', 'memory', 'vcpus', 'cpu', 'disk-address', 'disk-bus', 'balloon',
        'no-nic', 'extra-disk'])
def test_abi_digest_changes_with_the_guest_visible_hardware(edit):
    assert domainxml.abi_digest(_edit(SAVED_XML, edit)) != domainxml.abi_digest(SAVED_XML)


def test_abi_digest_of_guest_xml_with_and_without_nic_differ():
    with_nic = _guest_xml(port_forwards={8080: 1, 7: 2})
    other_ports = _guest_xml(port_forwards={8080: 3, 7: 4}, name='g2', uuid='x', disk_path='/y',
                             console_log='/z')
    assert domainxml.abi_digest(with_nic) == domainxml.abi_digest(other_ports)
    assert domainxml.abi_digest(with_nic) != domainxml.abi_digest(_guest_xml())
