"""The base's RAM file and the sparse launch image, checked with a loader that does what QEMU's does."""

import io
import os
import socket
import threading

import pytest

from cloudlet_engine import apply
from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import livemigration
from cloudlet_engine import migstream
from cloudlet_engine import ramfile
from cloudlet_engine import savefile
from cloudlet_engine import sparse
from tests.fixtures import fake_savefile
from tests.unit.engine.test_engine import Scenario

PAGE = 4096


def load(image_path, ram_path=None):
    """Guest RAM after QEMU loads `image_path`: {block: bytearray}; device state bytes.

    With `ram_path` the main block starts as that file's bytes (what a
    share=off mapping of it gives) and is called ramfile.BACKEND_ID in the stream.
    """
    image = savefile.read_save_image(image_path)
    stats = migstream.ScanStats()
    records = list(migstream.walk_records(image_path, image.stream_offset, image.file_size, stats=stats))
    memory = {}
    for name, block in stats.blocks.items():
        memory[name] = bytearray(block.used_length)
    if ram_path is not None:
        with open(ram_path, 'rb') as f:
            memory[ramfile.BACKEND_ID][:] = f.read()
    with open(image_path, 'rb') as f:
        data = f.read()
    for rec in records:
        page = data[rec.end - PAGE:rec.end] if not rec.zero else bytes([rec.fill]) * PAGE
        memory[rec.block][rec.addr:rec.addr + PAGE] = page
    memory = {ramfile.BLOCK if name == ramfile.BACKEND_ID else name: bytes(m) for name, m in memory.items()}
    return memory, data[stats.device_state_offset:], image.xml


def test_ram_file_holds_the_main_block(ram_scenario, ram):
    expected, _state, _xml = load(ram_scenario.base.memory_path)
    with open(ram.path, 'rb') as f:
        assert f.read() == expected[ramfile.BLOCK]
    assert ram.size == len(expected[ramfile.BLOCK])
    ram.verify()
    assert oct(os.stat(ram.path).st_mode & 0o777) == '0o600'
    # Zero pages are holes: the file takes less room than its size.
    assert os.stat(ram.path).st_blocks * 512 < ram.size


def test_convert_is_idempotent(ram_scenario, ram):
    again = ramfile.convert(ram_scenario.base)
    assert again.meta == ram.meta


def test_resume_image_carries_no_main_block_page(ram_scenario, ram, tmp_path):
    launch = apply.empty_launch(ram_scenario.base, str(tmp_path / 'launch'), ram=ram)
    assert launch.ram is ram
    sparse_memory, sparse_state, xml = load(launch.memory_path, ram.path)
    full_memory, full_state, full_xml = load(ram_scenario.base.memory_path)
    assert sparse_memory == full_memory
    assert sparse_state == full_state and xml == full_xml
    image = savefile.read_save_image(launch.memory_path)
    blocks = {r.block for r in migstream.walk_records(launch.memory_path, image.stream_offset, image.file_size)}
    assert blocks == {'vga.vram'}
    assert os.path.getsize(launch.memory_path) < os.path.getsize(ram_scenario.base.memory_path) / 4
    assert not os.path.exists(os.path.join(str(tmp_path / 'launch'), apply.SPARSE_SPILL))


