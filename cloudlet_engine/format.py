"""The overlay container: header, segments, trailer; the writer and the reader.

The byte layout is specified in doc/overlay-format.md; this module is its only
implementation. The reader is a pure stream reader (it never seeks), so an
overlay can be applied while it is still arriving; every length it reads is
checked against `Limits` before anything is allocated, and every checksum is
verified before a segment's bytes are handed on. Every byte of a file is
covered by a check: a reader that reaches the end has seen nothing it did not
verify, and nothing after the trailer.

Version 2 is the same container encrypted (crypto.py): each segment's stored
payloads are AES-256-GCM sealed, and the trailer carries a tag that
authenticates the end. The metadata stays readable without the key.
"""

import dataclasses
import hashlib
import json
import struct

from cloudlet_engine import crypto
from cloudlet_engine import errors

MAGIC = b'\x89CLOVL\r\n'
FORMAT_NAME = 'openstack-cloudlet-overlay'
VERSION = 1                  # a plain overlay: what every reader reads
VERSION_ENCRYPTED = 2        # an encrypted overlay (doc/overlay-format.md, "Version 2")
VERSIONS = (VERSION, VERSION_ENCRYPTED)     # what this reader reads
FLAG_ENCRYPTED = 0x0001
CHUNK_SIZE = 4096

# Codecs and delta modes of a segment (one byte each in the segment header).
CODEC_NONE, CODEC_XZ, CODEC_ZSTD = 0, 1, 2
CODEC_NAMES = {CODEC_NONE: 'none', CODEC_XZ: 'xz', CODEC_ZSTD: 'zstd'}
DELTA_NONE, DELTA_ZSTD_DICT, DELTA_XDELTA3 = 0, 1, 2
DELTA_NAMES = {DELTA_NONE: 'none', DELTA_ZSTD_DICT: 'zstd-dict', DELTA_XDELTA3: 'xdelta3'}

_FILE_HEAD = struct.Struct('<8sHHI')          # magic, version, flags, meta_len
_SEG_TAG, _END_TAG = b'SEG\0', b'END\0'
_SEG_HEAD = struct.Struct('<4sIBBHIIIII')     # tag, index, codec, delta, reserved, items, 4 lengths
_DIGEST = 32
_END_HEAD = struct.Struct('<4sI')              # tag, segment_count
_INDEX_ENTRY = struct.Struct('<QI')            # file offset, segment length
_END_TAIL = struct.Struct('<32sI8s')           # root digest, trailer length, end magic
_COUNT = struct.Struct('<I')
END_MAGIC = b'CLOVLEND'

# Items: one kind byte, then fixed fields (see doc/overlay-format.md, "Items").
DISK_DATA, DISK_ZERO, DISK_COPY = 0x01, 0x02, 0x03
MEM_BYTES, MEM_PAGE_DATA, MEM_PAGE_ZERO, MEM_PAGE_COPY = 0x11, 0x12, 0x13, 0x14
MEM_RANGE_COPY = 0x15
# Source areas of a COPY item.
AREA_BASE_DISK, AREA_BASE_MEMORY, AREA_LAUNCH_DISK, AREA_LAUNCH_MEMORY = 1, 2, 3, 4
AREA_NAMES = {AREA_BASE_DISK: 'base disk', AREA_BASE_MEMORY: 'base memory',
              AREA_LAUNCH_DISK: 'launch disk', AREA_LAUNCH_MEMORY: 'launch memory'}
NO_COUNTERPART = (1 << 64) - 1

_ITEM_FIELDS = {
    DISK_DATA: struct.Struct('<Q'),       # disk offset
    DISK_ZERO: struct.Struct('<Q'),       # disk offset
    DISK_COPY: struct.Struct('<QBQ'),     # disk offset, source area, source offset
    MEM_BYTES: struct.Struct('<I'),       # byte count
    MEM_PAGE_DATA: struct.Struct('<Q'),   # base memory offset of the same page, or NO_COUNTERPART
    MEM_PAGE_ZERO: struct.Struct(''),
    MEM_PAGE_COPY: struct.Struct('<BQ'),  # source area, source offset
    MEM_RANGE_COPY: struct.Struct('<QI'),  # base memory offset, byte count
}


