"""The QEMU migration stream of a libvirt save image: RAM pages and the rest.

`scan_stream` and `iter_pages` walk the stream that follows a save image's
header (savefile.py) so that memory can be deduplicated page by page; they
read with positional reads, so memory stays bounded whatever the file size.

The stream layout handled is QEMU's precopy format as written by QEMU 7.2
(migration/savevm.c, migration/ram.c), checked against real libvirt 9.0 /
QEMU 7.2 save files:

* be32 ``QEVM`` magic, be32 version 3;
* optional ``QEMU_VM_CONFIGURATION`` (0x07): be32 len + machine type, then
  subsections (0x05) target-page-bits, capabilities, uuid;
* sections: START (0x01) / FULL (0x04) = type, be32 section_id, byte len +
  idstr, be32 instance_id, be32 version_id; PART (0x02) / END (0x03) = type,
  be32 section_id; each followed by a footer 0x7e + be32 section_id when the
  machine type sends footers (all current ones do);
* the RAM section ("ram", version 4) data is a sequence of records
  ``be64 (addr | flags)``; flags live in the low 12 bits (TARGET_PAGE_BITS
  is 12 on x86).  Without RAM_SAVE_FLAG_CONTINUE a record names its block
  (byte len + idstr).  ZERO carries one fill byte, PAGE 4096 bytes of
  payload, MEM_SIZE (START only) the list of blocks, EOS ends the data;
* QEMU writes every iterative section (START, PART..., END) before the first
  device-state FULL section, then ``QEMU_VM_EOF`` (0x00) and the JSON
  ``QEMU_VM_VMDESCRIPTION`` (0x06).  Everything from the first FULL section
  on is therefore opaque to us: no RAM can follow it.

Observed in real saves (libvirt pauses the guest before QEMU writes): every
page of every RAM block appears exactly once, as a PAGE or a ZERO record
(fill 0); a PART section may open with a CONTINUE record, since the last
block named persists across sections (as in QEMU's loader).

Streams using features that change the record format (XBZRLE, compression,
multifd, RDMA hooks, postcopy, other live sections such as block migration)
are refused with `SaveImageError` rather than half understood.
"""

import dataclasses
import functools
import os
import re
import struct
import typing

from cloudlet_engine.errors import SaveImageError
from cloudlet_engine import savefile

# --- QEMU stream -------------------------------------------------------------

QEMU_VM_FILE_MAGIC = 0x5145564d  # 'QEVM'
QEMU_VM_FILE_VERSION = 3

QEMU_VM_EOF = 0x00  # (not 0x1f)
QEMU_VM_SECTION_START = 0x01
QEMU_VM_SECTION_PART = 0x02
QEMU_VM_SECTION_END = 0x03
QEMU_VM_SECTION_FULL = 0x04
QEMU_VM_SUBSECTION = 0x05
QEMU_VM_VMDESCRIPTION = 0x06
QEMU_VM_CONFIGURATION = 0x07
QEMU_VM_COMMAND = 0x08
QEMU_VM_SECTION_FOOTER = 0x7e

PAGE_SIZE = 4096  # TARGET_PAGE_SIZE on x86
PAGE_FLAG_MASK = PAGE_SIZE - 1

RAM_SECTION_NAME = 'ram'
RAM_SECTION_VERSION = 4

RAM_SAVE_FLAG_FULL = 0x01  # obsolete
RAM_SAVE_FLAG_ZERO = 0x02
RAM_SAVE_FLAG_MEM_SIZE = 0x04
RAM_SAVE_FLAG_PAGE = 0x08
RAM_SAVE_FLAG_EOS = 0x10
RAM_SAVE_FLAG_CONTINUE = 0x20
RAM_SAVE_FLAG_XBZRLE = 0x40
RAM_SAVE_FLAG_HOOK = 0x80
RAM_SAVE_FLAG_COMPRESS_PAGE = 0x100
RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200  # QEMU >= 8.0

