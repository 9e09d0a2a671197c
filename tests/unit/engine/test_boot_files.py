"""Bases of guests that boot a kernel directly: boot files in the base, its package, its capture and restore.

The guest here is what the bug report saw: a base whose memory snapshot names
the kernel and initrd of a long-deleted nova instance.
"""

import json
import os
import random
import zipfile

from lxml import etree
import pytest

from cloudlet_engine import basestore
from cloudlet_engine import basevm
from cloudlet_engine import capture
from cloudlet_engine import errors
from cloudlet_engine import savefile
from cloudlet_engine import synthesis
from tests.fixtures.boot_files import INITRD_DATA
from tests.fixtures.boot_files import KERNEL_DATA
from tests.fixtures.boot_files import write_boot_files
from tests.fixtures import fake_savefile

PAGE = 4096
GONE = '/var/lib/nova/instances/0b3a8e2c-1111-4222-8333-000000000001'
CMDLINE = 'root=/dev/vda console=ttyS0 no_timer_check'
DISK_CHUNKS = 16

# The domain XML of the snapshot; %(os)s is its boot: a kernel, or a disk.
XML = """<domain type='kvm'>
  <name>instance-000000ff</name>
  <uuid>0b3a8e2c-1111-4222-8333-000000000001</uuid>
  <memory unit='KiB'>65536</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>%(os)s</os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='%(disk)s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
"""
KERNEL_BOOT = '<kernel>%(kernel)s</kernel><initrd>%(initrd)s</initrd><cmdline>' + CMDLINE + '</cmdline>'
DISK_BOOT = "<boot dev='hd'/>"
GONE_FILES = {'kernel': GONE + '/kernel', 'initrd': GONE + '/ramdisk', 'disk': GONE + '/disk'}

# What the engine before boot files gave this base as its id: it must not change.
BASE_ID = '5f5d85b10a7b3cf252929cbc6a4fbdbf9fe11b40d2dd44049106c9337106e63a'


def domain_xml(files, boot=KERNEL_BOOT):
    return XML % dict(files, os=boot % files)


def disk_bytes():
    rng = random.Random(5)
    return b''.join(rng.randbytes(PAGE) if i % 2 else bytes(PAGE) for i in range(DISK_CHUNKS))


def pages():
    rng = random.Random(6)
    return [('pc.ram', i * PAGE, rng.randbytes(PAGE) if i % 3 else None) for i in range(12)]


def make_base(root, boot_files=None, xml=None, name='boot-base'):
    """A base of the snapshot (default: naming the gone instance's files), with or without boot files."""
    work = os.path.join(str(root), 'work-%d' % len(os.listdir(str(root))))
    os.makedirs(work)
    with open(os.path.join(work, 'in.raw'), 'wb') as f:
        f.write(disk_bytes())
    fake_savefile.build_fake_save_image(os.path.join(work, 'in.save'), xml or domain_xml(GONE_FILES), pages())
    return basevm.build_base(work, os.path.join(work, 'in.raw'), os.path.join(work, 'in.save'), name,
                             boot_files=boot_files)


@pytest.fixture
def boot_files(tmp_path):
    directory = tmp_path / 'guest'
    directory.mkdir()
    return write_boot_files(str(directory))


@pytest.fixture
def store(tmp_path):
    return basestore.BaseStore(str(tmp_path / 'store'))


def export(base, tmp_path, name='base.zip'):
    return basevm.export_package(base, str(tmp_path / name))


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


# ---------------------------------------------------------------- the base


def test_boot_files_are_stored_and_listed(tmp_path, boot_files):
    base = make_base(tmp_path, boot_files)
    assert base.manifest['version'] == basevm.BOOT_VERSION == 2
    assert base.manifest['boot'] == {'files': ['kernel', 'initrd'], 'cmdline': CMDLINE}
    assert base.boot_files() == {'kernel': os.path.join(base.path, 'kernel'),
                                 'initrd': os.path.join(base.path, 'initrd')}
    assert _read(base.boot_files()['kernel']) == KERNEL_DATA
    assert _read(base.boot_files()['initrd']) == INITRD_DATA
    assert base.manifest['files']['kernel']['size'] == len(KERNEL_DATA)
    assert base.kernel_cmdline == CMDLINE
    assert base.describe()['boot_files'] == ['kernel', 'initrd']
    assert os.path.exists(boot_files['kernel'])          # copied: the guest still boots its own


def test_boot_files_leave_the_base_id_alone(tmp_path, boot_files):
    with_boot = make_base(tmp_path, boot_files)
    without = make_base(tmp_path)
    assert with_boot.base_id == without.base_id == BASE_ID
    assert without.manifest['version'] == basevm.PLAIN_VERSION == 1
    assert 'boot' not in without.manifest and without.boot_files() == {}
    assert without.kernel_cmdline is None


