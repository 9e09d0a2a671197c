"""Tests for cloudlet_engine.savefile on fake save images."""

import io
import os
import struct
import time

import hypothesis
from hypothesis import strategies as st
import pytest

from cloudlet_engine.errors import SaveImageError
from cloudlet_engine import migstream
from cloudlet_engine.migstream import Opaque
from cloudlet_engine.migstream import Page
from cloudlet_engine.migstream import ZeroPage
from cloudlet_engine import savefile
from tests.fixtures import fake_savefile as fake
from tests.fixtures.fake_savefile import PAGE_SIZE
from tests.fixtures.fake_savefile import SAMPLE_XML
from tests.fixtures import save_images


# --- helpers -------------------------------------------------------------------

def assert_tiles(pieces, start, end):
    pos = start
    previous = None
    for piece in pieces:
        assert piece.file_offset == pos, (piece, pos)
        assert piece.length > 0
        if isinstance(piece, Opaque):
            assert not isinstance(previous, Opaque), 'adjacent Opaque pieces were not merged'
        pos += piece.length
        previous = piece
    assert pos == end


@pytest.fixture
def image(tmp_path):
    return fake.build_fake_save_image(tmp_path / 'mem.save', SAMPLE_XML, fake.sample_pages(10))


def write_header(path, magic=b'LibvirtQemudSave', version=2, data_len=None, was_running=1,
                 compressed=0, cookie_offset=None, area=None, tail=b'QEVM'):
    """A header + data area with chosen (possibly wrong) fields."""
    if area is None:
        area = b'<domain/>\0<cookie/>\0' + bytes(100)
    if data_len is None:
        data_len = len(area)
    if cookie_offset is None:
        cookie_offset = area.index(b'\0') + 1
    with open(path, 'wb') as f:
        f.write(fake.libvirt_header(data_len, cookie_offset, magic=magic, version=version,
                                    was_running=was_running, compressed=compressed))
        f.write(area)
        f.write(tail)
    return path


def patch(path, offset, data):
    with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(data)


def scan_file(path):
    header = savefile.read_save_image(path)
    stats = migstream.ScanStats()
    with open(path, 'rb') as f:
        pieces = list(migstream.scan_stream(f, header.stream_offset, header.file_size, stats=stats))
    return header, pieces, stats


# --- header ----------------------------------------------------------------------

def test_read_header_fields(image):
    header = savefile.read_save_image(image.path)
    assert header.magic == b'LibvirtQemudSave'
    assert header.version == 2
    assert header.data_len == image.data_len
    assert header.was_running == 1
    assert header.compressed == 0
    assert header.xml == SAMPLE_XML
    assert header.cookie == image.cookie
    assert header.cookie_offset == len(SAMPLE_XML.encode()) + 1
    assert header.stream_offset == 92 + image.data_len == image.stream_offset
    assert header.file_size == image.file_size == os.path.getsize(image.path)
    assert header.unused == (0,) * 14


def test_read_header_from_fd_fileobj_and_bytesio(image):
    expected = savefile.read_save_image(image.path)
    with open(image.path, 'rb') as f:
        assert savefile.read_save_image(f) == expected
        assert savefile.read_save_image(f.fileno()) == expected
    assert savefile.read_save_image(io.BytesIO(image.read_bytes())) == expected


def test_header_without_cookie(tmp_path):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, [], cookie=b'')
    header = savefile.read_save_image(img.path)
    assert header.cookie_offset == 0
    assert header.cookie == b''


def test_pack_header_roundtrip(image):
    header = savefile.read_save_image(image.path)
    assert header.pack_header() == image.read_bytes()[:92]


