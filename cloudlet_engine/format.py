"""The overlay container: header, segments, trailer; the writer and the reader.

The byte layout is specified in doc/overlay-format.md; this module is its only
implementation. The reader is a pure stream reader (it never seeks), so an
overlay can be applied while it is still arriving; every length it reads is
checked against `Limits` before anything is allocated, and every checksum is
verified before a segment's bytes are handed on.
"""

import dataclasses
import hashlib
import json
import struct

from cloudlet_engine import errors

MAGIC = b'\x89CLOVL\r\n'
VERSION = 1
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
    """One segment as stored: header fields plus the two stored payloads."""
    index: int
    codec: int
    delta: int
    item_count: int
    items_raw_len: int
    data_raw_len: int
    items_stored: bytes
    data_stored: bytes
    digest: bytes = b''

    def header_bytes(self):
        return _SEG_HEAD.pack(_SEG_TAG, self.index, self.codec, self.delta, 0, self.item_count,
                              len(self.items_stored), self.items_raw_len,
                              len(self.data_stored), self.data_raw_len)

    def compute_digest(self):
        h = hashlib.sha256(self.header_bytes())
        h.update(self.items_stored)
        h.update(self.data_stored)
        return h.digest()

    @property
    def stored_size(self):
        return _SEG_HEAD.size + _DIGEST + len(self.items_stored) + len(self.data_stored)


def _meta_bytes(meta):
    return json.dumps(meta, sort_keys=True, separators=(',', ':')).encode()


class OverlayWriter:
    """Writes an overlay to a binary file object, segment by segment."""

    def __init__(self, fileobj, meta):
        self._out = fileobj
        meta = dict(meta, format='openstack-cloudlet-overlay', version=VERSION,
                    chunk_size=CHUNK_SIZE)
        meta_raw = _meta_bytes(meta)
        head = _FILE_HEAD.pack(MAGIC, VERSION, 0, len(meta_raw)) + meta_raw
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
        seg = Segment(len(self._index), codec, delta, item_count, items_raw_len,
                      data_raw_len, items_stored, data_stored)
        seg.digest = seg.compute_digest()
        self._index.append((self._offset, seg.stored_size))
        self._root.update(seg.digest)
        self._write(seg.header_bytes() + seg.digest)
        self._write(items_stored)
        self._write(data_stored)
        return seg

    def finish(self):
        index = b''.join(_INDEX_ENTRY.pack(off, size) for off, size in self._index)
        trailer_len = _END_HEAD.size + len(index) + _END_TAIL.size
        self._write(_END_HEAD.pack(_END_TAG, len(self._index)) + index
                    + _END_TAIL.pack(self._root.digest(), trailer_len, END_MAGIC))
        return self._offset


class _Stream:
    """Exact reads from a file-like object, counting bytes; EOF is an error."""

    def __init__(self, fileobj):
        self._in = fileobj
        self.position = 0

    def read_exact(self, size, what):
        parts, need = [], size
        while need:
            part = self._in.read(min(need, 1 << 20))
            if not part:
                raise errors.TruncatedOverlay('overlay truncated: %d bytes at offset %d (%s) missing'
                                              % (need, self.position, what))
            parts.append(part)
            need -= len(part)
            self.position += len(part)
        return parts[0] if len(parts) == 1 else b''.join(parts)


