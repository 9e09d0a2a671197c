"""cloudlet_engine.savefile against a real libvirt/QEMU save image.

Needs libvirtd on qemu:///system with QEMU TCG.  The guest needs no OS: a
128 MiB domain with no disk sits in SeaBIOS, which is enough to produce a
real save image (ROMs, ACPI tables, VGA memory, device state).  Starting a
domain can take close to a minute on this kind of machine (QEMU capability
probe), so the whole test takes one to two minutes.
"""

import hashlib
import os
import re
import time
import uuid

import pytest

from cloudlet_engine import migstream
from cloudlet_engine.migstream import Opaque
from cloudlet_engine.migstream import Page
from cloudlet_engine.migstream import ZeroPage
from cloudlet_engine import savefile

libvirt = pytest.importorskip('libvirt')

pytestmark = pytest.mark.integration

MEMORY_MIB = 128
SEABIOS_ROM = '/usr/share/seabios/bios-256k.bin'

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@pytest.fixture
def conn():
    # Expected lookup failures during clean-up would otherwise be printed.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        connection = libvirt.open('qemu:///system')
    except libvirt.libvirtError as exc:
        pytest.skip('libvirt qemu:///system is not available: %s' % exc)
    yield connection
    connection.close()


def _remove_domain(conn, name):
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        pass
    try:
        if dom.isPersistent():
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    except libvirt.libvirtError:
        pass


def _sha256_from(path, offset):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        f.seek(offset)
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def test_real_save_image_scan_rewrite_restore(conn, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    name = 'cl-savefile-%s' % suffix
    clone_name = 'cl-savefile-clone-%s' % suffix
    original_uuid = str(uuid.uuid4())
    clone_uuid = str(uuid.uuid4())
    save_path = str(tmp_path / 'mem.save')
    try:
        started = time.monotonic()
        dom = conn.createXML(DOMAIN_XML.format(name=name, uuid=original_uuid, memory=MEMORY_MIB), 0)
        print('domain start: %.1f s' % (time.monotonic() - started))
        time.sleep(2)
        started = time.monotonic()
        dom.saveFlags(save_path, None, 0)
        print('save: %.1f s, %d bytes' % (time.monotonic() - started, os.path.getsize(save_path)))

        # Header.
        header = savefile.read_save_image(save_path)
        assert header.magic == savefile.MAGIC_SAVE and header.version == 2
        assert header.compressed == 0 and header.was_running == 1
        assert '<name>%s</name>' % name in header.xml
        assert original_uuid in header.xml
        assert header.cookie.startswith(b'<cookie>')
        assert header.cookie_offset == len(header.xml.encode()) + 1
        assert header.data_len >= 64 * 1024  # libvirt's padding for in-place edits

        # Scan: pieces tile the stream; every page of every block is accounted for.
        stats = migstream.ScanStats()
        with open(save_path, 'rb') as f:
            started = time.monotonic()
            pieces = list(migstream.scan_stream(f, header.stream_offset, header.file_size, stats=stats))
            print('scan: %.3f s, %d pieces' % (time.monotonic() - started, len(pieces)))
            records = list(migstream.iter_pages(f, header.stream_offset, header.file_size,
                                               include_zero=True))
        pos = header.stream_offset
        for piece in pieces:
            assert piece.file_offset == pos
            pos += piece.length
        assert pos == header.file_size
        assert not any(isinstance(a, Opaque) and isinstance(b, Opaque) for a, b in zip(pieces, pieces[1:]))

        assert stats.machine_type.startswith('pc-i440fx-')
        assert stats.footers
        print('blocks:', {n: (b.used_length, b.pages, b.zero_pages) for n, b in stats.blocks.items()})
        ram = stats.blocks['pc.ram']
        assert ram.used_length == MEMORY_MIB << 20
        assert ram.pages + ram.zero_pages == ram.used_length // 4096
        for block_name, block in stats.blocks.items():
            addrs = {r.addr for r in records if r.block == block_name}
            assert len(addrs) == block.used_length // 4096, block_name
            assert block.pages + block.zero_pages == block.used_length // 4096, block_name
        assert [r for r in records if isinstance(r, Page)] == [p for p in pieces if isinstance(p, Page)]
        assert stats.device_state_offset < header.file_size

        # Content: the BIOS ROM block holds SeaBIOS's image, page by page.
        if os.path.exists(SEABIOS_ROM) and 'pc.bios' in stats.blocks:
            with open(SEABIOS_ROM, 'rb') as f:
                rom = f.read()
            if len(rom) == stats.blocks['pc.bios'].used_length:
                with open(save_path, 'rb') as f:
                    for record in records:
                        if record.block != 'pc.bios':
                            continue
                        expected = rom[record.addr:record.addr + 4096]
                        if isinstance(record, ZeroPage):
                            assert expected == bytes(4096)
                        else:
                            assert os.pread(f.fileno(), 4096, record.file_offset) == expected

        # Rewrite identity in place; the stream must not move or change.
        stream_digest = _sha256_from(save_path, header.stream_offset)
        new_xml = re.sub(r'<name>[^<]*</name>', '<name>%s</name>' % clone_name, header.xml, count=1)
        new_xml = re.sub(r'<uuid>[^<]*</uuid>', '<uuid>%s</uuid>' % clone_uuid, new_xml, count=1)
        assert new_xml != header.xml
        new_header = savefile.rewrite_xml(save_path, new_xml)
        assert new_header.stream_offset == header.stream_offset
        assert new_header.cookie == header.cookie
        assert new_header.xml == new_xml
        assert _sha256_from(save_path, header.stream_offset) == stream_digest

        # The real proof: libvirt restores the rewritten image as the renamed domain.
        started = time.monotonic()
        conn.restoreFlags(save_path, None, libvirt.VIR_DOMAIN_SAVE_RUNNING)
        print('restore: %.1f s' % (time.monotonic() - started))
        clone = conn.lookupByName(clone_name)
        assert clone.UUIDString() == clone_uuid
        state, _reason = clone.state()
        assert state == libvirt.VIR_DOMAIN_RUNNING
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)
    finally:
        _remove_domain(conn, name)
        _remove_domain(conn, clone_name)
        if os.path.exists(save_path):
            os.unlink(save_path)