@pytest.mark.parametrize('kwargs, message', [
    (dict(magic=b'LibvirtQemudPart'), 'save image is incomplete'),
    (dict(magic=b'NotLibvirtAtAll!'), 'not a libvirt QEMU save image'),
    (dict(version=1), 'unsupported save image version 1'),
    (dict(version=3), 'unsupported save image version 3'),
    (dict(compressed=3), 'compressed save images (xz, gzip...) are not supported: this one is xz'),
    (dict(compressed=1), 'this one is gzip'),
    (dict(compressed=9), 'unknown format 9'),
    (dict(data_len=10 ** 6), 'extends past the end of the file'),
    (dict(area=b'<domain/>' + bytes(0) + b'x' * 50, cookie_offset=0), 'not NUL-terminated'),
    (dict(area=b'\0' + bytes(20), cookie_offset=0), 'holds no domain XML'),
    (dict(area=b'<domain>\xff\xfe</domain>\0' + bytes(10), cookie_offset=0), 'not valid UTF-8'),
    (dict(cookie_offset=500), 'cookie offset 500 is out of range'),
    (dict(cookie_offset=3), 'points inside the domain XML'),
    (dict(area=b'<domain/>\0<cookie/>', cookie_offset=10), 'cookie at offset 10 is not NUL-terminated'),
])
def test_header_errors(tmp_path, kwargs, message):
    path = write_header(tmp_path / 'bad', **kwargs)
    with pytest.raises(SaveImageError) as err:
        savefile.read_save_image(path)
    assert message in str(err.value)


def test_compressed_message_names_the_fix(tmp_path):
    path = write_header(tmp_path / 'xz', compressed=3)
    with pytest.raises(SaveImageError, match='set save_image_format = raw'):
        savefile.read_save_image(path)


def test_data_len_limit(image):
    with pytest.raises(SaveImageError, match='exceeds the limit of 1000 bytes'):
        savefile.read_save_image(image.path, max_data_len=1000)


def test_default_limit_is_16_mib(tmp_path):
    path = write_header(tmp_path / 'huge', data_len=16 * 1024 * 1024 + 1)
    with pytest.raises(SaveImageError, match='exceeds the limit'):
        savefile.read_save_image(path)


@pytest.mark.parametrize('size', [0, 1, 50, 91])
def test_truncated_header(tmp_path, image, size):
    path = tmp_path / 'short'
    path.write_bytes(image.read_bytes()[:size])
    with pytest.raises(SaveImageError, match='truncated'):
        savefile.read_save_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(SaveImageError, match='cannot open save image'):
        savefile.read_save_image(tmp_path / 'nope')


# --- build_data_area / rewrite_xml ---------------------------------------------------------

def test_build_data_area_layout():
    area = save_images.build_data_area('<d/>', b'<c/>', 20)
    assert area == b'<d/>\0<c/>\0' + bytes(10)
    assert save_images.build_data_area('<d/>', None, 6) == b'<d/>\0\0'
    assert save_images.build_data_area('<d/>', b'', 5) == b'<d/>\0'
    assert save_images.build_data_area('<é/>'.encode(), b'', 6) == '<é/>'.encode() + b'\0'


@pytest.mark.parametrize('xml, cookie, data_len, message', [
    ('<d/>', b'<c/>', 9, 'do not fit'),
    ('<d/>', None, 4, 'do not fit'),
    ('', None, 10, 'empty'),
    ('<d>\0</d>', None, 20, 'NUL'),
    ('<d/>', b'a\0b', 20, 'NUL'),
    (b'<d>\xff</d>', None, 20, 'UTF-8'),
])
def test_build_data_area_errors(xml, cookie, data_len, message):
    with pytest.raises(SaveImageError, match=message):
        save_images.build_data_area(xml, cookie, data_len)


