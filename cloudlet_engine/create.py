"""Overlay creation: a VM's changed disk and memory -> an overlay, streaming.

Every 4 KiB chunk the VM holds is classified, cheapest first:

1. unchanged (disk: same digest as the base chunk at its offset) -> nothing;
2. zero -> a ZERO item;
3. found in the base memory, the base disk, or earlier in this overlay -> a
   COPY item naming where (memory pages copy the base page with the same
   content, wherever it sits: that is how unaligned save images still dedup);
4. otherwise DATA: the bytes go to the segment's data area, encoded against
   the base chunk at the same place (codecs.encode_data).

Memory is walked first, in save-image order (the launch memory file is written
sequentially); the disk follows, so disk chunks can reuse memory pages.
"""

import dataclasses
import os
import time

from cloudlet_engine import chunks
from cloudlet_engine import codecs
from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import format as fmt
from cloudlet_engine import migstream
from cloudlet_engine import qcow2
from cloudlet_engine import savefile

SEGMENT_DATA_BYTES = 1 << 20
SEGMENT_MAX_ITEMS = 32768
MEM_BYTES_PIECE = 1 << 20


@dataclasses.dataclass
class CreateStats:
    memory_pages: int = 0
    memory_pages_changed: int = 0     # differ from the base page at the same address
    memory_pages_data: int = 0
    memory_bytes_opaque: int = 0
    disk_chunks_changed: int = 0
    disk_chunks_data: int = 0
    zero: int = 0
    from_base_memory: int = 0
    from_base_disk: int = 0
    from_self: int = 0
    segments: int = 0
    segments_delta: int = 0
    overlay_bytes: int = 0
    seconds: float = 0.0

    @property
    def changed_bytes(self):
        """State the overlay describes beyond what the base has at the same place."""
        return (self.memory_pages_changed + self.disk_chunks_changed) * chunks.CHUNK


class SegmentBuilder:
    """Collects items and data; emits a segment when it is full.

    `codec` is a codec id, or a chooser (adaptive.CodecChooser) asked for a
    codec at each segment and told what each segment cost.
    """

    def __init__(self, writer, base, codec, level, workdir, stats, segment_bytes=SEGMENT_DATA_BYTES):
        self.writer, self.base, self.codec, self.level = writer, base, codec, level
        self.workdir, self.stats = workdir, stats
        self.segment_bytes = segment_bytes
        self._base_disk = open(base.disk_path, 'rb')
        self._base_memory = open(base.memory_path, 'rb')
        self._reset()

    def _reset(self):
        self.items, self.data, self.counterparts = [], bytearray(), bytearray()

    def add(self, item, data=b'', counterpart=None):
        self.items.append(item)
        if data:
            self.data += data
        if counterpart is not None:
            self.counterparts += counterpart
        if len(self.data) >= self.segment_bytes or len(self.items) >= SEGMENT_MAX_ITEMS:
            self.flush()

    def disk_counterpart(self, offset):
        if offset + chunks.CHUNK <= self.base.disk_size:
            return os.pread(self._base_disk.fileno(), chunks.CHUNK, offset)
        return None

    def memory_counterpart(self, offset):
        return os.pread(self._base_memory.fileno(), chunks.CHUNK, offset)

    def flush(self):
        if not self.items:
            return
        chooser = None if isinstance(self.codec, int) else self.codec
        codec = self.codec if chooser is None else chooser.choose(len(self.data))
        started = time.thread_time()
        items_raw = fmt.encode_items(self.items)
        delta, data_stored = codecs.encode_data(codec, bytes(self.data), bytes(self.counterparts),
                                                self.level, self.workdir)
        items_stored = codecs.compress(codec, items_raw, self.level)
        if chooser is not None:
            chooser.observe(codec, len(self.data) + len(items_raw), len(data_stored) + len(items_stored),
                            time.thread_time() - started)
        self.writer.add_segment(codec, delta, len(self.items), len(items_raw), items_stored,
                                len(self.data), data_stored)
        self.stats.segments += 1
        self.stats.segments_delta += delta != fmt.DELTA_NONE
        self._reset()

    def close(self):
        self._base_disk.close()
        self._base_memory.close()