@dataclasses.dataclass(frozen=True)
class Item:
    kind: int
    offset: int = 0         # disk offset (DISK_*); unused for memory items
    area: int = 0           # COPY source area
    source: int = 0         # COPY source offset; MEM_PAGE_DATA counterpart
    length: int = 0         # MEM_BYTES byte count

    @property
    def data_length(self):
        """How many bytes of the segment's data area this item consumes."""
        if self.kind in (DISK_DATA, MEM_PAGE_DATA):
            return CHUNK_SIZE
        if self.kind == MEM_BYTES:
            return self.length
        return 0


def encode_items(items):
    out = bytearray()
    for item in items:
        fields = _ITEM_FIELDS[item.kind]
        out.append(item.kind)
        if item.kind in (DISK_DATA, DISK_ZERO):
            out += fields.pack(item.offset)
        elif item.kind == DISK_COPY:
            out += fields.pack(item.offset, item.area, item.source)
        elif item.kind == MEM_BYTES:
            out += fields.pack(item.length)
        elif item.kind == MEM_PAGE_DATA:
            out += fields.pack(item.source)
        elif item.kind == MEM_PAGE_COPY:
            out += fields.pack(item.area, item.source)
        elif item.kind == MEM_RANGE_COPY:
            out += fields.pack(item.source, item.length)
    return bytes(out)


def decode_items(raw, count):
    """Parse `count` items from `raw`; CorruptOverlay on any mismatch."""
    items, pos, size = [], 0, len(raw)
    for _ in range(count):
        if pos >= size:
            raise errors.CorruptOverlay('item table ends after %d of %d items' % (len(items), count))
        kind = raw[pos]
        fields = _ITEM_FIELDS.get(kind)
        if fields is None:
            raise errors.CorruptOverlay('unknown item kind 0x%02x' % kind)
        end = pos + 1 + fields.size
        if end > size:
            raise errors.CorruptOverlay('item table truncated inside an item')
        values = fields.unpack_from(raw, pos + 1)
        pos = end
        if kind in (DISK_DATA, DISK_ZERO):
            items.append(Item(kind, offset=values[0]))
        elif kind == DISK_COPY:
            items.append(Item(kind, offset=values[0], area=values[1], source=values[2]))
        elif kind == MEM_BYTES:
            items.append(Item(kind, length=values[0]))
        elif kind == MEM_PAGE_DATA:
            items.append(Item(kind, source=values[0]))
        elif kind == MEM_PAGE_COPY:
            items.append(Item(kind, area=values[0], source=values[1]))
        elif kind == MEM_RANGE_COPY:
            items.append(Item(kind, area=AREA_BASE_MEMORY, source=values[0], length=values[1]))
        else:
            items.append(Item(kind))
    if pos != size:
        raise errors.CorruptOverlay('item table has %d trailing bytes' % (size - pos))
    return items


@dataclasses.dataclass
class Limits:
    """What a reader accepts before it allocates anything (LimitExceeded beyond)."""
    max_meta_bytes: int = 1 << 20
    max_items_bytes: int = 8 << 20
    max_data_bytes: int = 64 << 20
    max_items_per_segment: int = 1 << 20
    max_segments: int = 1 << 22
    max_memory_bytes: int = 64 << 30
    max_disk_bytes: int = 4 << 40


@dataclasses.dataclass
class Segment:
    """One segment: header fields plus its two payloads.

    As the writer makes it, the payloads are the stored bytes. A reader hands
    them on as the codec made them: for an encrypted overlay, decrypted;
    `stored_size` is always what the segment took on file.
    """
    index: int
    codec: int
    delta: int
    item_count: int
    items_raw_len: int
    data_raw_len: int
    items_stored: bytes
    data_stored: bytes
    digest: bytes = b''
    stored_size: int = None       # header + digest + payloads as stored; None: from the payloads

    def __post_init__(self):
        if self.stored_size is None:
            self.stored_size = _SEG_HEAD.size + _DIGEST + len(self.items_stored) + len(self.data_stored)

    def header_bytes(self):
        return _SEG_HEAD.pack(_SEG_TAG, self.index, self.codec, self.delta, 0, self.item_count,
                              len(self.items_stored), self.items_raw_len,
                              len(self.data_stored), self.data_raw_len)

    def compute_digest(self):
        h = hashlib.sha256(self.header_bytes())
        h.update(self.items_stored)
        h.update(self.data_stored)
        return h.digest()