def test_rewrite_xml_roundtrip(image):
    before = image.read_bytes()
    new_xml = SAMPLE_XML.replace('fake-guest', 'renamed-guest-with-a-longer-name')
    header = savefile.rewrite_xml(image.path, new_xml)
    after = image.read_bytes()

    assert len(after) == len(before)
    assert after[image.stream_offset:] == before[image.stream_offset:]  # stream did not move
    assert header.xml == new_xml
    assert header.cookie == image.cookie
    assert header.cookie_offset == len(new_xml.encode()) + 1
    assert header.data_len == image.data_len
    assert header.stream_offset == image.stream_offset
    old = struct.unpack('<16s5I14I', before[:92])
    new = struct.unpack('<16s5I14I', after[:92])
    assert new[:5] == old[:5]  # magic, version, data_len, was_running, compressed
    assert new[6:] == old[6:]
    area = after[92:image.stream_offset]
    used = len(new_xml.encode()) + 1 + len(image.cookie) + 1
    assert area[:used] == new_xml.encode() + b'\0' + image.cookie + b'\0'
    assert area[used:] == bytes(image.data_len - used)
    assert savefile.read_save_image(image.path) == header
    # Pages are still where they were.
    _, pieces, _ = scan_file(image.path)
    assert [p.file_offset for p in pieces if isinstance(p, Page)] == \
        [p.file_offset for p in image.data_pages]


def test_rewrite_xml_shorter_then_back(image):
    savefile.rewrite_xml(image.path, '<domain/>', fsync=False)
    assert savefile.read_save_image(image.path).xml == '<domain/>'
    savefile.rewrite_xml(image.path, SAMPLE_XML)
    prefix_now = image.read_bytes()[:image.stream_offset]
    expected, _ = fake.libvirt_prefix(SAMPLE_XML, image.cookie, image.data_len)
    assert prefix_now == expected


def test_rewrite_xml_fills_whole_area_exactly(image):
    room = image.data_len - len(image.cookie) - 2
    xml = '<domain>' + 'x' * (room - len('<domain></domain>')) + '</domain>'
    header = savefile.rewrite_xml(image.path, xml)
    assert header.xml == xml and header.cookie == image.cookie
    with pytest.raises(SaveImageError, match='do not fit'):
        savefile.rewrite_xml(image.path, xml + ' ')


def test_rewrite_xml_too_large_leaves_file_alone(image):
    before = image.read_bytes()
    with pytest.raises(SaveImageError, match='do not fit in the save image data area of %d bytes'
                       % image.data_len):
        savefile.rewrite_xml(image.path, '<domain>' + 'x' * image.data_len + '</domain>')
    assert image.read_bytes() == before


def test_rewrite_xml_replace_and_drop_cookie(image):
    header = savefile.rewrite_xml(image.path, SAMPLE_XML, cookie=b'<cookie>new</cookie>')
    assert header.cookie == b'<cookie>new</cookie>'
    header = savefile.rewrite_xml(image.path, SAMPLE_XML, cookie=None)
    assert header.cookie == b'' and header.cookie_offset == 0


def test_rewrite_xml_refuses_unusable_images(tmp_path):
    path = write_header(tmp_path / 'xz', compressed=3)
    before = path.read_bytes()
    with pytest.raises(SaveImageError, match='compressed'):
        savefile.rewrite_xml(path, '<domain/>')
    assert path.read_bytes() == before
    path = write_header(tmp_path / 'part', magic=b'LibvirtQemudPart')
    with pytest.raises(SaveImageError, match='incomplete'):
        savefile.rewrite_xml(path, '<domain/>')
    with pytest.raises(SaveImageError, match='cannot open'):
        savefile.rewrite_xml(tmp_path / 'missing', '<domain/>')


def test_with_xml_is_what_rewrite_xml_leaves(image, tmp_path):
    header = savefile.read_save_image(image.path)
    prefix = savefile.with_xml(header, '<domain><name>n2</name></domain>')
    assert len(prefix) == header.stream_offset
    savefile.rewrite_xml(image.path, '<domain><name>n2</name></domain>')
    assert image.read_bytes()[:header.stream_offset] == prefix
    other = savefile.with_xml(header, '<domain/>', cookie=b'')
    assert struct.unpack_from('<I', other, 32)[0] == 0


# --- stream scan ------------------------------------------------------------------------