_UNSUPPORTED_RAM_FLAGS = (
    (RAM_SAVE_FLAG_XBZRLE, 'XBZRLE-encoded page (RAM_SAVE_FLAG_XBZRLE)'),
    (RAM_SAVE_FLAG_HOOK, 'RDMA hook (RAM_SAVE_FLAG_HOOK)'),
    (RAM_SAVE_FLAG_COMPRESS_PAGE, 'compressed page (RAM_SAVE_FLAG_COMPRESS_PAGE)'),
    (RAM_SAVE_FLAG_MULTIFD_FLUSH, 'multifd flush (RAM_SAVE_FLAG_MULTIFD_FLUSH)'),
    (RAM_SAVE_FLAG_FULL, 'obsolete full-page record (RAM_SAVE_FLAG_FULL)'),
)

MAX_RAM_BLOCKS = 1024
MAX_MACHINE_NAME = 256
MAX_CAPABILITIES = 256

# Bytes read per refill of the scan window; records are read from it, and a
# page payload that runs past its end is skipped without being read.
SCAN_WINDOW = 1 << 20


# --- pieces --------------------------------------------------------------------

class Page(typing.NamedTuple):
    """The 4096-byte payload of a RAM_SAVE_FLAG_PAGE record."""

    file_offset: int  # of the payload's first byte
    block: str        # RAM block idstr: 'pc.ram', 'vga.vram', '/rom@etc/acpi/tables'...
    addr: int         # offset of the page within the block

    @property
    def length(self):
        return PAGE_SIZE

    @property
    def end(self):
        return self.file_offset + PAGE_SIZE


class Opaque(typing.NamedTuple):
    """Any other bytes of the stream, kept verbatim."""

    file_offset: int
    length: int

    @property
    def end(self):
        return self.file_offset + self.length


class Record(typing.NamedTuple):
    """A whole PAGE or ZERO record, header included: what `walk_records` yields."""

    start: int        # first byte of the be64 header
    end: int          # one past the payload (PAGE) or the fill byte (ZERO)
    block: str
    addr: int
    zero: bool
    named: bool       # the header names its block (no RAM_SAVE_FLAG_CONTINUE)
    fill: int         # a ZERO record's fill byte; 0 for a PAGE


class ZeroPage(typing.NamedTuple):
    """A RAM_SAVE_FLAG_ZERO record (a page filled with `fill`, always 0 from QEMU 7.2).

    Only `iter_pages(include_zero=True)` yields these; `file_offset` is that
    of the one fill byte.  In `scan_stream` zero records are part of Opaque.
    """

    file_offset: int
    block: str
    addr: int
    fill: int


def page_key(block, addr):
    """A stable compact key for a guest page: block idstr, NUL, be64 addr."""
    if isinstance(block, str):
        block = block.encode('utf-8')
    return block + b'\0' + addr.to_bytes(8, 'big')


@dataclasses.dataclass
class RamBlockStats:
    used_length: int
    pages: int = 0       # PAGE records
    zero_pages: int = 0  # ZERO records


@dataclasses.dataclass
class ScanStats:
    """What a scan saw; filled in as the scan proceeds (pass one in `stats=`)."""

    machine_type: typing.Optional[str] = None
    capabilities: typing.List[str] = dataclasses.field(default_factory=list)
    ram_total: int = 0
    blocks: typing.Dict[str, RamBlockStats] = dataclasses.field(default_factory=dict)
    ram_sections: int = 0    # START + PART + END sections of 'ram'
    footers: bool = False
    ram_section_offset: typing.Optional[int] = None   # the RAM START section's first byte
    ram_section_id: typing.Optional[int] = None
    ram_instance_id: typing.Optional[int] = None
    device_state_offset: typing.Optional[int] = None  # first byte after the RAM data (opaque tail)

    @property
    def pages(self):
        return sum(b.pages for b in self.blocks.values())

    @property
    def zero_pages(self):
        return sum(b.zero_pages for b in self.blocks.values())


# --- the stream walker -----------------------------------------------------------