def _meta_bytes(meta):
    return json.dumps(meta, sort_keys=True, separators=(',', ':')).encode()


def _end_aad(meta_digest, count, root):
    """What the trailer's tag authenticates (doc/overlay-format.md, "The authenticated end")."""
    return meta_digest + _COUNT.pack(count) + root


class OverlayWriter:
    """Writes an overlay to a binary file object, segment by segment.

    With a `key` (32 bytes, crypto.new_key()) the overlay is encrypted: version 2.
    """

    def __init__(self, fileobj, meta, key=None):
        self._out = fileobj
        self._cipher = None
        self.encrypted = key is not None
        version = VERSION_ENCRYPTED if self.encrypted else VERSION
        meta = dict(meta, format=FORMAT_NAME, version=version, chunk_size=CHUNK_SIZE)
        meta.pop('encryption', None)      # a header copied from another overlay: never its salt
        if self.encrypted:
            salt = crypto.new_salt()
            self._cipher = crypto.FileCipher(key, salt)
            meta['encryption'] = {'algorithm': crypto.ALGORITHM, 'kdf': crypto.KDF, 'salt': salt.hex()}
        meta_raw = _meta_bytes(meta)
        head = _FILE_HEAD.pack(MAGIC, version, FLAG_ENCRYPTED if self.encrypted else 0,
                               len(meta_raw)) + meta_raw
        self._meta_digest = hashlib.sha256(head).digest()
        self._root = hashlib.sha256(self._meta_digest)
        self._index = []
        self._offset = 0
        self._write(head + self._meta_digest)

    def _write(self, data):
        self._out.write(data)
        self._offset += len(data)

    @property
    def bytes_written(self):
        return self._offset

    def add_segment(self, codec, delta, item_count, items_raw_len, items_stored,
                    data_raw_len, data_stored):
        """Append a segment; items_stored and data_stored are the codec's output."""
        index = len(self._index)
        if self._cipher is not None:
            header = _SEG_HEAD.pack(_SEG_TAG, index, codec, delta, 0, item_count,
                                    len(items_stored) + crypto.TAG_BYTES, items_raw_len,
                                    len(data_stored) + crypto.TAG_BYTES, data_raw_len)
            aad = self._meta_digest + header
            items_stored = self._cipher.seal(index, crypto.PART_ITEMS, items_stored, aad)
            data_stored = self._cipher.seal(index, crypto.PART_DATA, data_stored, aad)
        seg = Segment(index, codec, delta, item_count, items_raw_len,
                      data_raw_len, items_stored, data_stored)
        seg.digest = seg.compute_digest()
        self._index.append((self._offset, seg.stored_size))
        self._root.update(seg.digest)
        self._write(seg.header_bytes() + seg.digest)
        self._write(items_stored)
        self._write(data_stored)
        return seg

    def finish(self):
        count = len(self._index)
        root = self._root.digest()
        index = b''.join(_INDEX_ENTRY.pack(off, size) for off, size in self._index)
        end_tag = b''
        if self._cipher is not None:
            end_tag = self._cipher.seal(count, crypto.PART_END, b'', _end_aad(self._meta_digest, count, root))
        trailer_len = _END_HEAD.size + len(index) + len(end_tag) + _END_TAIL.size
        self._write(_END_HEAD.pack(_END_TAG, count) + index + end_tag
                    + _END_TAIL.pack(root, trailer_len, END_MAGIC))
        return self._offset


class _Stream:
    """Exact reads from a file-like object, counting bytes; EOF is an error.

    `tap`, if given, receives every byte read, in order.
    """

    def __init__(self, fileobj, tap=None):
        self._in = fileobj
        self._tap = tap
        self.position = 0

    def read_exact(self, size, what):
        parts, need = [], size
        while need:
            part = self._in.read(min(need, 1 << 20))
            if not part:
                raise errors.TruncatedOverlay('overlay truncated: %d bytes at offset %d (%s) missing'
                                              % (need, self.position, what))
            if self._tap is not None:
                self._tap(part)
            parts.append(part)
            need -= len(part)
            self.position += len(part)
        return parts[0] if len(parts) == 1 else b''.join(parts)

    def expect_end(self):
        """CorruptOverlay if anything follows."""
        extra = self._in.read(1)
        if extra:
            if self._tap is not None:
                self._tap(extra)
            raise errors.CorruptOverlay('trailing data after the overlay trailer (at offset %d)'
                                        % self.position)