@pytest.mark.parametrize('given, message', [
    ({'kernel'}, 'boot files kernel given, but the memory snapshot boots initrd\\+kernel'),
    ({'kernel', 'initrd', 'disk'}, 'given'),
])
def test_boot_files_must_be_those_the_snapshot_boots(tmp_path, boot_files, given, message):
    with pytest.raises(errors.BaseVMError, match=message):
        make_base(tmp_path, {name: boot_files.get(name, boot_files['kernel']) for name in given})


def test_a_base_that_boots_from_its_disk_takes_no_boot_files(tmp_path, boot_files):
    xml = domain_xml(GONE_FILES, boot=DISK_BOOT)
    with pytest.raises(errors.BaseVMError, match='the memory snapshot boots from its disk'):
        make_base(tmp_path, boot_files, xml=xml)


def test_a_kernel_without_initrd(tmp_path, boot_files):
    xml = domain_xml(GONE_FILES, boot='<kernel>%(kernel)s</kernel>')
    base = make_base(tmp_path, {'kernel': boot_files['kernel']}, xml=xml)
    assert base.manifest['boot'] == {'files': ['kernel'], 'cmdline': None}
    assert list(base.boot_files()) == ['kernel']


# ---------------------------------------------------------------- the package


def test_package_with_boot_files_round_trip(tmp_path, boot_files, store):
    base = make_base(tmp_path, boot_files)
    package = export(base, tmp_path)
    with zipfile.ZipFile(package) as zf:
        assert sorted(zf.namelist()) == sorted(['manifest.json', *basevm.FILES, 'kernel', 'initrd'])
    imported = basevm.import_package(store, package)
    assert imported.base_id == BASE_ID and imported.manifest['version'] == 2
    assert _read(imported.boot_files()['kernel']) == KERNEL_DATA
    assert _read(imported.boot_files()['initrd']) == INITRD_DATA
    assert imported.kernel_cmdline == CMDLINE
    assert oct(os.stat(imported.boot_files()['kernel']).st_mode & 0o777) == '0o644'   # QEMU reads it
    assert basevm.import_package(store, package).path == imported.path                 # idempotent


def test_version_1_package_without_boot_files_imports_with_its_id(tmp_path, store):
    package = export(make_base(tmp_path), tmp_path)
    with zipfile.ZipFile(package) as zf:
        manifest = json.loads(zf.read('manifest.json'))
        assert sorted(zf.namelist()) == sorted(['manifest.json', *basevm.FILES])
    # Exactly what engines that know only version 1 write and read.
    assert manifest['version'] == 1 and 'boot' not in manifest
    imported = basevm.import_package(store, package)
    assert imported.base_id == BASE_ID and imported.boot_files() == {}


def test_a_package_with_boot_files_completes_a_cached_base_without(tmp_path, boot_files, store):
    cached = basevm.import_package(store, export(make_base(tmp_path), tmp_path, 'v1.zip'))
    again = basevm.import_package(store, export(make_base(tmp_path, boot_files), tmp_path, 'v2.zip'))
    assert again.path == cached.path
    assert _read(again.boot_files()['kernel']) == KERNEL_DATA
    assert again.manifest['version'] == 2 and again.name == 'boot-base'
    assert os.listdir(store.root) == [BASE_ID]
    # ... and an older package of it does not take them away.
    assert basevm.import_package(store, str(tmp_path / 'v1.zip')).boot_files() == again.boot_files()