def test_scan_finds_every_page(image):
    header, pieces, stats = scan_file(image.path)
    assert_tiles(pieces, header.stream_offset, header.file_size)
    pages = [p for p in pieces if isinstance(p, Page)]
    assert [(p.block, p.addr, p.file_offset) for p in pages] == \
        [(p.block, p.addr, p.file_offset) for p in image.data_pages]
    raw = image.read_bytes()
    for page, expected in zip(pages, image.data_pages):
        assert raw[page.file_offset:page.end] == expected.data
    assert pieces[-1] == Opaque(pages[-1].end, header.file_size - pages[-1].end)


def test_scan_stats(image):
    _, _, stats = scan_file(image.path)
    assert stats.machine_type == 'pc-i440fx-7.2'
    assert {name: b.used_length for name, b in stats.blocks.items()} == image.blocks
    assert list(stats.blocks) == list(image.blocks)
    assert stats.ram_total == sum(image.blocks.values())
    assert stats.pages == len(image.data_pages)
    assert stats.zero_pages == len(image.zero_pages)
    for name, block in stats.blocks.items():
        assert block.pages == sum(1 for p in image.data_pages if p.block == name)
        assert block.zero_pages == sum(1 for p in image.zero_pages if p.block == name)
    assert stats.ram_sections == image.ram_sections
    assert stats.footers is True
    assert stats.device_state_offset == image.device_state_offset


def test_iter_pages_with_zero_pages(image):
    with open(image.path, 'rb') as f:
        records = list(migstream.iter_pages(f, image.stream_offset, image.file_size,
                                           include_zero=True))
        only_pages = list(migstream.iter_pages(f, image.stream_offset, image.file_size))
    assert [(type(r), r.block, r.addr) for r in records] == \
        [(ZeroPage if p.data is None else Page, p.block, p.addr) for p in image.pages]
    assert all(r.fill == 0 for r in records if isinstance(r, ZeroPage))
    assert only_pages == [r for r in records if isinstance(r, Page)]


def test_continue_flag_spans_sections(tmp_path):
    pages = [('pc.ram', i * PAGE_SIZE, bytes([i]) * PAGE_SIZE) for i in range(4)]
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, pages, pages_per_section=1)
    raw = img.read_bytes()
    # The record opening the second PART section continues the block named in the first.
    second_part_record = img.record_offsets[4]  # [0] MEM_SIZE, [1] EOS, [2] page, [3] EOS
    assert raw[second_part_record - 5] == 0x02
    assert struct.unpack_from('>Q', raw, second_part_record)[0] & 0x20
    _, pieces, stats = scan_file(img.path)
    assert [(p.block, p.addr) for p in pieces if isinstance(p, Page)] == \
        [(b, a) for b, a, _ in pages]
    assert stats.ram_sections == img.ram_sections == 5  # START, 3 PART, END


@pytest.mark.parametrize('options', [
    dict(footers=False),
    dict(vmdescription=False),
    dict(pages_per_section=100),
    dict(pages_per_section=1, footers=False),
    dict(machine='pc-q35-7.2'),
])
def test_scan_variants(tmp_path, options):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(9), **options)
    header, pieces, stats = scan_file(img.path)
    assert_tiles(pieces, header.stream_offset, header.file_size)
    assert [p.file_offset for p in pieces if isinstance(p, Page)] == \
        [p.file_offset for p in img.data_pages]
    assert stats.footers == options.get('footers', True)
    assert stats.device_state_offset == img.device_state_offset


def test_scan_without_pages(tmp_path):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, [], blocks={'pc.ram': 1 << 20})
    header, pieces, stats = scan_file(img.path)
    assert pieces == [Opaque(header.stream_offset, header.file_size - header.stream_offset)]
    assert stats.pages == 0 and stats.blocks['pc.ram'].used_length == 1 << 20


def test_scan_only_zero_pages(tmp_path):
    pages = [('pc.ram', i * PAGE_SIZE, None) for i in range(5)]
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, pages)
    header, pieces, stats = scan_file(img.path)
    assert len(pieces) == 1 and stats.zero_pages == 5


