"""cloudlet_engine.identity: the XML a launch memory image is restored with."""

from lxml import etree
import pytest

from cloudlet_engine import errors
from cloudlet_engine import identity

BASE_XML = """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>base-vm</name>
  <uuid>11111111-1111-1111-1111-111111111111</uuid>
  <os><type>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='/bases/b/disk.raw'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='/bases/b/disk.config'/><target dev='hda' bus='ide'/></disk>
    <serial type='pty'><log file='/old/console.log'/></serial>
  </devices>
  <qemu:commandline><qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:5000-:8080'/></qemu:commandline>
</domain>"""


def retargeted(new):
    return etree.fromstring(identity.restore_xml(BASE_XML, new, 'b').encode())


def test_the_launch_disk_replaces_the_first_disk_only():
    disks = identity.keeping_other_disks(BASE_XML, '/launch/disk.qcow2')
    assert disks == {'vda': '/launch/disk.qcow2', 'hda': '/bases/b/disk.config'}
    root = retargeted(identity.Identity('vm-1', '2' * 8 + '-2222-2222-2222-' + '2' * 12, disks,
                                        console_log='/launch/console.log', port_forwards={8080: 6000}))
    assert root.findtext('name') == 'vm-1'
    first, second = root.findall('devices/disk')
    assert (first.find('source').get('file'), first.find('driver').get('type')) == ('/launch/disk.qcow2', 'qcow2')
    assert second.find('source').get('file') == '/bases/b/disk.config'
    assert root.find('devices/serial/log').get('file') == '/launch/console.log'
    assert b'hostfwd=tcp:127.0.0.1:6000-:8080' in etree.tostring(root)


def test_every_disk_of_the_base_needs_a_file_and_no_other():
    with pytest.raises(identity.DisksDiffer, match='base b has disks hda,vda, the instance needs sda,vda'):
        retargeted(identity.Identity('vm', 'u', {'vda': '/a', 'sda': '/b'}))


def test_a_forward_the_base_lacks_is_an_engine_error():
    disks = identity.keeping_other_disks(BASE_XML, '/launch/disk.qcow2')
    with pytest.raises(errors.CloudletError, match='cannot give the VM its identity: no hostfwd'):
        retargeted(identity.Identity('vm', 'u', disks, port_forwards={22: 6022}))


def test_metadata_replaces_the_base_s():
    disks = identity.keeping_other_disks(BASE_XML, '/d')
    root = retargeted(identity.Identity('vm', 'u', disks, metadata='<metadata><mine/></metadata>'))
    assert [child.tag for child in root.find('metadata')] == ['mine']


def test_no_nics_by_default():
    disks = identity.keeping_other_disks(BASE_XML, '/d')
    assert retargeted(identity.Identity('vm', 'u', disks)).findall('.//interface') == []


def test_the_nics_a_residue_carries_go_under_devices():
    disks = identity.keeping_other_disks(BASE_XML, '/d')
    carried = tuple("<interface type='ethernet'><mac address='fa:16:3e:00:00:0%d'/><target dev='tap%d'/>"
                    "<address type='pci' domain='0x0000' bus='0x00' slot='0x0%d' function='0x0'/>"
                    "<rom enabled='no'/></interface>" % (i, i, i + 2) for i in (1, 2))
    root = retargeted(identity.Identity('vm', 'u', disks, nics=carried))
    ifaces = root.findall('devices/interface')
    assert [i.find('mac').get('address') for i in ifaces] == ['fa:16:3e:00:00:01', 'fa:16:3e:00:00:02']
    assert [i.find('address').get('slot') for i in ifaces] == ['0x03', '0x04']
    assert [i.find('rom').get('enabled') for i in ifaces] == ['no', 'no']
    assert len(root.findall('.//interface')) == 2          # nowhere else
    # The base's devices stay, in their order, before them.
    assert [child.tag for child in root.find('devices')] == ['disk', 'disk', 'serial', 'interface', 'interface']