class _Window:
    """A bounded window of the file: records are parsed from `buf` at `pos - base`."""

    __slots__ = ('source', 'file_size', 'buf', 'base', 'end', 'window')

    def __init__(self, source, file_size, window=SCAN_WINDOW):
        self.source = source
        self.file_size = file_size
        self.window = window
        self.buf = b''
        self.base = 0
        self.end = 0

    def at(self, pos, n, what):
        """Index into self.buf of file bytes [pos, pos + n), reading if needed."""
        if pos >= self.base and pos + n <= self.end:
            return pos - self.base
        if pos + n > self.file_size:
            raise SaveImageError('QEMU stream is truncated: %s at offset %d needs %d bytes, the file'
                                 ' ends at %d' % (what, pos, n, self.file_size))
        want = min(max(n, self.window), self.file_size - pos)
        try:
            buf = self.source.pread(want, pos)
        except OSError as exc:
            raise SaveImageError('cannot read save image at offset %d: %s' % (pos, exc)) from exc
        if len(buf) < n:
            raise SaveImageError('QEMU stream is truncated: %s at offset %d needs %d bytes, the file'
                                 ' holds only %d more' % (what, pos, n, len(buf)))
        self.buf, self.base, self.end = buf, pos, pos + len(buf)
        return 0

    def u8(self, pos, what):
        i = self.at(pos, 1, what)
        return self.buf[i]

    def be32(self, pos, what):
        i = self.at(pos, 4, what)
        return _BE32.unpack_from(self.buf, i)[0]

    def be64(self, pos, what):
        i = self.at(pos, 8, what)
        return _BE64.unpack_from(self.buf, i)[0]

    def name(self, pos, what):
        """(str, new pos) for a byte-length-prefixed identifier."""
        length = self.u8(pos, what)
        if length == 0:
            raise SaveImageError('QEMU stream is corrupt: empty %s at offset %d' % (what, pos))
        i = self.at(pos + 1, length, what)
        raw = self.buf[i:i + length]
        try:
            return raw.decode('utf-8'), pos + 1 + length
        except UnicodeDecodeError:
            raise SaveImageError('QEMU stream is corrupt: %s at offset %d is not UTF-8: %s'
                                 % (what, pos, _short(raw))) from None


_BE32 = struct.Struct('>I')
_BE64 = struct.Struct('>Q')

# A run of zero-page records continuing the current block: be64 (addr | ZERO |
# CONTINUE) with no other flag bit (so the low nibble of byte 6 is 0 and byte
# 7 is 0x22), then the fill byte 0.
_ZERO_CONTINUE = RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_CONTINUE
_ZERO_RECORD_SIZE = 9
_ZERO_RUN = re.compile(rb'(?:[\x00-\xff]{6}[\x00\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0\xc0\xd0\xe0\xf0]'
                       rb'\x22\x00)+')
_ZERO_CHUNK = 512


@functools.lru_cache(maxsize=None)
def _zero_run_struct(count):
    return struct.Struct('>' + 'Qx' * count)


def _short(name, limit=48):
    """repr of a name for a message, cut short (corrupt input can make it long)."""
    return repr(name) if len(name) <= limit else repr(name[:limit]) + '...'


def _unsupported(what, offset):
    return SaveImageError('unsupported migration stream feature: %s at offset %d' % (what, offset))


def _corrupt(what, offset):
    return SaveImageError('QEMU stream is corrupt: %s at offset %d' % (what, offset))


def _parse_configuration(w, pos, stats):
    """Parse the body of QEMU_VM_CONFIGURATION at `pos`; return the new pos."""
    length = w.be32(pos, 'machine type length')
    if not 0 < length <= MAX_MACHINE_NAME:
        raise _corrupt('machine type name of %d bytes' % length, pos)
    i = w.at(pos + 4, length, 'machine type')
    stats.machine_type = w.buf[i:i + length].decode('ascii', 'replace')
    pos += 4 + length
    while w.u8(pos, 'section type') == QEMU_VM_SUBSECTION:
        name, npos = w.name(pos + 1, 'configuration subsection name')
        pos = npos + 4  # be32 version_id
        w.at(npos, 4, 'subsection version')
        if name == 'configuration/target-page-bits':
            bits = w.be32(pos, 'target page bits')
            if bits != 12:
                raise _unsupported('target page size of 2^%d bytes (only 4096 is handled)' % bits, pos)
            pos += 4
        elif name == 'configuration/capabilities':
            count = w.be32(pos, 'capability count')
            if count > MAX_CAPABILITIES:
                raise _corrupt('%d migration capabilities' % count, pos)
            pos += 4
            for _ in range(count):
                cap, pos = w.name(pos, 'capability name')
                stats.capabilities.append(cap)
        elif name == 'configuration/uuid':
            w.at(pos, 16, 'configuration uuid')
            pos += 16
        else:
            raise _unsupported('configuration subsection %s' % _short(name), pos)
    return pos


