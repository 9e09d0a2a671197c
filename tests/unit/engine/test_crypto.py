"""Encrypted overlays (format version 2): keys, the container, what a forger cannot do."""

import io
import json
import os
import struct

import pytest

from cloudlet_engine import codecs
from cloudlet_engine import crypto
from cloudlet_engine import errors
from cloudlet_engine import format as fmt
from tests.fixtures import overlay_bytes
from tests.fixtures import overlay_index
from tests.unit.engine.test_format import _items
from tests.unit.engine.test_format import make_overlay
from tests.unit.engine.test_format import META

KEY = bytes(range(32))


def make_encrypted(segments=3, key=KEY, meta=META, codec=fmt.CODEC_ZSTD):
    return make_overlay(segments, codec, meta, key)


def read_all(blob, key=KEY, limits=None):
    reader = fmt.OverlayReader(io.BytesIO(blob), limits, key=key)
    return reader, list(reader.segments())


# --- keys ------------------------------------------------------------------------------


def test_new_keys_are_32_random_bytes():
    assert len(crypto.new_key()) == crypto.KEY_BYTES == 32
    assert crypto.new_key() != crypto.new_key()


@pytest.mark.parametrize('key', [b'', b'x' * 31, b'x' * 33, 'x' * 32, 42])
def test_bad_keys_are_refused_without_showing_them(key):
    with pytest.raises(errors.BadKey) as info:
        crypto.check_key(key)
    assert 'xxx' not in str(info.value)


def test_bad_key_refused_by_reader_and_writer():
    with pytest.raises(errors.BadKey):
        fmt.OverlayWriter(io.BytesIO(), META, key=b'short')
    with pytest.raises(errors.BadKey):
        fmt.OverlayReader(io.BytesIO(make_encrypted(1)), key=b'short')


def test_key_files(tmp_path):
    path = tmp_path / 'k'
    key = crypto.write_new_key_file(str(path))
    assert path.read_bytes() == key and os.stat(path).st_mode & 0o777 == 0o600
    assert crypto.read_key_file(str(path)) == key
    with pytest.raises(errors.BadKey, match='cannot create'):
        crypto.write_new_key_file(str(path))            # never over an existing key
    assert path.read_bytes() == key
    (tmp_path / 'long').write_bytes(key + b'\n')
    with pytest.raises(errors.BadKey, match='exactly 32 bytes'):
        crypto.read_key_file(str(tmp_path / 'long'))
    with pytest.raises(errors.BadKey, match='cannot read'):
        crypto.read_key_file(str(tmp_path / 'missing'))


def test_no_key_bytes_in_reprs():
    cipher = crypto.FileCipher(KEY, bytes(32))
    assert repr(cipher) == '<FileCipher AES-256-GCM>'
    for obj in (fmt.OverlayWriter(io.BytesIO(), META, key=KEY),
                fmt.OverlayReader(io.BytesIO(make_encrypted(1)), key=KEY)):
        text = repr(obj) + repr(vars(obj))
        assert KEY.hex() not in text and repr(KEY)[2:-1] not in text


def test_nonces_are_unique_per_index_and_part():
    nonces = {crypto.nonce(i, part) for i in range(100) for part in (0, 1, 2)}
    assert len(nonces) == 300 and all(len(n) == 12 for n in nonces)


# --- the container -----------------------------------------------------------------------


def test_roundtrip_and_header():
    blob = make_encrypted(3)
    reader, segments = read_all(blob)
    assert reader.encrypted and reader.version == fmt.VERSION_ENCRYPTED == 2
    assert struct.unpack_from('<HH', blob, 8) == (2, fmt.FLAG_ENCRYPTED)
    enc = reader.meta['encryption']
    assert (enc['algorithm'], enc['kdf'], len(bytes.fromhex(enc['salt']))) == ('AES-256-GCM', 'HKDF-SHA256', 32)
    assert reader.meta['version'] == 2 and reader.segment_count == 3
    seg = segments[2]
    assert codecs.decompress(seg.codec, seg.data_stored, seg.data_raw_len, 'data') == bytes([2]) * 8202
    assert fmt.decode_items(codecs.decompress(seg.codec, seg.items_stored, seg.items_raw_len, 'items'),
                            seg.item_count) == _items()
    index = overlay_bytes.walk(blob)[0]
    assert [s.stored_size for s in segments] == [length for _, length in index]


def test_plain_overlays_stay_version_1():
    reader = fmt.OverlayReader(io.BytesIO(make_overlay(1)))
    assert (reader.version, reader.encrypted) == (1, False) and 'encryption' not in reader.meta