class OverlayReader:
    """Reads an overlay front to back. Usage::

        reader = OverlayReader(fileobj, key=None)
        reader.meta                      # validated header metadata (readable without a key)
        for segment in reader.segments():
            ...                          # checksum verified (and decrypted)
        # after the loop the trailer and the end of the stream have been verified too

    `key`: the 32-byte key of an encrypted overlay; a key for a plain overlay
    is refused (NotEncrypted). `tap(data)` receives every byte read, in order
    (a signature verifier hashing as the stream goes).
    """

    def __init__(self, fileobj, limits=None, key=None, tap=None):
        self.limits = limits or Limits()
        if key is not None:
            key = crypto.check_key(key)
        self._stream = _Stream(fileobj, tap)
        head = self._stream.read_exact(_FILE_HEAD.size, 'file header')
        magic, version, flags, meta_len = _FILE_HEAD.unpack(head)
        if magic != MAGIC:
            raise errors.CorruptOverlay('not an openstack-cloudlet overlay (bad magic %r)' % magic)
        if version not in VERSIONS:
            raise errors.UnsupportedVersion('overlay format version %d; this engine reads versions %s'
                                            % (version, ' and '.join(str(v) for v in VERSIONS)))
        if flags & ~FLAG_ENCRYPTED:
            raise errors.UnsupportedVersion('overlay uses unknown feature flags 0x%04x' % flags)
        if flags != (FLAG_ENCRYPTED if version == VERSION_ENCRYPTED else 0):
            raise errors.CorruptOverlay('overlay format version %d with flags 0x%04x: version 2 and the '
                                        'encrypted flag go together' % (version, flags))
        self.version = version
        self.encrypted = bool(flags & FLAG_ENCRYPTED)
        if meta_len > self.limits.max_meta_bytes:
            raise errors.LimitExceeded('overlay metadata of %d bytes exceeds the limit of %d'
                                       % (meta_len, self.limits.max_meta_bytes))
        meta_raw = self._stream.read_exact(meta_len, 'metadata')
        digest = self._stream.read_exact(_DIGEST, 'metadata checksum')
        self._meta_digest = hashlib.sha256(head + meta_raw).digest()
        if digest != self._meta_digest:
            raise errors.CorruptOverlay('overlay metadata checksum mismatch')
        self.meta = self._parse_meta(meta_raw)
        self._cipher = None
        if key is not None:
            if not self.encrypted:
                raise errors.NotEncrypted()
            self._cipher = crypto.FileCipher(key, bytes.fromhex(self.meta['encryption']['salt']))
        self._root = hashlib.sha256(self._meta_digest)
        self._index = bytearray()        # what the trailer's index must say, built as segments are read
        self.segment_count = None

    def _parse_meta(self, raw):
        try:
            meta = json.loads(raw.decode('utf-8'))
        except (UnicodeDecodeError, ValueError) as exc:
            raise errors.CorruptOverlay('overlay metadata is not valid JSON: %s' % exc)
        if not isinstance(meta, dict):
            raise errors.CorruptOverlay('overlay metadata is not a JSON object')
        if _meta_bytes(meta) != raw:
            # One encoding per content: no spacing, key order or duplicate keys to play with.
            raise errors.CorruptOverlay('overlay metadata is not in canonical form '
                                        '(sorted keys, no spaces, no duplicate keys)')
        if meta.get('format') != FORMAT_NAME:
            raise errors.CorruptOverlay('overlay metadata lacks "format": "%s"' % FORMAT_NAME)
        if meta.get('version') != self.version or isinstance(meta.get('version'), bool):
            raise errors.CorruptOverlay('overlay metadata says version %r, its header version %d'
                                        % (meta.get('version'), self.version))
        self._check_encryption_meta(meta.get('encryption'))
        if meta.get('memory_size', 0) is None:
            # A streamed overlay (a handoff residue) does not know its memory
            # image's size up front: the applier enforces the limit as it grows.
            meta = dict(meta, memory_size=None)
        for key, kind in (('base_id', str), ('disk_size', int), ('memory_size', (int, type(None))),
                          ('chunk_size', int)):
            if key not in meta or not isinstance(meta[key], kind) or isinstance(meta[key], bool):
                raise errors.CorruptOverlay('overlay metadata lacks a valid %r' % key)
        if meta['chunk_size'] != CHUNK_SIZE:
            raise errors.UnsupportedVersion('chunk size %d; this engine supports %d'
                                            % (meta['chunk_size'], CHUNK_SIZE))
        if meta['memory_size'] is not None and not 0 <= meta['memory_size'] <= self.limits.max_memory_bytes:
            raise errors.LimitExceeded('memory image of %d bytes exceeds the limit of %d'
                                       % (meta['memory_size'], self.limits.max_memory_bytes))
        if not 0 <= meta['disk_size'] <= self.limits.max_disk_bytes or meta['disk_size'] % CHUNK_SIZE:
            raise errors.LimitExceeded('disk size %d is out of range' % meta['disk_size'])
        return meta

    def _check_encryption_meta(self, encryption):
        if not self.encrypted:
            if encryption is not None:
                raise errors.CorruptOverlay('a plain overlay whose metadata describes encryption')
            return
        if not isinstance(encryption, dict) or set(encryption) != {'algorithm', 'kdf', 'salt'}:
            raise errors.CorruptOverlay('encrypted overlay: metadata "encryption" must hold exactly '
                                        'algorithm, kdf and salt')
        if encryption['algorithm'] != crypto.ALGORITHM or encryption['kdf'] != crypto.KDF:
            raise errors.UnsupportedVersion('overlay encrypted with %r and %r; this engine reads %s with %s'
                                            % (encryption['algorithm'], encryption['kdf'],
                                               crypto.ALGORITHM, crypto.KDF))
        salt = encryption['salt']
        if not (isinstance(salt, str) and len(salt) == 2 * crypto.SALT_BYTES
                and all(c in '0123456789abcdef' for c in salt)):
            raise errors.CorruptOverlay('encrypted overlay: the salt is not %d bytes in lowercase hex'
                                        % crypto.SALT_BYTES)

    @property
    def position(self):
        return self._stream.position

    def require_key(self):
        """KeyRequired unless the segments can be read (a plain overlay, or a key was given)."""
        if self.encrypted and self._cipher is None:
            raise errors.KeyRequired()

    def segments(self, sealed=False):
        """Yield each Segment (checksum verified, decrypted); verify the trailer and the
        end of the stream after the last one.

        sealed=True: an encrypted overlay's segments as stored, no key needed;
        every check but the GCM tags is made (integrity without the key).
        """
        if not sealed:
            self.require_key()
        decrypt = self._cipher is not None and not sealed
        index = 0
        while True:
            start = self._stream.position
            tag = self._stream.read_exact(4, 'segment tag')
            if tag == _END_TAG:
                self._read_trailer(index, decrypt)
                self._stream.expect_end()
                self.segment_count = index
                return
            if tag != _SEG_TAG:
                raise errors.CorruptOverlay('bad segment tag %r at offset %d' % (tag, start))
            if index >= self.limits.max_segments:
                raise errors.LimitExceeded('more than %d segments' % self.limits.max_segments)
            segment = self._read_segment(tag, index, decrypt)
            self._index += _INDEX_ENTRY.pack(start, self._stream.position - start)
            yield segment
            index += 1

    def _read_segment(self, tag, expected_index, decrypt):
        rest = self._stream.read_exact(_SEG_HEAD.size - 4 + _DIGEST, 'segment header')
        header = tag + rest[:-_DIGEST]
        (_, index, codec, delta, reserved, item_count, items_stored_len, items_raw_len,
         data_stored_len, data_raw_len) = _SEG_HEAD.unpack(header)
        limits = self.limits
        if index != expected_index:
            raise errors.CorruptOverlay('segment %d found where segment %d belongs'
                                        % (index, expected_index))
        if codec not in CODEC_NAMES or delta not in DELTA_NAMES:
            raise errors.UnsupportedVersion('segment %d uses unknown codec %d or delta %d'
                                            % (index, codec, delta))
        if reserved:
            raise errors.CorruptOverlay('segment %d: reserved field is 0x%04x, not 0' % (index, reserved))
        if delta == DELTA_ZSTD_DICT and codec != CODEC_ZSTD:
            raise errors.CorruptOverlay('segment %d: zstd dictionary delta with codec %s'
                                        % (index, CODEC_NAMES[codec]))
        if item_count > limits.max_items_per_segment:
            raise errors.LimitExceeded('segment %d has %d items (limit %d)'
                                       % (index, item_count, limits.max_items_per_segment))
        for stored, raw, limit, what in ((items_stored_len, items_raw_len, limits.max_items_bytes, 'item table'),
                                         (data_stored_len, data_raw_len, limits.max_data_bytes, 'data')):
            if raw > limit or stored > limit + 65536:
                raise errors.LimitExceeded('segment %d %s of %d bytes exceeds the limit of %d'
                                           % (index, what, max(raw, stored), limit))
            if self.encrypted and stored < crypto.TAG_BYTES:
                raise errors.CorruptOverlay('segment %d: the sealed %s is shorter than its %d-byte tag'
                                            % (index, what, crypto.TAG_BYTES))
        items_stored = self._stream.read_exact(items_stored_len, 'segment %d items' % index)
        data_stored = self._stream.read_exact(data_stored_len, 'segment %d data' % index)
        h = hashlib.sha256(header)
        h.update(items_stored)
        h.update(data_stored)
        digest = h.digest()
        if digest != rest[-_DIGEST:]:
            raise errors.CorruptOverlay('segment %d checksum mismatch' % index)
        self._root.update(digest)
        if decrypt:
            aad = self._meta_digest + header
            items_stored = self._cipher.open(index, crypto.PART_ITEMS, items_stored, aad,
                                             'segment %d items' % index)
            data_stored = self._cipher.open(index, crypto.PART_DATA, data_stored, aad,
                                            'segment %d data' % index)
        return Segment(index, codec, delta, item_count, items_raw_len, data_raw_len, items_stored,
                       data_stored, digest,
                       stored_size=_SEG_HEAD.size + _DIGEST + items_stored_len + data_stored_len)

    def _read_trailer(self, seen, decrypt):
        count = _COUNT.unpack(self._stream.read_exact(_COUNT.size, 'trailer'))[0]
        if count != seen:
            raise errors.CorruptOverlay('trailer counts %d segments, %d were read' % (count, seen))
        index = self._stream.read_exact(_INDEX_ENTRY.size * count, 'segment index')
        if index != self._index:
            self._index_mismatch(index)
        end_tag = self._stream.read_exact(crypto.TAG_BYTES, 'trailer tag') if self.encrypted else b''
        root, trailer_len, end_magic = _END_TAIL.unpack(
            self._stream.read_exact(_END_TAIL.size, 'trailer end'))
        if end_magic != END_MAGIC or trailer_len != _END_HEAD.size + len(index) + len(end_tag) + _END_TAIL.size:
            raise errors.CorruptOverlay('malformed overlay trailer')
        if root != self._root.digest():
            raise errors.CorruptOverlay('overlay checksum mismatch (segments missing, reordered or altered)')
        if decrypt:
            self._cipher.open(count, crypto.PART_END, end_tag, _end_aad(self._meta_digest, count, root),
                              'the overlay trailer')

    def _index_mismatch(self, index):
        for i in range(len(index) // _INDEX_ENTRY.size):
            said = _INDEX_ENTRY.unpack_from(index, i * _INDEX_ENTRY.size)
            found = _INDEX_ENTRY.unpack_from(self._index, i * _INDEX_ENTRY.size)
            if said != found:
                raise errors.CorruptOverlay('the trailer index puts segment %d at offset %d (%d bytes); '
                                            'it was read at offset %d (%d bytes)' % ((i,) + said + found))
        raise errors.CorruptOverlay('the trailer index does not match the segments read')


def encrypt_copy(src, out, key, limits=None):
    """Write to `out` the plain overlay read from `src`, encrypted with `key` (version 2).

    The segments are sealed as they are (no decompression, no re-encoding);
    `src` is verified to its end on the way. Returns the bytes written; on an
    error `out` holds an incomplete overlay, which the caller removes.
    """
    key = crypto.check_key(key)
    reader = OverlayReader(src, limits)
    if reader.encrypted:
        raise errors.OverlayError('the overlay is encrypted already')
    writer = OverlayWriter(out, reader.meta, key=key)
    for seg in reader.segments():
        writer.add_segment(seg.codec, seg.delta, seg.item_count, seg.items_raw_len, seg.items_stored,
                           seg.data_raw_len, seg.data_stored)
    return writer.finish()