def _walk(source, stream_offset, file_size, stats, include_zero, records=False, skip=None,
          window=SCAN_WINDOW, rename=None):
    """Yield Page (and ZeroPage if `include_zero`) in file order; fill `stats`.

    records: yield a Record for every PAGE and ZERO record instead.
    skip(pos, block name or None): called at each record boundary of a RAM
    section with the block a CONTINUE record there would belong to; returns
    None, or the offset of a later record boundary to go on from, the records
    in between being records of block `skip.block` that the caller does not
    want to see.
    rename: {stream name: name} of RAM blocks to rename, each new name as
    long as the old; the walker writes the new name over the old with
    source.patch(offset, bytes) as it parses it, before yielding anything
    after it.
    """
    if stream_offset < 0 or file_size < stream_offset:
        raise ValueError('bad stream range [%d, %d)' % (stream_offset, file_size))
    w = _Window(source, file_size, window)
    pos = stream_offset
    magic = w.be32(pos, 'QEMU file magic')
    if magic != QEMU_VM_FILE_MAGIC:
        raise SaveImageError('no QEMU migration stream at offset %d: magic 0x%08x, expected 0x%08x'
                             % (pos, magic, QEMU_VM_FILE_MAGIC))
    version = w.be32(pos + 4, 'QEMU file version')
    if version != QEMU_VM_FILE_VERSION:
        raise _unsupported('QEMU stream version %d (expected %d)' % (version, QEMU_VM_FILE_VERSION), pos + 4)
    pos += 8
    if w.u8(pos, 'section type') == QEMU_VM_CONFIGURATION:
        pos = _parse_configuration(w, pos + 1, stats)
    ignore_shared = 'x-ignore-shared' in stats.capabilities

    ram_id = None
    ram_ended = False
    blocks = {}         # idstr -> [name, used_length, RamBlockStats]
    last_block = None   # QEMU's last_recv_block: persists across sections
    have_mem_size = False

    while True:
        section_at = pos
        kind = w.u8(pos, 'section type')
        pos += 1
        if kind == QEMU_VM_SECTION_START or kind == QEMU_VM_SECTION_FULL:
            section_id = w.be32(pos, 'section id')
            idstr, pos = w.name(pos + 4, 'section name')
            instance_id = w.be32(pos, 'section instance')
            version_id = w.be32(pos + 4, 'section version')
            pos += 8
            if kind == QEMU_VM_SECTION_FULL:
                if ram_id is None:
                    raise _corrupt('device state before any RAM section', section_at)
                if not ram_ended:
                    raise _corrupt('device state section %s before the RAM section ended' % _short(idstr),
                                   section_at)
                stats.device_state_offset = section_at
                return
            if idstr != RAM_SECTION_NAME:
                raise _unsupported('live migration section %s besides RAM (block migration,'
                                   ' dirty bitmaps, VFIO...)' % _short(idstr), section_at)
            if ram_id is not None:
                raise _corrupt('second RAM START section', section_at)
            if version_id != RAM_SECTION_VERSION:
                raise _unsupported('RAM section version %d (expected %d)'
                                   % (version_id, RAM_SECTION_VERSION), section_at)
            ram_id = section_id
            stats.ram_section_offset, stats.ram_section_id = section_at, section_id
            stats.ram_instance_id = instance_id
        elif kind == QEMU_VM_SECTION_PART or kind == QEMU_VM_SECTION_END:
            section_id = w.be32(pos, 'section id')
            pos += 4
            if ram_id is None or section_id != ram_id:
                raise _corrupt('section id %d was never started' % section_id, section_at)
            if ram_ended:
                raise _corrupt('RAM section continues after its END', section_at)
            if kind == QEMU_VM_SECTION_END:
                ram_ended = True
        elif kind == QEMU_VM_EOF:
            if not ram_ended:
                raise _corrupt('end of stream before the RAM section ended', section_at)
            stats.device_state_offset = section_at
            return
        elif kind == QEMU_VM_COMMAND:
            raise _unsupported('migration command section (postcopy, return path...)', section_at)
        elif kind == QEMU_VM_CONFIGURATION:
            raise _corrupt('second configuration section', section_at)
        else:
            raise _corrupt('unknown section type 0x%02x' % kind, section_at)

        stats.ram_sections += 1

        # RAM records until EOS.  The hot loop: locals only, one window lookup
        # per record header, page payloads skipped.
        be64_from = _BE64.unpack_from
        while True:
            if skip is not None:
                jump = skip(pos, last_block[0] if last_block else None)
                if jump is not None:
                    pos = jump
                    last_block = blocks[skip.block]
                    continue
            if pos >= w.base and pos + 8 <= w.end:
                i = pos - w.base
            else:
                i = w.at(pos, 8, 'RAM record header')
            value = be64_from(w.buf, i)[0]
            record_at = pos
            pos += 8
            flags = value & PAGE_FLAG_MASK
            addr = value - flags
            op = flags & ~RAM_SAVE_FLAG_CONTINUE
            if op == RAM_SAVE_FLAG_PAGE or op == RAM_SAVE_FLAG_ZERO:
                if flags & RAM_SAVE_FLAG_CONTINUE:
                    if last_block is None:
                        raise _corrupt('RAM record continues a block but none was named', record_at)
                    block = last_block
                else:
                    name_at = pos
                    name, pos = w.name(pos, 'RAM block name')
                    if rename and name in rename:
                        name = _rename(source, name_at, name, rename[name])
                    block = blocks.get(name)
                    if block is None:
                        raise _corrupt('RAM record for unknown block %s' % _short(name), record_at)
                    last_block = block
                if addr + PAGE_SIZE > block[1]:
                    raise _corrupt('RAM page 0x%x outside block %s of 0x%x bytes'
                                   % (addr, _short(block[0]), block[1]), record_at)
                if op == RAM_SAVE_FLAG_PAGE:
                    if pos + PAGE_SIZE > file_size:
                        raise SaveImageError('QEMU stream is truncated: RAM page payload at offset %d'
                                             ' needs %d bytes, the file ends at %d'
                                             % (pos, PAGE_SIZE, file_size))
                    block[2].pages += 1
                    if records:
                        yield Record(record_at, pos + PAGE_SIZE, block[0], addr, False,
                                     not flags & RAM_SAVE_FLAG_CONTINUE, 0)
                    else:
                        yield Page(pos, block[0], addr)
                    pos += PAGE_SIZE
                else:
                    fill = w.u8(pos, 'zero page fill byte')
                    block[2].zero_pages += 1
                    if records:
                        yield Record(record_at, pos + 1, block[0], addr, True,
                                     not flags & RAM_SAVE_FLAG_CONTINUE, fill)
                    elif include_zero:
                        yield ZeroPage(pos, block[0], addr, fill)
                    pos += 1
                    # Fast path: a run of "continue, zero, fill 0" records
                    # (9 bytes each) -- most of an idle guest's memory.
                    match = _ZERO_RUN.match(w.buf, pos - w.base) if w.base <= pos < w.end else None
                    if match is not None:
                        start = match.start()
                        count = (match.end() - start) // _ZERO_RECORD_SIZE
                        for first in range(0, count, _ZERO_CHUNK):
                            chunk = min(_ZERO_CHUNK, count - first)
                            values = _zero_run_struct(chunk).unpack_from(w.buf, start + first * _ZERO_RECORD_SIZE)
                            if max(values) - _ZERO_CONTINUE + PAGE_SIZE > block[1]:
                                bad = next(j for j, v in enumerate(values)
                                           if v - _ZERO_CONTINUE + PAGE_SIZE > block[1])
                                raise _corrupt('RAM page 0x%x outside block %s of 0x%x bytes'
                                               % (values[bad] - _ZERO_CONTINUE, _short(block[0]), block[1]),
                                               pos + (first + bad) * _ZERO_RECORD_SIZE)
                            if records:
                                at = pos + first * _ZERO_RECORD_SIZE
                                for j, v in enumerate(values):
                                    at_j = at + j * _ZERO_RECORD_SIZE
                                    yield Record(at_j, at_j + _ZERO_RECORD_SIZE, block[0],
                                                 v - _ZERO_CONTINUE, True, False, 0)
                            elif include_zero:
                                at = pos + first * _ZERO_RECORD_SIZE + 8
                                for j, v in enumerate(values):
                                    yield ZeroPage(at + j * _ZERO_RECORD_SIZE, block[0], v - _ZERO_CONTINUE, 0)
                        block[2].zero_pages += count
                        pos += count * _ZERO_RECORD_SIZE
            elif value == RAM_SAVE_FLAG_EOS:
                break
            elif flags == RAM_SAVE_FLAG_MEM_SIZE:
                if kind != QEMU_VM_SECTION_START or have_mem_size:
                    raise _corrupt('RAM block list outside the RAM START section', record_at)
                have_mem_size = True
                pos = _parse_block_list(w, pos, addr, ignore_shared, blocks, stats, rename, source)
            else:
                for bit, what in _UNSUPPORTED_RAM_FLAGS:
                    if flags & bit:
                        raise _unsupported(what, record_at)
                raise _corrupt('RAM record with flags 0x%03x (value 0x%016x)' % (flags, value), record_at)

        # Optional section footer.
        if w.u8(pos, 'section type') == QEMU_VM_SECTION_FOOTER:
            footer_id = w.be32(pos + 1, 'section footer')
            if footer_id != section_id:
                raise _corrupt('section footer for section %d closes section %d'
                               % (footer_id, section_id), pos)
            stats.footers = True
            pos += 5