def test_payloads_are_not_readable_and_each_file_has_its_own_salt():
    one, two = make_encrypted(1), make_encrypted(1)
    plain = codecs.compress(fmt.CODEC_ZSTD, bytes([0]) * 8202)
    assert plain not in one
    assert json.loads(overlay_bytes.meta_raw(one))['encryption']['salt'] != \
        json.loads(overlay_bytes.meta_raw(two))['encryption']['salt']
    assert one[overlay_bytes.header(one)[3]:] != two[overlay_bytes.header(two)[3]:]


def test_metadata_readable_without_the_key():
    reader = fmt.OverlayReader(io.BytesIO(make_encrypted(2)))
    assert reader.meta['base_id'] == META['base_id'] and reader.encrypted
    with pytest.raises(errors.KeyRequired, match='the overlay is encrypted: a key is needed'):
        list(reader.segments())


def test_key_for_a_plain_overlay_is_refused():
    with pytest.raises(errors.NotEncrypted):
        read_all(make_overlay(1))


def test_wrong_key():
    with pytest.raises(errors.DecryptionFailed, match='wrong key, or the overlay was altered') as info:
        read_all(make_encrypted(2), key=bytes(32))
    assert bytes(32).hex() not in str(info.value)


def test_integrity_is_checked_without_the_key():
    blob = make_encrypted(2)
    reader = fmt.OverlayReader(io.BytesIO(blob))
    segments = list(reader.segments(sealed=True))
    assert reader.segment_count == 2 and reader.position == len(blob)
    assert segments[0].stored_size == overlay_bytes.walk(blob)[0][0][1]
    damaged = bytearray(blob)
    damaged[overlay_bytes.walk(blob)[0][1][0] + 100] ^= 1
    for key in (None, KEY):
        with pytest.raises(errors.CorruptOverlay, match='segment 1 checksum mismatch'):
            list(fmt.OverlayReader(io.BytesIO(bytes(damaged)), key=key).segments(sealed=key is None))
    with pytest.raises(errors.CorruptOverlay, match='trailing data'):
        list(fmt.OverlayReader(io.BytesIO(blob + b'x')).segments(sealed=True))


def test_encrypted_index_fixture(tmp_path):
    blob = make_encrypted(3)
    path = tmp_path / 'o.clo'
    path.write_bytes(blob)
    assert overlay_index.read_index(str(path)) == overlay_bytes.walk(blob)[0]


# --- what a forger without the key cannot do (every SHA-256 recomputed) -------------------


@pytest.mark.parametrize('region', ['items', 'data', 'header-raw-len'])
def test_altered_segment_with_recomputed_checksums(region):
    blob = bytearray(make_encrypted(2))
    start, _ = overlay_bytes.walk(blob)[0][1]
    body = start + fmt._SEG_HEAD.size + 32
    if region == 'items':
        blob[body + 3] ^= 0x10
    elif region == 'data':
        blob[body + fmt._SEG_HEAD.unpack_from(blob, start)[6] + 2] ^= 0x10
    else:
        struct.pack_into('<I', blob, start + 16, struct.unpack_from('<I', blob, start + 16)[0] - 1)
    with pytest.raises(errors.DecryptionFailed):
        read_all(overlay_bytes.rechecksum(blob))


def test_swapped_items_and_data_parts():
    blob = make_encrypted(1)
    (start, length), = overlay_bytes.walk(blob)[0]
    fields = list(fmt._SEG_HEAD.unpack_from(blob, start))
    body = start + fmt._SEG_HEAD.size + 32
    items = blob[body:body + fields[6]]
    data = blob[body + fields[6]:start + length]
    fields[6], fields[8] = fields[8], fields[6]
    forged = blob[:start] + fmt._SEG_HEAD.pack(*fields) + bytes(32) + data + items + blob[start + length:]
    with pytest.raises(errors.OverlayError):
        read_all(overlay_bytes.rechecksum(forged))


def test_altered_metadata_is_caught_by_every_segment():
    blob = make_encrypted(2)
    meta = json.loads(overlay_bytes.meta_raw(blob))
    meta['base_id'] = 'cd' * 32
    forged = overlay_bytes.with_meta(blob, fmt._meta_bytes(meta))
    reader = fmt.OverlayReader(io.BytesIO(forged), key=KEY)
    assert reader.meta['base_id'] == 'cd' * 32        # readable, but bound into every tag
    with pytest.raises(errors.DecryptionFailed, match='segment 0 items'):
        list(reader.segments())


def test_dropped_trailing_segments_with_a_recomputed_trailer():
    blob = make_encrypted(3)
    for drop in ({2}, {1, 2}, {0, 1, 2}):
        with pytest.raises(errors.DecryptionFailed, match='the overlay trailer'):
            read_all(overlay_bytes.without_segments(blob, drop))


def test_dropped_middle_segment_is_out_of_order():
    with pytest.raises(errors.CorruptOverlay, match='segment 2 found where segment 1 belongs'):
        read_all(overlay_bytes.without_segments(make_encrypted(3), {1}))