def test_scan_bytesio_and_fd(image):
    raw = image.read_bytes()
    expected = scan_file(image.path)[1]
    assert list(migstream.scan_stream(io.BytesIO(raw), image.stream_offset, len(raw))) == expected
    assert list(migstream.scan_stream(image.path, image.stream_offset, len(raw))) == expected
    assert list(migstream.iter_pages(image.path, image.stream_offset, len(raw))) == \
        [p for p in expected if isinstance(p, Page)]
    fd = os.open(image.path, os.O_RDONLY)
    try:
        assert list(migstream.scan_stream(fd, image.stream_offset, len(raw))) == expected
    finally:
        os.close(fd)


def test_scan_small_window(image, monkeypatch):
    """Records and names straddling window boundaries."""
    expected = scan_file(image.path)[1]
    for window in (1, 7, 4095, 4097, 5000):
        monkeypatch.setattr(migstream, 'SCAN_WINDOW', window)
        assert scan_file(image.path)[1] == expected


def test_scan_save_image_helper(image):
    header, pieces, stats = save_images.scan_save_image(image.path)
    assert (header, pieces) == scan_file(image.path)[:2]
    assert stats.pages == len(image.data_pages)


def test_configuration_subsections(tmp_path):
    subs = (fake.subsection('configuration/target-page-bits', 1, fake.be32(12))
            + fake.subsection('configuration/capabilities', 1,
                              fake.be32(2) + fake.idstr('x-ignore-shared') + fake.idstr('events'))
            + fake.subsection('configuration/uuid', 1, bytes(range(16))))
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(6),
                                     config_subsections=subs, block_addrs=True)
    header, pieces, stats = scan_file(img.path)
    assert stats.capabilities == ['x-ignore-shared', 'events']
    assert [p.file_offset for p in pieces if isinstance(p, Page)] == \
        [p.file_offset for p in img.data_pages]


@pytest.mark.parametrize('subs, message', [
    (fake.subsection('configuration/target-page-bits', 1, fake.be32(16)), 'target page size'),
    (fake.subsection('configuration/new-thing', 1, b''), "configuration subsection 'configuration/new-thing'"),
    (fake.subsection('configuration/capabilities', 1, fake.be32(100000)), '100000 migration capabilities'),
])
def test_configuration_subsection_errors(tmp_path, subs, message):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(3),
                                     config_subsections=subs)
    with pytest.raises(SaveImageError, match=message):
        scan_file(img.path)


def record_value(img, index):
    raw = img.read_bytes()
    return struct.unpack_from('>Q', raw, img.record_offsets[index])[0]


@pytest.mark.parametrize('flag, message', [
    (0x40, 'XBZRLE'),
    (0x80, 'RDMA hook'),
    (0x100, 'compressed page'),
    (0x200, 'multifd flush'),
])
def test_unsupported_ram_flags(tmp_path, flag, message):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(6))
    index = 3  # a page record of the first PART
    value = record_value(img, index)
    patch(img.path, img.record_offsets[index], fake.be64((value & ~0xfff) | flag | (value & 0x20)))
    with pytest.raises(SaveImageError, match='unsupported migration stream feature: ' + message):
        scan_file(img.path)


def test_unknown_ram_flags_are_corrupt(tmp_path):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(6))
    patch(img.path, img.record_offsets[3], fake.be64(0x400))
    with pytest.raises(SaveImageError, match='corrupt: RAM record with flags 0x400'):
        scan_file(img.path)


def test_zero_and_page_together_is_corrupt(tmp_path):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(6))
    patch(img.path, img.record_offsets[3], fake.be64(0x0a))
    with pytest.raises(SaveImageError, match='corrupt: RAM record with flags 0x00a'):
        scan_file(img.path)


def test_unknown_block(tmp_path):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML,
                                     [('pc.ram', 0, b'a' * PAGE_SIZE)])
    raw = img.read_bytes()
    at = raw.index(b'\x06pc.ram', img.record_offsets[3])
    patch(img.path, at + 1, b'pc.rom')
    with pytest.raises(SaveImageError, match="unknown block 'pc.rom'"):
        scan_file(img.path)