class OverlayReader:
    """Reads an overlay front to back. Usage::

        reader = OverlayReader(fileobj)
        reader.meta                      # validated header metadata
        for segment in reader.segments():
            ...                          # checksum already verified
        # after the loop the trailer has been verified too
    """

    def __init__(self, fileobj, limits=None):
        self.limits = limits or Limits()
        self._stream = _Stream(fileobj)
        head = self._stream.read_exact(_FILE_HEAD.size, 'file header')
        magic, version, flags, meta_len = _FILE_HEAD.unpack(head)
        if magic != MAGIC:
            raise errors.CorruptOverlay('not an openstack-cloudlet overlay (bad magic %r)' % magic)
        if version != VERSION:
            raise errors.UnsupportedVersion('overlay format version %d; this engine reads version %d'
                                            % (version, VERSION))
        if flags:
            raise errors.UnsupportedVersion('overlay uses unknown feature flags 0x%04x' % flags)
        if meta_len > self.limits.max_meta_bytes:
            raise errors.LimitExceeded('overlay metadata of %d bytes exceeds the limit of %d'
                                       % (meta_len, self.limits.max_meta_bytes))
        meta_raw = self._stream.read_exact(meta_len, 'metadata')
        digest = self._stream.read_exact(_DIGEST, 'metadata checksum')
        self._meta_digest = hashlib.sha256(head + meta_raw).digest()
        if digest != self._meta_digest:
            raise errors.CorruptOverlay('overlay metadata checksum mismatch')
        self.meta = self._parse_meta(meta_raw)
        self._root = hashlib.sha256(self._meta_digest)
        self.segment_count = None

    def _parse_meta(self, raw):
        try:
            meta = json.loads(raw.decode('utf-8'))
        except (UnicodeDecodeError, ValueError) as exc:
            raise errors.CorruptOverlay('overlay metadata is not valid JSON: %s' % exc)
        if not isinstance(meta, dict):
            raise errors.CorruptOverlay('overlay metadata is not a JSON object')
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

    @property
    def position(self):
        return self._stream.position

    def segments(self):
        """Yield each Segment (checksum verified); verify the trailer at the end."""
        index = 0
        while True:
            tag = self._stream.read_exact(4, 'segment tag')
            if tag == _END_TAG:
                self._read_trailer(index)
                return
            if tag != _SEG_TAG:
                raise errors.CorruptOverlay('bad segment tag %r at offset %d'
                                            % (tag, self._stream.position - 4))
            if index >= self.limits.max_segments:
                raise errors.LimitExceeded('more than %d segments' % self.limits.max_segments)
            yield self._read_segment(tag, index)
            index += 1

    def _read_segment(self, tag, expected_index):
        rest = self._stream.read_exact(_SEG_HEAD.size - 4 + _DIGEST, 'segment header')
        (_, index, codec, delta, reserved, item_count, items_stored_len, items_raw_len,
         data_stored_len, data_raw_len) = _SEG_HEAD.unpack(tag + rest[:-_DIGEST])
        limits = self.limits
        if index != expected_index:
            raise errors.CorruptOverlay('segment %d found where segment %d belongs'
                                        % (index, expected_index))
        if codec not in CODEC_NAMES or delta not in DELTA_NAMES or reserved:
            raise errors.UnsupportedVersion('segment %d uses unknown codec %d or delta %d'
                                            % (index, codec, delta))
        if item_count > limits.max_items_per_segment:
            raise errors.LimitExceeded('segment %d has %d items (limit %d)'
                                       % (index, item_count, limits.max_items_per_segment))
        for stored, raw, limit, what in ((items_stored_len, items_raw_len, limits.max_items_bytes, 'item table'),
                                         (data_stored_len, data_raw_len, limits.max_data_bytes, 'data')):
            if raw > limit or stored > limit + 65536:
                raise errors.LimitExceeded('segment %d %s of %d bytes exceeds the limit of %d'
                                           % (index, what, max(raw, stored), limit))
        items_stored = self._stream.read_exact(items_stored_len, 'segment %d items' % index)
        data_stored = self._stream.read_exact(data_stored_len, 'segment %d data' % index)
        seg = Segment(index, codec, delta, item_count, items_raw_len, data_raw_len,
                      items_stored, data_stored)
        seg.digest = seg.compute_digest()
        if seg.digest != rest[-_DIGEST:]:
            raise errors.CorruptOverlay('segment %d checksum mismatch' % index)
        self._root.update(seg.digest)
        return seg

    def _read_trailer(self, seen):
        count = struct.unpack('<I', self._stream.read_exact(4, 'trailer'))[0]
        if count != seen:
            raise errors.CorruptOverlay('trailer counts %d segments, %d were read' % (count, seen))
        self._stream.read_exact(_INDEX_ENTRY.size * count, 'segment index')
        root, trailer_len, end_magic = _END_TAIL.unpack(
            self._stream.read_exact(_END_TAIL.size, 'trailer end'))
        if end_magic != END_MAGIC or trailer_len != _END_HEAD.size + _INDEX_ENTRY.size * count + _END_TAIL.size:
            raise errors.CorruptOverlay('malformed overlay trailer')
        if root != self._root.digest():
            raise errors.CorruptOverlay('overlay checksum mismatch (segments missing, reordered or altered)')
        self.segment_count = count