def _rename(source, name_at, old, new):
    raw = new.encode('utf-8')
    if len(raw) != len(old.encode('utf-8')):
        raise ValueError('RAM block %r can only be renamed to a name as long' % old)
    source.patch(name_at + 1, raw)
    return new


def _parse_block_list(w, pos, total, ignore_shared, blocks, stats, rename=None, source=None):
    """The MEM_SIZE record's block list: byte len + idstr + be64 used_length."""
    stats.ram_total = total
    remaining = total
    while remaining:
        if len(blocks) >= MAX_RAM_BLOCKS:
            raise _corrupt('more than %d RAM blocks' % MAX_RAM_BLOCKS, pos)
        entry_at = pos
        name, pos = w.name(pos, 'RAM block name')
        if rename and name in rename:
            name = _rename(source, entry_at, name, rename[name])
        used_length = w.be64(pos, 'RAM block length')
        pos += 8
        if ignore_shared:
            w.at(pos, 8, 'RAM block address')
            pos += 8
        if used_length == 0 or used_length > remaining:
            raise _corrupt('RAM block %s of 0x%x bytes does not fit the announced total of 0x%x'
                           % (_short(name), used_length, total), entry_at)
        if name in blocks:
            raise _corrupt('RAM block %s listed twice' % _short(name), entry_at)
        remaining -= used_length
        block_stats = RamBlockStats(used_length)
        blocks[name] = [name, used_length, block_stats]
        stats.blocks[name] = block_stats
    return pos


