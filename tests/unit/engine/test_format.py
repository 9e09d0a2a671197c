import io
import json
import os
import struct

import pytest

from cloudlet_engine import codecs
from cloudlet_engine import errors
from cloudlet_engine import format as fmt
from tests.fixtures import overlay_bytes
from tests.fixtures import overlay_index

META = {'base_id': 'ab' * 32, 'disk_size': 1 << 20, 'memory_size': 8192}


def _items():
    return [fmt.Item(fmt.DISK_DATA, offset=4096),
            fmt.Item(fmt.DISK_ZERO, offset=8192),
            fmt.Item(fmt.DISK_COPY, offset=12288, area=fmt.AREA_BASE_MEMORY, source=77),
            fmt.Item(fmt.MEM_BYTES, length=10),
            fmt.Item(fmt.MEM_PAGE_DATA, source=fmt.NO_COUNTERPART),
            fmt.Item(fmt.MEM_PAGE_ZERO),
            fmt.Item(fmt.MEM_PAGE_COPY, area=fmt.AREA_LAUNCH_MEMORY, source=0)]


def make_overlay(segments=2, codec=fmt.CODEC_ZSTD, meta=META, key=None):
    """An overlay of `segments` segments; encrypted (format version 2) with a `key`."""
    out = io.BytesIO()
    writer = fmt.OverlayWriter(out, meta, key=key)
    for i in range(segments):
        items = fmt.encode_items(_items())
        data = bytes([i]) * (4096 + 10 + 4096)
        writer.add_segment(codec, fmt.DELTA_NONE, len(_items()), len(items),
                           codecs.compress(codec, items), len(data), codecs.compress(codec, data))
    writer.finish()
    return out.getvalue()


def read_all(blob, limits=None):
    reader = fmt.OverlayReader(io.BytesIO(blob), limits)
    return reader, list(reader.segments())


def test_items_roundtrip():
    items = _items()
    assert fmt.decode_items(fmt.encode_items(items), len(items)) == items


def test_item_data_lengths():
    assert [i.data_length for i in _items()] == [4096, 0, 0, 10, 4096, 0, 0]


@pytest.mark.parametrize('codec', [fmt.CODEC_NONE, fmt.CODEC_XZ, fmt.CODEC_ZSTD])
def test_roundtrip(codec):
    reader, segments = read_all(make_overlay(3, codec))
    assert reader.meta['base_id'] == META['base_id']
    assert reader.meta['version'] == fmt.VERSION
    assert [s.index for s in segments] == [0, 1, 2]
    assert reader.segment_count == 3
    seg = segments[1]
    data = codecs.decompress(seg.codec, seg.data_stored, seg.data_raw_len, 'data')
    assert data == bytes([1]) * (4096 + 10 + 4096)


def test_index_points_at_segments(tmp_path):
    blob = make_overlay(4)
    path = tmp_path / 'o.clo'
    path.write_bytes(blob)
    index = overlay_index.read_index(str(path))
    assert len(index) == 4
    for offset, length in index:
        assert blob[offset:offset + 4] == b'SEG\0'
    assert index[1][0] == index[0][0] + index[0][1]


def test_bad_magic():
    blob = make_overlay()
    with pytest.raises(errors.CorruptOverlay, match='bad magic'):
        read_all(b'X' + blob[1:])


def test_unsupported_version():
    blob = bytearray(make_overlay())
    struct.pack_into('<H', blob, 8, 99)
    with pytest.raises(errors.UnsupportedVersion, match='version 99'):
        read_all(bytes(blob))


def test_meta_checksum():
    blob = bytearray(make_overlay())
    blob[20] ^= 1
    with pytest.raises(errors.OverlayError):
        read_all(bytes(blob))