def test_page_outside_block(tmp_path):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML,
                                     [('pc.ram', 0, b'a' * PAGE_SIZE)], blocks={'pc.ram': PAGE_SIZE})
    # [0] MEM_SIZE, [1] EOS, [2] EOS of an empty PART, [3] the page in END.
    patch(img.path, img.record_offsets[3], fake.be64(PAGE_SIZE | 0x08))
    with pytest.raises(SaveImageError, match="outside block 'pc.ram'"):
        scan_file(img.path)


def test_continue_without_block(tmp_path):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, [('pc.ram', 0, None)])
    raw = bytearray(img.read_bytes())
    at = img.record_offsets[3]
    # Replace "record + idstr" by a CONTINUE record of the same length (pad with a zero record).
    assert raw[at + 8:at + 15] == b'\x06pc.ram'
    new = fake.be64(0x22) + b'\0'
    patch(img.path, at, new)
    with pytest.raises(SaveImageError, match='none was named'):
        scan_file(img.path)


def test_other_live_section_is_refused(tmp_path):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(3))
    raw = img.read_bytes()
    at = raw.index(b'\x03ram', img.stream_offset)
    patch(img.path, at, b'\x03blk')
    with pytest.raises(SaveImageError, match="live migration section 'blk' besides RAM"):
        scan_file(img.path)


def test_command_section_is_refused(tmp_path):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(3))
    first_part = img.record_offsets[2] - 5
    assert img.read_bytes()[first_part] == 0x02
    patch(img.path, first_part, b'\x08')
    with pytest.raises(SaveImageError, match='migration command section'):
        scan_file(img.path)


@pytest.mark.parametrize('what, mutate, message', [
    ('magic', lambda img: (img.stream_offset, b'QEVX'), 'no QEMU migration stream'),
    ('version', lambda img: (img.stream_offset + 4, fake.be32(2)), 'QEMU stream version 2'),
    ('ram version', lambda img: (img.record_offsets[0] - 4, fake.be32(5)), 'RAM section version 5'),
    ('section id', lambda img: (img.record_offsets[2] - 4, fake.be32(99)), 'section id 99 was never started'),
    ('footer', lambda img: (img.record_offsets[1] + 9, fake.be32(98)), 'section footer for section 98'),
    ('section type', lambda img: (img.record_offsets[2] - 5, b'\x42'), 'unknown section type 0x42'),
    ('device state early', lambda img: (img.record_offsets[2] - 5, fake.section_start(0x04, 9, 'dev', 0, 1)),
     "device state section 'dev' before the RAM section ended"),
    ('empty name', lambda img: (img.record_offsets[2] - 5, b'\x04' + fake.be32(9) + b'\x00'), 'empty section name'),
    ('block list', lambda img: (img.record_offsets[0], fake.be64(0x10000 | 4)), 'does not fit the announced total'),
])
def test_corrupt_streams(tmp_path, what, mutate, message):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(6))
    patch(img.path, *mutate(img))
    with pytest.raises(SaveImageError, match=message):
        scan_file(img.path)


@pytest.mark.parametrize('cut', ['in magic', 'in record', 'in page', 'in name', 'at device state',
                                 'before footer'])
def test_truncated_streams(tmp_path, cut):
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, fake.sample_pages(6))
    size = {
        'in magic': img.stream_offset + 3,
        'in record': img.record_offsets[4] + 5,
        'in page': img.data_pages[2].file_offset + 100,
        'in name': img.record_offsets[2] + 10,
        'at device state': img.device_state_offset,
        'before footer': img.record_offsets[-1] + 8,
    }[cut]
    raw = img.read_bytes()[:size]
    path = tmp_path / 'cut'
    path.write_bytes(raw)
    with pytest.raises(SaveImageError, match='truncated'):
        with open(path, 'rb') as f:
            list(migstream.scan_stream(f, img.stream_offset, len(raw)))


def test_file_shorter_than_claimed(image):
    raw = image.read_bytes()
    with pytest.raises(SaveImageError, match='truncated'):
        list(migstream.scan_stream(io.BytesIO(raw[:-5000]), image.stream_offset, len(raw)))