# --- public scanners ---------------------------------------------------------------

def _walk_any(fileobj, stream_offset, file_size, stats, include_zero, **options):
    if isinstance(fileobj, savefile.PositionalReader) or hasattr(fileobj, 'pread'):
        # Ours, or a caller's source with the same pread(length, offset)
        # contract (e.g. a memory image that is still arriving).
        yield from _walk(fileobj, stream_offset, file_size, stats, include_zero, **options)
        return
    source, fd = savefile.open_for_read(fileobj)
    try:
        yield from _walk(source, stream_offset, file_size, stats, include_zero, **options)
    finally:
        if fd is not None:
            os.close(fd)


def iter_pages(fileobj, stream_offset, file_size, *, include_zero=False, stats=None):
    """Yield every RAM page record of the stream in file order.

    `Page` for each RAM_SAVE_FLAG_PAGE record (payload not read), and, with
    `include_zero`, `ZeroPage` for each zero record.  `fileobj` is a path, an
    fd or a binary file object (see `scan_stream`).  The whole stream up to
    the device state is validated; a malformed or unsupported stream raises
    `SaveImageError`, possibly after some records were yielded, so consume
    the iterator to the end before trusting what it gave.  QEMU may send a
    page more than once (not seen in libvirt saves, where the guest is paused
    first); the later record is the one QEMU restores.
    """
    if stats is None:
        stats = ScanStats()
    return _walk_any(fileobj, stream_offset, file_size, stats, include_zero)