def rewrite_package(package, out, member_data=None, drop=(), add=None, manifest_changes=None):
    """A copy of a package with members changed ({name: bytes}), dropped, added or the manifest edited."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, 'w') as dst:
        for info in src.infolist():
            if info.filename in drop:
                continue
            data = src.read(info)
            if info.filename == 'manifest.json' and manifest_changes:
                manifest = json.loads(data)
                manifest.update(manifest_changes)
                data = json.dumps(manifest).encode()
            dst.writestr(info, (member_data or {}).get(info.filename, data))
        for name, data in (add or {}).items():
            dst.writestr(name, data)
    return out


@pytest.mark.parametrize('change, message', [
    (dict(member_data={'kernel': b'X' * len(KERNEL_DATA)}), 'kernel: SHA-256 mismatch'),
    (dict(member_data={'initrd': INITRD_DATA + b'!'}), 'initrd: 3001 bytes in the package'),
    (dict(drop=('initrd',)), 'package lacks initrd'),
    (dict(add={'vmlinuz': KERNEL_DATA}), 'members its manifest does not list: vmlinuz'),
    (dict(manifest_changes={'version': 1}), 'a version 1 manifest has no boot files'),
    (dict(manifest_changes={'version': 3}), 'has version 3; this engine reads versions 1 and 2'),
    (dict(manifest_changes={'boot': {'files': ['initrd'], 'cmdline': None}}), 'boot files'),
    (dict(manifest_changes={'boot': {'files': ['kernel', 'initrd'], 'cmdline': 7}}), 'command line'),
])
def test_damaged_boot_files_are_refused(tmp_path, boot_files, store, change, message):
    package = export(make_base(tmp_path, boot_files), tmp_path)
    bad = rewrite_package(package, str(tmp_path / 'bad.zip'), **change)
    with pytest.raises(errors.BaseVMError, match=message):
        basevm.import_package(store, bad)
    assert not os.path.isdir(store.root) or os.listdir(store.root) == []


def test_boot_files_in_a_version_1_package_are_refused(tmp_path, boot_files, store):
    # What an engine of version 1 would have silently dropped.
    package = export(make_base(tmp_path), tmp_path)
    bad = rewrite_package(package, str(tmp_path / 'bad.zip'), add={'kernel': KERNEL_DATA})
    with pytest.raises(errors.BaseVMError, match='does not list: kernel'):
        basevm.import_package(store, bad)


# ---------------------------------------------------------------- capture and restore


class FakeDomain:
    def __init__(self, xml, memory_pages):
        self.xml, self.pages, self.running = xml, memory_pages, True

    def name(self):
        return domain_name(self.xml)

    def XMLDesc(self, flags):
        return self.xml

    def saveFlags(self, path, dxml, flags):
        fake_savefile.build_fake_save_image(path, self.xml, self.pages)
        self.running = False


def domain_name(xml):
    return etree.fromstring(xml.encode()).findtext('name')


class FakeConnection:
    """The libvirt calls of engine capture and synthesis; a restore records the XML it starts with."""

    def __init__(self, *domains):
        self.domains = {d.name(): d for d in domains}
        self.restored = []

    def lookupByName(self, name):
        return self.domains.get(name)

    def saveImageGetXMLDesc(self, path, flags):
        return savefile.read_save_image(path).xml

    def restoreFlags(self, path, dxml, flags):
        xml = savefile.read_save_image(path).xml
        self.restored.append(xml)
        self.domains[domain_name(xml)] = FakeDomain(xml, [])


def test_capture_base_copies_the_kernel_and_initrd(tmp_path, boot_files, store):
    disk = tmp_path / 'guest' / 'disk.raw'
    disk.write_bytes(disk_bytes())
    domain = FakeDomain(domain_xml(dict(boot_files, disk=str(disk))), pages())
    base = capture.capture_base(FakeConnection(domain), 'instance-000000ff', store, 'captured')
    assert not domain.running
    assert _read(base.boot_files()['kernel']) == KERNEL_DATA
    assert _read(base.boot_files()['initrd']) == INITRD_DATA
    assert base.kernel_cmdline == CMDLINE and base.path == store.path(base.base_id)


def synthesize(base, tmp_path, conn):
    return synthesis.synthesize(base, None, str(tmp_path / 'launch'), 'clone', conn=conn,
                                keep_memory_image=True)


def restored_boot_files(conn):
    root = etree.fromstring(conn.restored[-1].encode())
    return root.findtext('os/kernel'), root.findtext('os/initrd')


def test_restore_boots_the_base_s_own_copies(tmp_path, boot_files):
    base = make_base(tmp_path, boot_files)
    conn = FakeConnection()
    synthesize(base, tmp_path, conn)
    assert restored_boot_files(conn) == (base.boot_files()['kernel'], base.boot_files()['initrd'])


def test_restore_keeps_the_snapshot_s_files_where_they_still_exist(tmp_path, boot_files):
    # A base from before boot files, on the host where its guest's files still are.
    base = make_base(tmp_path, xml=domain_xml(dict(GONE_FILES, **boot_files)))
    conn = FakeConnection()
    synthesize(base, tmp_path, conn)
    assert restored_boot_files(conn) == (boot_files['kernel'], boot_files['initrd'])


def test_restore_without_any_kernel_fails_before_libvirt(tmp_path):
    base = make_base(tmp_path, name='demo-base')
    conn = FakeConnection()
    with pytest.raises(errors.BaseVMError) as caught:
        synthesize(base, tmp_path, conn)
    assert str(caught.value) == 'base demo-base needs the kernel %s/kernel, which is not on this host' % GONE
    assert conn.restored == [] and not (tmp_path / 'launch').exists()