class Classifier:
    """Finds where a chunk's content already is: base memory, base disk, self."""

    def __init__(self, base, stats):
        self.stats = stats
        self.memory_by_key, self.memory_by_digest = base.memory_index()
        self.disk_by_digest = base.disk_index()
        self.written = {}   # digest -> (area, offset) of DATA chunks already in the overlay

    def find(self, digest):
        offset = self.memory_by_digest.get(digest)
        if offset is not None:
            self.stats.from_base_memory += 1
            return fmt.AREA_BASE_MEMORY, offset
        offset = self.disk_by_digest.get(digest)
        if offset is not None:
            self.stats.from_base_disk += 1
            return fmt.AREA_BASE_DISK, offset
        found = self.written.get(digest)
        if found is not None:
            self.stats.from_self += 1
        return found


def create_overlay(base, disk_path, memory_path, out, codec='zstd', level=None,
                   progress=None, workdir=None, key=None):
    """Write the overlay of (disk_path, memory_path) against `base` to `out`.

    disk_path: a qcow2 layer whose backing file is the base disk (a resumed or
    synthesized VM's disk), or a raw image of the same size as the base disk.
    memory_path: a libvirt save image of the VM. key: a 32-byte key to encrypt
    the overlay with (format version 2), or None. Returns CreateStats.
    """
    started = time.monotonic()
    codec_id = codecs.codec_by_name(codec)
    image = savefile.read_save_image(memory_path)
    if domainxml.abi_digest(image.xml) != base.manifest['abi_digest']:
        raise errors.WrongBase('the memory snapshot %s was not taken from a VM of base %s '
                               '(machine, CPU or devices differ)' % (memory_path, base.base_id))
    stats = CreateStats()
    meta = {'base_id': base.base_id, 'base_name': base.name, 'disk_size': base.disk_size,
            'memory_size': image.file_size, 'codec': codec,
            'created_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
    writer = fmt.OverlayWriter(out, meta, key=key)
    builder = SegmentBuilder(writer, base, codec_id, level, workdir, stats)
    classifier = Classifier(base, stats)
    try:
        _add_memory(builder, classifier, memory_path, image, progress)
        _add_disk(builder, classifier, base, disk_path, progress)
        builder.flush()
    finally:
        builder.close()
    stats.overlay_bytes = writer.finish()
    stats.seconds = time.monotonic() - started
    return stats


class _BaseMemoryRun:
    """Coalesces what equals a stretch of the base memory image into one MEM_RANGE_COPY.

    Unchanged pages and the record headers between them are usually byte for
    byte where they were in the base save image: one item covers the whole run.
    """

    MAX_LENGTH = 1 << 30

    def __init__(self, builder, base_memory_fd):
        self.builder, self.base_memory_fd = builder, base_memory_fd
        self.start, self.length = None, 0

    def _open(self):
        return self.start is not None and self.length < self.MAX_LENGTH

    def add_page(self, base_offset):
        if not (self._open() and base_offset == self.start + self.length):
            self.flush()
            self.start = base_offset
        self.length += chunks.CHUNK

    def try_add_bytes(self, data):
        """Extend the run with `data` if the base has exactly these bytes next."""
        if not self._open() or os.pread(self.base_memory_fd, len(data), self.start + self.length) != data:
            return False
        self.length += len(data)
        return True

    def flush(self):
        if self.start is not None:
            self.builder.add(fmt.Item(fmt.MEM_RANGE_COPY, area=fmt.AREA_BASE_MEMORY, source=self.start,
                                      length=self.length))
            self.start, self.length = None, 0


def _add_memory(builder, classifier, memory_path, image, progress):
    with open(memory_path, 'rb') as f:
        fd = f.fileno()
        add_memory_pieces(builder, classifier, lambda length, offset: os.pread(fd, length, offset),
                          image.stream_offset,
                          migstream.scan_stream(f, image.stream_offset, image.file_size),
                          progress, image.file_size)


def add_memory_pieces(builder, classifier, read, stream_offset, pieces, progress=None, total=None):
    """Memory items for a save image: its first `stream_offset` bytes (libvirt
    header) and `pieces` (migstream.scan_stream of its QEMU stream).

    read(length, offset) returns the image's bytes there.
    """
    stats = builder.stats
    by_key = classifier.memory_by_key
    with open(builder.base.memory_path, 'rb') as base_memory:
        run = _BaseMemoryRun(builder, base_memory.fileno())
        _add_memory_bytes(builder, read, 0, stream_offset)
        for piece in pieces:
            if isinstance(piece, migstream.Opaque):
                if piece.length <= 65536 and run.try_add_bytes(read(piece.length, piece.file_offset)):
                    stats.memory_bytes_opaque += piece.length
                    continue
                run.flush()
                _add_memory_bytes(builder, read, piece.file_offset, piece.length)
                continue
            stats.memory_pages += 1
            data = read(chunks.CHUNK, piece.file_offset)
            if len(data) != chunks.CHUNK:
                raise errors.SaveImageError('memory snapshot ends inside the page at offset %d'
                                            % piece.file_offset)
            digest = chunks.digest(data)
            same_place = by_key.get(migstream.page_key(piece.block, piece.addr))
            if same_place is not None and same_place[1] == digest:
                stats.from_base_memory += 1
                run.add_page(same_place[0])
                continue
            stats.memory_pages_changed += 1
            run.flush()
            if digest == chunks.ZERO_DIGEST:
                stats.zero += 1
                builder.add(fmt.Item(fmt.MEM_PAGE_ZERO))
            else:
                found = classifier.find(digest)
                if found is not None:
                    builder.add(fmt.Item(fmt.MEM_PAGE_COPY, area=found[0], source=found[1]))
                else:
                    stats.memory_pages_data += 1
                    classifier.written[digest] = (fmt.AREA_LAUNCH_MEMORY, piece.file_offset)
                    if same_place is None:
                        builder.add(fmt.Item(fmt.MEM_PAGE_DATA, source=fmt.NO_COUNTERPART), data)
                    else:
                        builder.add(fmt.Item(fmt.MEM_PAGE_DATA, source=same_place[0]), data,
                                    builder.memory_counterpart(same_place[0]))
            if progress and total and stats.memory_pages % 4096 == 0:
                progress.update('memory', piece.file_offset, total)
        run.flush()


def _add_memory_bytes(builder, read, offset, length):
    builder.stats.memory_bytes_opaque += length
    end = offset + length
    while offset < end:
        size = min(MEM_BYTES_PIECE, end - offset)
        data = read(size, offset)
        if len(data) != size:
            raise errors.SaveImageError('memory snapshot changed while it was read')
        builder.add(fmt.Item(fmt.MEM_BYTES, length=size), data)
        offset += size


def iter_disk_chunks(base, disk_path):
    """(offset, data or None for zeros) of every chunk that may differ from the base."""
    if _is_qcow2(disk_path):
        info = qcow2.top_layer_info(disk_path)
        backing = info.get('backing_file')
        if not backing or os.path.realpath(backing) != os.path.realpath(base.disk_path):
            raise errors.WrongBase('disk %s is not a layer over the base disk %s (its backing file is %s)'
                                   % (disk_path, base.disk_path, backing))
        if info['virtual_size'] != base.disk_size:
            raise errors.WrongBase('disk %s has %d bytes, the base disk %d'
                                   % (disk_path, info['virtual_size'], base.disk_size))
        return qcow2.iter_top_layer_chunks(disk_path)
    size = os.path.getsize(disk_path)
    if size != base.disk_size:
        raise errors.WrongBase('disk %s has %d bytes, the base disk %d' % (disk_path, size, base.disk_size))
    return _iter_raw_chunks(disk_path, size)


def _is_qcow2(path):
    with open(path, 'rb') as f:
        return f.read(4) == b'QFI\xfb'


def _iter_raw_chunks(path, size):
    with open(path, 'rb') as f:
        for start in range(0, size, 4 << 20):
            block = os.pread(f.fileno(), min(4 << 20, size - start), start)
            for i in range(0, len(block), chunks.CHUNK):
                yield start + i, block[i:i + chunks.CHUNK]


def _add_disk(builder, classifier, base, disk_path, progress):
    stats = builder.stats
    for offset, data in iter_disk_chunks(base, disk_path):
        digest = chunks.ZERO_DIGEST if data is None else chunks.digest(data)
        if digest == base.disk_digest(offset):
            continue
        stats.disk_chunks_changed += 1
        if digest == chunks.ZERO_DIGEST:
            stats.zero += 1
            builder.add(fmt.Item(fmt.DISK_ZERO, offset=offset))
            continue
        found = classifier.find(digest)
        if found is not None:
            builder.add(fmt.Item(fmt.DISK_COPY, offset=offset, area=found[0], source=found[1]))
            continue
        stats.disk_chunks_data += 1
        classifier.written[digest] = (fmt.AREA_LAUNCH_DISK, offset)
        builder.add(fmt.Item(fmt.DISK_DATA, offset=offset), data, builder.disk_counterpart(offset))
        if progress and stats.disk_chunks_changed % 1024 == 0:
            progress.update('disk', offset, base.disk_size)