def walk_records(fileobj, stream_offset, file_size, *, stats=None, skip=None, window=SCAN_WINDOW):
    """Yield a `Record` for every PAGE and ZERO record, in file order.

    As `iter_pages`, with each record's header bounds and whether it names its
    block.  `skip`: see `_walk` (records it jumps over are not yielded).
    `window`: bytes read per refill; a caller that jumps often reads less
    with a small one.
    """
    if stats is None:
        stats = ScanStats()
    return _walk_any(fileobj, stream_offset, file_size, stats, False, records=True, skip=skip, window=window)


def record_header(block, addr, zero, named, fill=0):
    """The bytes of a PAGE or ZERO record before its payload (with the fill byte of a ZERO)."""
    flags = RAM_SAVE_FLAG_ZERO if zero else RAM_SAVE_FLAG_PAGE
    if not named:
        flags |= RAM_SAVE_FLAG_CONTINUE
    head = _BE64.pack(addr | flags)
    if named:
        head += idstr(block)
    return head + bytes((fill,)) if zero else head


def idstr(name):
    """A block or section name as the stream carries it: byte length, then the UTF-8 bytes."""
    raw = name.encode('utf-8')
    return bytes((len(raw),)) + raw


# The size a growing stream is walked with: its real end is only known at its end.
_UNKNOWN_SIZE = 1 << 62


def scan_stream(fileobj, stream_offset, file_size, *, stats=None, rename=None):
    """Split the QEMU stream into pieces that tile [stream_offset, file_size).

    Yields `Page` (4096-byte page payloads) and `Opaque` (everything else:
    stream header, configuration, section headers and footers, record
    headers, zero-page records, device state, EOF, vmdescription), in file
    order, with no gap or overlap and no two adjacent Opaque pieces.

    `fileobj` is a path, an fd or a binary file object; it is read with
    positional reads in blocks of `SCAN_WINDOW` bytes (a file object without
    fileno() is seeked), so memory stays bounded whatever the file size.
    `stream_offset` and `file_size` normally come from `read_save_image`.
    `file_size` None: the stream is still being written (a live migration);
    `fileobj` is then an object with `pread(length, offset)` that blocks until
    the bytes exist or the stream has ended (short read), and `size()` that
    blocks until it has ended.
    `stats` (a `ScanStats`) is filled in as the scan goes.  `rename`: see
    `_walk` (`fileobj` then needs patch()).  Errors as for
    `iter_pages`: `SaveImageError` may come after pieces were yielded.
    """
    if stats is None:
        stats = ScanStats()
    pos = stream_offset
    walk_size = _UNKNOWN_SIZE if file_size is None else file_size
    for page in _walk_any(fileobj, stream_offset, walk_size, stats, False, rename=rename):
        if page.file_offset > pos:
            yield Opaque(pos, page.file_offset - pos)
        yield page
        pos = page.file_offset + PAGE_SIZE
    if file_size is None:
        file_size = fileobj.size()
    if file_size > pos:
        yield Opaque(pos, file_size - pos)