def test_trailer_tag_altered_or_missing():
    blob = make_encrypted(2)
    tag = bytearray(overlay_bytes.trailer_tag(blob))
    tag[0] ^= 1
    with pytest.raises(errors.DecryptionFailed, match='the overlay trailer'):
        read_all(overlay_bytes.rechecksum(blob, end_tag=bytes(tag)))
    with pytest.raises(errors.OverlayError):
        read_all(overlay_bytes.rechecksum(blob, end_tag=b''))


def test_swapped_segments_between_files_with_the_same_key():
    one, two = make_encrypted(2), make_encrypted(2)
    (o1, l1), _ = overlay_bytes.walk(one)[0]
    (o2, l2), _ = overlay_bytes.walk(two)[0]
    forged = one[:o1] + two[o2:o2 + l2] + one[o1 + l1:]
    with pytest.raises(errors.DecryptionFailed, match='segment 0'):
        read_all(overlay_bytes.rechecksum(forged))


def test_plain_overlay_in_place_of_an_encrypted_one():
    """Stripping the encryption (version 1, no flag, no "encryption") gives a plain overlay
    whose payloads are ciphertext: a reader given the key refuses it outright.
    """
    with pytest.raises(errors.NotEncrypted):
        fmt.OverlayReader(io.BytesIO(make_overlay(2)), key=KEY)


def test_sealed_payload_shorter_than_a_tag():
    blob = bytearray(make_encrypted(1))
    start, _ = overlay_bytes.walk(blob)[0][0]
    struct.pack_into('<I', blob, start + 12, 15)
    with pytest.raises(errors.OverlayError):
        read_all(overlay_bytes.rechecksum(blob))


@pytest.mark.parametrize('encryption,error', [
    ({'algorithm': 'AES-128-GCM', 'kdf': 'HKDF-SHA256', 'salt': '00' * 32}, errors.UnsupportedVersion),
    ({'algorithm': 'AES-256-GCM', 'kdf': 'HKDF-SHA256', 'salt': '00' * 31}, errors.CorruptOverlay),
    ({'algorithm': 'AES-256-GCM', 'kdf': 'HKDF-SHA256', 'salt': 'AB' * 32}, errors.CorruptOverlay),
    ({'algorithm': 'AES-256-GCM', 'kdf': 'HKDF-SHA256', 'salt': '00' * 32, 'x': 1}, errors.CorruptOverlay),
    (None, errors.CorruptOverlay),
])
def test_encryption_metadata_is_checked(encryption, error):
    blob = make_encrypted(1)
    meta = json.loads(overlay_bytes.meta_raw(blob))
    meta['encryption'] = encryption
    if encryption is None:
        del meta['encryption']
    with pytest.raises(error):
        fmt.OverlayReader(io.BytesIO(overlay_bytes.with_meta(blob, fmt._meta_bytes(meta))), key=KEY)


def test_limits_are_the_same_as_for_a_plain_overlay():
    with pytest.raises(errors.LimitExceeded, match='exceeds the limit'):
        read_all(make_encrypted(1), limits=fmt.Limits(max_data_bytes=1000))


def test_writer_replaces_an_old_salt():
    blob = make_encrypted(1)
    old = json.loads(overlay_bytes.meta_raw(blob))
    again = make_encrypted(1, meta=dict(old))
    assert json.loads(overlay_bytes.meta_raw(again))['encryption']['salt'] != old['encryption']['salt']
    out = io.BytesIO()
    fmt.OverlayWriter(out, old).finish()                 # the plain writer drops it
    assert 'encryption' not in fmt.OverlayReader(io.BytesIO(out.getvalue())).meta


def test_encrypt_copy_seals_a_plain_overlay_as_it_is():
    plain = make_overlay(3, meta=dict(META, memory_size=None))
    out = io.BytesIO()
    written = fmt.encrypt_copy(io.BytesIO(plain), out, KEY)
    assert written == len(out.getvalue())
    reader, segments = read_all(out.getvalue())
    _, plain_segments = read_all(plain, key=None)
    assert reader.meta == dict(fmt.OverlayReader(io.BytesIO(plain)).meta, version=2,
                               encryption=reader.meta['encryption'])
    assert [(s.items_stored, s.data_stored) for s in segments] == \
        [(s.items_stored, s.data_stored) for s in plain_segments]
    with pytest.raises(errors.OverlayError, match='encrypted already'):
        fmt.encrypt_copy(io.BytesIO(out.getvalue()), io.BytesIO(), KEY)
    with pytest.raises(errors.CorruptOverlay, match='trailing data'):
        fmt.encrypt_copy(io.BytesIO(plain + b'x'), io.BytesIO(), KEY)
    with pytest.raises(errors.BadKey):
        fmt.encrypt_copy(io.BytesIO(plain), io.BytesIO(), b'k')