def test_bad_range_is_a_programming_error(image):
    with pytest.raises(ValueError):
        list(migstream.scan_stream(io.BytesIO(b''), 10, 5))


def test_page_key():
    assert migstream.page_key('pc.ram', 0x1000) == b'pc.ram\0' + bytes([0, 0, 0, 0, 0, 0, 0x10, 0])
    assert migstream.page_key(b'pc.ram', 0x1000) == migstream.page_key('pc.ram', 0x1000)
    assert migstream.page_key('pc.ram', 0) != migstream.page_key('pc.ra', 0)
    keys = {migstream.page_key(b, a) for b in ('a', 'ab', 'vga.vram') for a in (0, 4096, 1 << 40)}
    assert len(keys) == 9


def test_piece_types():
    page = Page(100, 'pc.ram', 4096)
    assert page.length == 4096 and page.end == 4196
    assert Opaque(5, 10).end == 15


# --- speed ------------------------------------------------------------------------------

def test_scan_speed_100mb(tmp_path):
    count = 100 * 1024 * 1024 // PAGE_SIZE  # 25,600 pages of 4 KiB
    payload = os.urandom(PAGE_SIZE)
    pages = [('pc.ram' if i % 50 else 'vga.vram', (i // 2) * PAGE_SIZE, None if i % 7 == 0 else payload)
             for i in range(count)]
    img = fake.build_fake_save_image(tmp_path / 'big', SAMPLE_XML, pages, pages_per_section=2000)
    with open(img.path, 'rb') as f:
        start = time.perf_counter()
        n = sum(1 for p in migstream.scan_stream(f, img.stream_offset, img.file_size)
                if isinstance(p, Page))
        elapsed = time.perf_counter() - start
    assert n == len(img.data_pages)
    print('scan of %.0f MB: %.3f s' % (img.file_size / 1e6, elapsed))
    assert elapsed < 2.0  # typically ~0.05 s; generous for loaded CI machines


# --- fuzzing ----------------------------------------------------------------------------

def _fuzz_base():
    pages = fake.sample_pages(12) + [('pc.ram', 200 * PAGE_SIZE, b'\x7e' * PAGE_SIZE)]
    prefix, _ = fake.libvirt_prefix(SAMPLE_XML, b'<cookie/>', 400)
    stream, meta = fake.build_fake_stream(pages, stream_offset=len(prefix), pages_per_section=2)
    raw = prefix + stream
    interesting = set(range(0, 92)) | set(range(len(prefix), len(prefix) + 120))
    for off in meta['record_offsets']:
        interesting.update(range(off - 6, off + 16))
    interesting.update(range(meta['device_state_offset'] - 6, meta['device_state_offset'] + 8))
    return raw, sorted(o for o in interesting if 0 <= o < len(raw))


FUZZ_RAW, FUZZ_SPOTS = _fuzz_base()


def _scan_or_error(raw):
    f = io.BytesIO(raw)
    try:
        header = savefile.read_save_image(f)
        pieces = list(migstream.scan_stream(f, header.stream_offset, header.file_size))
    except SaveImageError:
        return None
    assert_tiles(pieces, header.stream_offset, header.file_size)
    return pieces


@hypothesis.settings(max_examples=400, deadline=2000, derandomize=True,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(
    cut=st.one_of(st.none(), st.integers(0, len(FUZZ_RAW))),
    flips=st.lists(st.tuples(st.one_of(st.sampled_from(FUZZ_SPOTS), st.integers(0, len(FUZZ_RAW) - 1)),
                             st.integers(0, 255)), max_size=6),
)
def test_fuzz_truncation_and_corruption(cut, flips):
    raw = bytearray(FUZZ_RAW)
    for offset, xor in flips:
        raw[offset] ^= xor
    if cut is not None:
        del raw[cut:]
    start = time.perf_counter()
    _scan_or_error(bytes(raw))
    assert time.perf_counter() - start < 1.0


def test_fuzz_base_is_clean():
    assert _scan_or_error(FUZZ_RAW) is not None


@hypothesis.settings(max_examples=150, deadline=2000, derandomize=True)
@hypothesis.given(
    records=st.lists(st.tuples(st.sampled_from(['pc.ram', 'vga.vram', '/rom@etc/acpi/tables']),
                               st.integers(0, 31), st.one_of(st.none(), st.integers(0, 255))),
                     max_size=30),
    per_section=st.integers(1, 8),
    footers=st.booleans(),
)
def test_random_fake_images_scan_exactly(records, per_section, footers):
    pages = [(b, a * PAGE_SIZE, None if fill is None else bytes([fill]) * PAGE_SIZE)
             for b, a, fill in records]
    blocks = {'pc.ram': 32 * PAGE_SIZE, 'vga.vram': 32 * PAGE_SIZE, '/rom@etc/acpi/tables': 32 * PAGE_SIZE}
    prefix, _ = fake.libvirt_prefix(SAMPLE_XML, b'', 200)
    stream, meta = fake.build_fake_stream(pages, stream_offset=len(prefix), blocks=blocks,
                                          pages_per_section=per_section, footers=footers)
    raw = prefix + stream
    stats = migstream.ScanStats()
    records_seen = list(migstream.iter_pages(io.BytesIO(raw), len(prefix), len(raw),
                                            include_zero=True, stats=stats))
    assert [(r.block, r.addr, r.file_offset if isinstance(r, Page) else None) for r in records_seen] == \
        [(p.block, p.addr, p.file_offset) for p in meta['pages']]
    assert stats.device_state_offset == meta['device_state_offset']
    pieces = _scan_or_error(raw)
    assert [p for p in pieces if isinstance(p, Page)] == [r for r in records_seen if isinstance(r, Page)]


# --- zero-page runs (the scanner's fast path) --------------------------------------------

def test_long_zero_runs(tmp_path, monkeypatch):
    pages = ([('pc.ram', i * PAGE_SIZE, None) for i in range(1500)]
             + [('pc.ram', 1500 * PAGE_SIZE, b'd' * PAGE_SIZE)]
             + [('vga.vram', i * PAGE_SIZE, None) for i in range(700)]
             + [('pc.ram', 1501 * PAGE_SIZE, None)])
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, pages, pages_per_section=1000)
    expected = [(p.block, p.addr) for p in img.pages]
    for window in (migstream.SCAN_WINDOW, 4096, 1000, 9):
        monkeypatch.setattr(migstream, 'SCAN_WINDOW', window)
        stats = migstream.ScanStats()
        with open(img.path, 'rb') as f:
            records = list(migstream.iter_pages(f, img.stream_offset, img.file_size,
                                               include_zero=True, stats=stats))
        assert [(r.block, r.addr) for r in records] == expected
        raw = img.read_bytes()
        for r in records:
            if isinstance(r, ZeroPage):
                o, name = r.file_offset, r.block.encode()
                assert raw[o] == 0
                header_end = o if raw[o - 1] == 0x22 else o - 1 - len(name)
                if header_end != o:
                    assert raw[header_end:o] == bytes([len(name)]) + name
                assert struct.unpack_from('>Q', raw, header_end - 8)[0] & ~0x20 == r.addr | 0x02
        assert stats.blocks['pc.ram'].zero_pages == 1501
        assert stats.blocks['vga.vram'].zero_pages == 700


def test_zero_run_with_address_outside_block(tmp_path):
    pages = [('pc.ram', i * PAGE_SIZE, None) for i in range(100)]
    img = fake.build_fake_save_image(tmp_path / 'm', SAMPLE_XML, pages, pages_per_section=1000)
    # Record 50 of the run: [0] MEM_SIZE, [1] EOS, [2] EOS of an empty PART, [3] first zero record.
    at = img.record_offsets[3 + 50]
    patch(img.path, at, fake.be64((1 << 30) | 0x22))
    with pytest.raises(SaveImageError, match=r"RAM page 0x40000000 outside block 'pc.ram'.* at offset %d" % at):
        scan_file(img.path)