def test_truncated_anywhere_is_reported():
    blob = make_overlay()
    for cut in (5, 30, len(blob) // 2, len(blob) - 1):
        with pytest.raises(errors.TruncatedOverlay, match='truncated'):
            read_all(blob[:cut])


def test_segment_bitflip_is_a_checksum_error():
    blob = bytearray(make_overlay())
    blob[len(blob) // 2] ^= 0x40
    with pytest.raises(errors.CorruptOverlay):
        read_all(bytes(blob))


def test_dropped_segment_fails_the_root_checksum():
    blob = make_overlay(3)
    reader, _ = read_all(blob)
    import tempfile
    with tempfile.NamedTemporaryFile() as f:
        f.write(blob)
        f.flush()
        index = overlay_index.read_index(f.name)
    # Splice segment 1 out and renumber nothing: the index check catches it.
    (o1, l1) = index[1]
    spliced = blob[:o1] + blob[o1 + l1:]
    with pytest.raises(errors.CorruptOverlay):
        read_all(spliced)


def test_oversized_segment_refused_before_reading():
    blob = bytearray(make_overlay(1))
    limits = fmt.Limits(max_data_bytes=1000)
    with pytest.raises(errors.LimitExceeded, match='exceeds the limit'):
        read_all(bytes(blob), limits)


def test_memory_size_limit():
    blob = make_overlay(1, meta=dict(META, memory_size=1 << 40))
    with pytest.raises(errors.LimitExceeded, match='memory image'):
        read_all(blob)


def test_meta_missing_field():
    with pytest.raises(errors.CorruptOverlay, match='base_id'):
        read_all(make_overlay(1, meta={'disk_size': 0, 'memory_size': 0}))


def test_unknown_item_kind():
    with pytest.raises(errors.CorruptOverlay, match='unknown item kind'):
        fmt.decode_items(b'\x7f' + bytes(8), 1)


def test_item_table_length_mismatch():
    raw = fmt.encode_items(_items())
    with pytest.raises(errors.CorruptOverlay):
        fmt.decode_items(raw + b'\0', len(_items()))
    with pytest.raises(errors.CorruptOverlay):
        fmt.decode_items(raw[:-1], len(_items()))


def test_zstd_declared_size_is_enforced():
    stored = codecs.compress(fmt.CODEC_ZSTD, bytes(100000))
    with pytest.raises(errors.CorruptOverlay, match='declares'):
        codecs.decompress(fmt.CODEC_ZSTD, stored, 1000, 'data')


def test_xz_output_is_bounded():
    stored = codecs.compress(fmt.CODEC_XZ, bytes(100000))
    with pytest.raises(errors.CorruptOverlay, match='more than 1000'):
        codecs.decompress(fmt.CODEC_XZ, stored, 1000, 'data')


@pytest.mark.parametrize('codec', [fmt.CODEC_ZSTD, fmt.CODEC_XZ])
def test_delta_against_counterparts(codec):
    import os
    base = os.urandom(4096 * 8)
    target = bytearray(base)
    for i in range(0, len(target), 4096):
        target[i + 100:i + 104] = b'EDIT'
    delta, stored = codecs.encode_data(codec, bytes(target), base)
    assert delta != fmt.DELTA_NONE
    assert len(stored) < 2000          # a few edits, not 32 KiB of random bytes
    seg = fmt.Segment(0, codec, delta, 0, 0, len(target), b'', stored)
    assert codecs.decode_data(seg, base, 'data') == bytes(target)


def test_xdelta3_with_wrong_counterparts_fails_cleanly():
    import os
    base = os.urandom(8192)
    delta, stored = codecs.encode_data(fmt.CODEC_XZ, base[:4000] + b'x' * 4192, base)
    assert delta == fmt.DELTA_XDELTA3
    seg = fmt.Segment(0, fmt.CODEC_XZ, delta, 0, 0, 8192, b'', stored)
    with pytest.raises(errors.CorruptOverlay):
        codecs.decode_data(seg, os.urandom(8192), 'data')


def test_streamed_overlay_has_no_declared_memory_size():
    reader, segments = read_all(make_overlay(2, meta=dict(META, memory_size=None)))
    assert reader.meta['memory_size'] is None and len(segments) == 2


def test_memory_size_must_be_a_number_or_null():
    with pytest.raises(errors.CorruptOverlay, match='memory_size'):
        read_all(make_overlay(1, meta=dict(META, memory_size='big')))


# --- strict reading: every byte is covered by a check ------------------------------------


def _segment_field(blob, segment, fmt_char, offset, value):
    """`blob` with a segment header field changed, checksums recomputed."""
    blob = bytearray(blob)
    start = overlay_bytes.walk(blob)[0][segment][0]
    struct.pack_into('<' + fmt_char, blob, start + offset, value)
    return overlay_bytes.rechecksum(blob)


def test_rechecksum_fixture_changes_nothing_by_itself():
    blob = make_overlay(3)
    assert overlay_bytes.rechecksum(blob) == blob
    assert overlay_bytes.with_meta(blob, overlay_bytes.meta_raw(blob)) == blob


@pytest.mark.parametrize('tail', [b'\0', os.urandom(8192)], ids=['one-byte', '8KiB'])
def test_trailing_data_after_the_trailer_is_refused(tail):
    with pytest.raises(errors.CorruptOverlay, match='trailing data after the overlay trailer'):
        read_all(make_overlay() + tail)


def test_an_overlay_without_segments_reads():
    reader, segments = read_all(make_overlay(0))
    assert segments == [] and reader.segment_count == 0


def test_trailer_index_offsets_must_be_where_the_segments_are():
    blob = bytearray(make_overlay(3))
    entry = overlay_bytes.walk(blob)[1] + fmt._END_HEAD.size + fmt._INDEX_ENTRY.size    # segment 1
    struct.pack_into('<Q', blob, entry, struct.unpack_from('<Q', blob, entry)[0] + 1)
    with pytest.raises(errors.CorruptOverlay, match='trailer index puts segment 1 at offset'):
        read_all(bytes(blob))


def test_trailer_index_lengths_must_be_the_segments_lengths():
    blob = bytearray(make_overlay(3))
    entry = overlay_bytes.walk(blob)[1] + fmt._END_HEAD.size + 2 * fmt._INDEX_ENTRY.size + 8   # segment 2
    struct.pack_into('<I', blob, entry, 0)
    with pytest.raises(errors.CorruptOverlay, match='trailer index puts segment 2'):
        read_all(bytes(blob))


def test_segment_reserved_field_must_be_zero():
    with pytest.raises(errors.CorruptOverlay, match='reserved field'):
        read_all(_segment_field(make_overlay(2), 1, 'H', 10, 1))


def test_zstd_dictionary_delta_needs_codec_zstd():
    blob = _segment_field(make_overlay(1, codec=fmt.CODEC_XZ), 0, 'B', 9, fmt.DELTA_ZSTD_DICT)
    with pytest.raises(errors.CorruptOverlay, match='zstd dictionary delta with codec xz'):
        read_all(blob)


@pytest.mark.parametrize('mangle', [
    lambda raw: raw.replace(b',', b', ', 1),                       # spacing
    lambda raw: b'{"zzz":1,' + raw[1:],                            # key order
    lambda raw: raw[:-1] + b',"disk_size":4096}',                  # a duplicate key
    lambda raw: raw.replace(b'"base_id"', b'"\\u0062ase_id"'),       # another escape
], ids=['spacing', 'key-order', 'duplicate-key', 'escape'])
def test_metadata_must_be_canonical_json(mangle):
    blob = make_overlay(1)
    raw = overlay_bytes.meta_raw(blob)
    with pytest.raises(errors.CorruptOverlay, match='canonical form'):
        read_all(overlay_bytes.with_meta(blob, mangle(raw)))


@pytest.mark.parametrize('change,message', [
    ({'version': 2}, 'says version 2, its header version 1'),
    ({'version': True}, 'says version True'),
    ({'format': 'other'}, 'lacks "format"'),
], ids=['version', 'bool-version', 'format'])
def test_metadata_format_and_version_must_agree_with_the_header(change, message):
    blob = make_overlay(1)
    meta = json.loads(overlay_bytes.meta_raw(blob))
    meta.update(change)
    with pytest.raises(errors.CorruptOverlay, match=message):
        read_all(overlay_bytes.with_meta(blob, fmt._meta_bytes(meta)))


def test_plain_metadata_may_not_describe_encryption():
    blob = make_overlay(1)
    meta = dict(json.loads(overlay_bytes.meta_raw(blob)),
                encryption={'algorithm': 'AES-256-GCM', 'kdf': 'HKDF-SHA256', 'salt': '00' * 32})
    with pytest.raises(errors.CorruptOverlay, match='plain overlay whose metadata describes encryption'):
        read_all(overlay_bytes.with_meta(blob, fmt._meta_bytes(meta)))


@pytest.mark.parametrize('version,flags', [(1, fmt.FLAG_ENCRYPTED), (2, 0)])
def test_version_2_and_the_encrypted_flag_go_together(version, flags):
    blob = bytearray(make_overlay(1))
    struct.pack_into('<HH', blob, 8, version, flags)
    with pytest.raises(errors.CorruptOverlay, match='go together'):
        read_all(overlay_bytes.rechecksum(blob))


def test_unknown_flags_are_refused():
    blob = bytearray(make_overlay(1))
    struct.pack_into('<H', blob, 10, 0x0100)
    with pytest.raises(errors.UnsupportedVersion, match='unknown feature flags 0x0100'):
        read_all(overlay_bytes.rechecksum(blob))


@pytest.mark.parametrize('codec', [fmt.CODEC_ZSTD, fmt.CODEC_XZ])
@pytest.mark.parametrize('tail', ['junk', 'second frame'])
def test_payload_bytes_after_the_codec_frame_are_refused(codec, tail):
    frame = codecs.compress(codec, b'x' * 1000)
    stored = frame + (b'junk' if tail == 'junk' else frame)
    with pytest.raises(errors.CorruptOverlay, match='follow the'):
        codecs.decompress(codec, stored, 1000, 'data')


@pytest.mark.parametrize('codec', [fmt.CODEC_ZSTD, fmt.CODEC_XZ])
def test_vcdiff_payload_bytes_after_the_frame_are_refused(codec):
    frame = codecs.compress(codec, b'x' * 1000)
    with pytest.raises(errors.CorruptOverlay, match='follow the'):
        codecs._decompress_unknown_size(codec, frame + b'junk', 4096, 'data')
    assert codecs._decompress_unknown_size(codec, frame, 4096, 'data') == b'x' * 1000


def test_vcdiff_zstd_frame_must_declare_a_size_within_the_limit():
    import zstandard
    undeclared = zstandard.ZstdCompressor(write_content_size=False).compress(b'x' * 1000)
    with pytest.raises(errors.LimitExceeded, match='undeclared'):
        codecs._decompress_unknown_size(fmt.CODEC_ZSTD, undeclared, 4096, 'data')
    with pytest.raises(errors.LimitExceeded, match='delta of 100000 bytes'):
        codecs._decompress_unknown_size(fmt.CODEC_ZSTD, codecs.compress(fmt.CODEC_ZSTD, bytes(100000)),
                                        4096, 'data')


def test_a_header_prefix_reads_without_the_rest():
    """Negotiation reads only the header: the strict end applies to segments() alone."""
    blob = make_overlay(2)
    prefix = blob[:overlay_bytes.header(blob)[3]]
    reader = fmt.OverlayReader(io.BytesIO(prefix))
    assert reader.meta['base_id'] == META['base_id'] and not reader.encrypted
    with pytest.raises(errors.TruncatedOverlay):
        list(reader.segments())


def test_tap_sees_every_byte_in_order():
    blob = make_overlay(3)
    seen = []
    reader = fmt.OverlayReader(io.BytesIO(blob), tap=seen.append)
    list(reader.segments())
    assert b''.join(seen) == blob