@pytest.mark.parametrize('codec', ['zstd', 'none'])
def test_sparse_apply_gives_the_guest_the_full_apply_gives(ram_scenario, ram, tmp_path, codec):
    blob, _stats = ram_scenario.create(codec)
    full = apply.apply_overlay(ram_scenario.base, io.BytesIO(blob), str(tmp_path / 'full'))
    thin = apply.apply_overlay(ram_scenario.base, io.BytesIO(blob), str(tmp_path / 'thin'), ram=ram)
    want = load(full.memory_path)
    got = load(thin.memory_path, ram.path)
    assert got == want
    assert want[0] == load(ram_scenario.memory)[0]
    # Only the changed main-block pages travel: 8 of the ram_scenario's 96.
    image = savefile.read_save_image(thin.memory_path)
    main = [r for r in migstream.walk_records(thin.memory_path, image.stream_offset, image.file_size)
            if r.block == ramfile.BACKEND_ID]
    assert sorted(r.addr // PAGE for r in main) == [1, 2, 3, 6, 7, 8, 9, 12]
    with open(thin.disk_path, 'rb') as a, open(full.disk_path, 'rb') as b:
        assert a.read() == b.read()


def test_later_record_for_a_page_wins(ram_scenario, ram, tmp_path):
    """A page written, then sent again as the base has it: the second record must not be dropped."""
    base_pages = _base_pages(ram_scenario)
    changed = list(base_pages)
    block, addr, data = changed[1]
    changed.insert(0, (block, addr, b'X' * PAGE))       # first a new page, then the base's record
    path = str(tmp_path / 'twice.save')
    fake_savefile.build_fake_save_image(path, fake_savefile.SAMPLE_XML, changed)
    pieces = _pieces_from(ram_scenario, path, tmp_path)
    out = str(tmp_path / 'twice.sparse')
    sparse.write(pieces, ram, out)
    pieces.close()
    assert load(out, ram.path)[0] == load(path)[0]


def test_launch_of_another_ram_size_is_refused(ram_scenario, ram, tmp_path):
    pages = [('pc.ram', 0, b'a' * PAGE), ('vga.vram', 0, b'b' * PAGE)]
    path = str(tmp_path / 'small.save')
    fake_savefile.build_fake_save_image(path, fake_savefile.SAMPLE_XML, pages)
    pieces = _pieces_from(ram_scenario, path, tmp_path)
    with pytest.raises(errors.SaveImageError, match='RAM file'):
        sparse.write(pieces, ram, str(tmp_path / 'small.sparse'))
    pieces.close()


def test_the_writer_walks_the_image_while_it_is_appended(ram_scenario, ram, tmp_path):
    """SparseWriter in its thread, the image arriving in small pieces: the same image as write()."""
    base_pages = _base_pages(ram_scenario)
    changed = list(base_pages)
    block, addr, _data = changed[3]
    changed[3] = (block, addr, b'Y' * PAGE)
    path = str(tmp_path / 'arriving.save')
    fake_savefile.build_fake_save_image(path, fake_savefile.SAMPLE_XML, changed)
    whole = _pieces_from(ram_scenario, path, tmp_path)
    sparse.write(whole, ram, str(tmp_path / 'whole.sparse'))
    whole.close()
    size = os.path.getsize(path)
    pieces = sparse.Pieces(str(tmp_path / 'spill-arriving'), ram_scenario.base.memory_path, size, size)
    writer = sparse.SparseWriter(pieces, ram, str(tmp_path / 'arriving.sparse'))
    with open(path, 'rb') as f:
        while True:
            piece = f.read(777)
            if not piece:
                break
            pieces.append(piece)
    writer.finish()
    pieces.close()
    with open(str(tmp_path / 'whole.sparse'), 'rb') as a, open(str(tmp_path / 'arriving.sparse'), 'rb') as b:
        assert a.read() == b.read()
    assert load(str(tmp_path / 'arriving.sparse'), ram.path)[0] == load(path)[0]


def test_a_failed_walk_fails_the_next_append(ram_scenario, ram, tmp_path):
    pages = [('pc.ram', 0, b'a' * PAGE), ('vga.vram', 0, b'b' * PAGE)]     # not the base's RAM size
    path = str(tmp_path / 'small.save')
    fake_savefile.build_fake_save_image(path, fake_savefile.SAMPLE_XML, pages)
    data = open(path, 'rb').read()
    pieces = sparse.Pieces(str(tmp_path / 'spill-small'), ram_scenario.base.memory_path, None, 1 << 30)
    writer = sparse.SparseWriter(pieces, ram, str(tmp_path / 'small.sparse'))
    pieces.append(data + bytes(128 << 10))  # enough for the walk's 64 KiB reads: it fails now
    writer._thread.join(5)
    with pytest.raises(errors.SaveImageError, match='RAM file'):
        pieces.append(b'more')
    with pytest.raises(errors.SaveImageError, match='RAM file'):
        writer.finish()
    writer.abort()
    pieces.close()
    assert not os.path.exists(str(tmp_path / 'small.sparse'))


def test_abort_stops_a_writer_waiting_for_bytes(ram_scenario, ram, tmp_path):
    pieces = sparse.Pieces(str(tmp_path / 'spill-none'), ram_scenario.base.memory_path, None, 1 << 30)
    writer = sparse.SparseWriter(pieces, ram, str(tmp_path / 'none.sparse'))
    pieces.append(b'QEMU')                   # a header's first bytes; the walk waits for the rest
    writer._thread.join(0.2)
    assert writer._thread.is_alive()
    writer.abort()
    assert not writer._thread.is_alive()
    assert not os.path.exists(str(tmp_path / 'none.sparse'))
    pieces.close()


def test_changed_ram_file_is_detected(ram_scenario, tmp_path):
    other = Scenario(str(tmp_path / 's'), seed=3, memory_pages=32)
    ram = ramfile.convert(other.base)
    with open(ram.path, 'r+b') as f:
        f.seek(PAGE)
        f.write(b'punched')
    with pytest.raises(ramfile.RamFileError, match='changed'):
        ramfile.RamFile(other.base.path).check()
    # convert() makes it again from memory.save.
    fresh = ramfile.convert(other.base)
    fresh.verify()


def test_damaged_index_is_made_again(tmp_path):
    other = Scenario(str(tmp_path / 's'), seed=4, memory_pages=32)
    ram = ramfile.convert(other.base)
    index_path = os.path.join(other.base.path, ramfile.RAM_INDEX)
    with open(index_path, 'r+b') as f:
        f.truncate(100)
    with pytest.raises(ramfile.RamFileError, match='truncated'):
        ramfile.RamFile(other.base.path).index()
    again = ramfile.convert(other.base)
    assert again.index().pages == ram.size // PAGE


def test_a_memory_balloon_is_unsupported():
    """Free page reporting and an inflated balloon both punch holes in the RAM file."""
    for balloon in ("<memballoon model='virtio' freePageReporting='on'/>", "<memballoon model='virtio'/>"):
        assert 'virtio memory balloon' in ramfile.unsupported('<domain><devices>%s</devices></domain>' % balloon)
    for fine in ("<memballoon model='none' autodeflate='on' freePageReporting='on'/>", ''):
        assert ramfile.unsupported('<domain><devices>%s</devices></domain>' % fine) is None


def _base_pages(ram_scenario):
    image = savefile.read_save_image(ram_scenario.base.memory_path)
    with open(ram_scenario.base.memory_path, 'rb') as f:
        data = f.read()
    return [(r.block, r.addr, None if r.zero else data[r.end - PAGE:r.end])
            for r in migstream.walk_records(ram_scenario.base.memory_path, image.stream_offset, image.file_size)]


def _pieces_from(ram_scenario, path, tmp_path):
    size = os.path.getsize(path)
    pieces = sparse.Pieces(str(tmp_path / ('spill-%s' % os.path.basename(path))), ram_scenario.base.memory_path,
                           size, size)
    with open(path, 'rb') as f:
        pieces.append(f.read())
    return pieces


def test_ram_file_arguments_come_and_go():
    xml = fake_savefile.SAMPLE_XML
    mapped = domainxml.with_ram_file(xml, '/bases/b1/memory.ram', 65536, ramfile.BACKEND_ID)
    assert domainxml.ram_file(mapped, ramfile.BACKEND_ID) == '/bases/b1/memory.ram'
    assert 'memory-backend=cl.ram' in mapped and 'share=off' in mapped
    # Mapping twice keeps one mapping; removing it gives the domain back.
    again = domainxml.with_ram_file(mapped, '/bases/b2/memory.ram', 65536, ramfile.BACKEND_ID)
    assert again.count('memory-backend-file') == 1
    plain = domainxml.without_ram_file(again, ramfile.BACKEND_ID)
    assert domainxml.ram_file(plain, ramfile.BACKEND_ID) is None
    assert 'commandline' not in plain
    with pytest.raises(ValueError, match='comma'):
        domainxml.with_ram_file(xml, '/a,b/memory.ram', 65536, ramfile.BACKEND_ID)


def test_save_of_a_mapped_vm_becomes_a_stock_image(tmp_path):
    pages = [(ramfile.BACKEND_ID, 0, b'a' * PAGE), ('vga.vram', 0, b'b' * PAGE),
             (ramfile.BACKEND_ID, PAGE, b'c' * PAGE), (ramfile.BACKEND_ID, 2 * PAGE, None)]
    xml = domainxml.with_ram_file(fake_savefile.SAMPLE_XML, '/bases/b1/memory.ram', 3 * PAGE,
                                  ramfile.BACKEND_ID)
    path = str(tmp_path / 'mapped.save')
    fake_savefile.build_fake_save_image(path, xml, pages)
    assert ramfile.normalize_saved(path)
    memory, _state, new_xml = load(path)
    image = savefile.read_save_image(path)
    stats = migstream.ScanStats()
    blocks = {r.block for r in migstream.walk_records(path, image.stream_offset, image.file_size, stats=stats)}
    assert blocks == set(stats.blocks) == {'pc.ram', 'vga.vram'}
    assert memory['pc.ram'] == b'a' * PAGE + b'c' * PAGE + bytes(PAGE)
    assert domainxml.ram_file(new_xml, ramfile.BACKEND_ID) is None
    assert not ramfile.normalize_saved(path)      # a stock image is left alone


def test_a_live_stream_of_a_mapped_vm_is_renamed_as_it_is_walked(tmp_path):
    """The handoff's spool: the walker renames the block in the received bytes before yielding past it."""
    pages = [(ramfile.BACKEND_ID, 0, b'a' * PAGE), ('vga.vram', 0, b'b' * PAGE), (ramfile.BACKEND_ID, PAGE, None)]
    image = fake_savefile.build_fake_save_image(str(tmp_path / 'live.save'), fake_savefile.SAMPLE_XML, pages)
    data = open(image.path, 'rb').read()
    spool = livemigration.Spool(str(tmp_path / 'spool'), data[:image.stream_offset])
    qemu, ours = socket.socketpair()
    qemu.sendall(data[image.stream_offset:])
    qemu.close()
    spool.feed_from(ours, threading.Event())       # to the end of the stream
    ours.close()
    stats = migstream.ScanStats()
    pieces = list(migstream.scan_stream(spool, image.stream_offset, None, stats=stats,
                                        rename={ramfile.BACKEND_ID: ramfile.BLOCK}))
    assert set(stats.blocks) == {ramfile.BLOCK, 'vga.vram'}
    assert [p.block for p in pieces if isinstance(p, migstream.Page)] == [ramfile.BLOCK, 'vga.vram']
    renamed = spool.pread(len(data), 0)
    spool.close()
    assert ramfile.BACKEND_ID.encode() not in renamed
    assert renamed.replace(b'\x06pc.ram', b'\x06cl.ram') == data
