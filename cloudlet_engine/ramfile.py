"""A base's guest RAM as a file: restored copy-on-write, read as the guest touches it.

A base's memory snapshot (memory.save, a libvirt save image) holds every page
of guest RAM; restoring it reads them all before the VM runs, so a stock
restore takes time (and host memory) in proportion to the RAM size. This
module converts the snapshot's main RAM block ('pc.ram' on x86 machines) into
a raw file, memory.ram, that QEMU maps as the guest's RAM with share=off
(MAP_PRIVATE): a page is read from the file when the guest first touches it,
a write makes a private copy, and VMs restored from one base share the pages
they have not written in the host's page cache. The launch stream then only
carries the pages that differ from the file (sparse.py), so a restore reads
device state and changed pages, whatever the RAM size.

Files added to the base directory (host-local caches, derived from
memory.save and rebuilt from it whenever they are missing or changed):

    memory.ram        the RAM block's bytes; zero pages are holes
    memory.ram.index  where each of the block's records sits in memory.save
    memory.ram.json   size, SHA-256 and stat signature of memory.ram

The file is never written by QEMU as long as guest RAM is never discarded
(QEMU 7.2 punches holes in a memory-backend-file even on a private mapping
when the guest's memory is ballooned out or reported free, measured here:
other VMs on the file then die): `unsupported()` refuses domains with a
memory balloon or virtio-mem, and `RamFile.check()`
compares the stat signature before every use (a punched hole changes the
file's mtime), so a changed file is never restored from. QEMU opens the file
read-write (its readonly=on would map guest RAM read-only), hence the owner
given at conversion: the user QEMU runs as.
"""

import array
import bisect
import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import struct

from lxml import etree

from cloudlet_engine import atomic
from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import migstream
from cloudlet_engine import savefile

RAM_FILE, RAM_INDEX, RAM_META = 'memory.ram', 'memory.ram.index', 'memory.ram.json'
FILES = (RAM_FILE, RAM_INDEX, RAM_META)
# The machine's main RAM block: libvirt's default backend id, and the RAM
# block id QEMU gives it in the migration stream.
BLOCK = 'pc.ram'
# The id of the memory backend the restored domain gets (libvirt 9 already
# creates one with id pc.ram, which cannot be replaced from the command line);
# as long as BLOCK, so that a save of such a VM renames back in place.
BACKEND_ID = 'cl.ram'
assert len(BACKEND_ID) == len(BLOCK)
FORMAT = 1
PAGE = migstream.PAGE_SIZE
ZERO_PAGE = -1             # page_payload value: the page is zero in the base

_INDEX_MAGIC = b'CLRAMIX1'
_INDEX_HEAD = struct.Struct('<8sQQ')


class RamFileError(errors.BaseVMError):
    """The base's RAM file cannot be made, or changed since it was made."""


class Index:
    """Where memory.save holds the RAM block's records, as flat arrays.

    rec_start, rec_end: byte bounds of each record (ascending, disjoint);
    rec_page: its page number; rec_named: 1 when its header names the block;
    run_stop: one past the last record of the run of contiguous records it is
    in; page_payload: per page, the memory.save offset of its payload, or
    ZERO_PAGE.
    """

    def __init__(self, rec_start, rec_end, rec_page, rec_named, run_stop, page_payload):
        self.rec_start, self.rec_end, self.rec_page = rec_start, rec_end, rec_page
        self.rec_named, self.run_stop, self.page_payload = rec_named, run_stop, page_payload

    @property
    def pages(self):
        return len(self.page_payload)

    def record_at(self, offset, hint=0):
        """The index of the record starting at memory.save `offset`, or None.

        `hint`: where the caller expects it (a walk goes through memory.save
        in order: the next run starts where the last one stopped); looked at
        first, so a walk reads the index where it is, not along binary searches.
        """
        starts = self.rec_start
        if hint < len(starts) and starts[hint] == offset:
            return hint
        i = bisect.bisect_left(starts, offset)
        if i < len(starts) and starts[i] == offset:
            return i
        return None

    def run_end(self, i, limit):
        """One past the last record of i's run that ends at or before `limit`."""
        stop = self.run_stop[i]
        if self.rec_end[stop - 1] <= limit:
            return stop
        return bisect.bisect_right(self.rec_end, limit, i, stop)

    def write(self, path):
        count, pages = len(self.rec_start), len(self.page_payload)
        with open(path + '.part', 'wb') as f:
            f.write(_INDEX_HEAD.pack(_INDEX_MAGIC, count, pages))
            for part in (self.rec_start, self.rec_end, self.rec_page, self.run_stop, self.page_payload):
                part.tofile(f)
            f.write(self.rec_named)
        os.rename(path + '.part', path)

    @classmethod
    def read(cls, path):
        """The index, mapped: a restore reads only the pages of it that its walk touches."""
        with open(path, 'rb') as f:
            try:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:       # an empty file
                raise RamFileError('RAM file index %s is truncated' % path) from None
        mapped.madvise(mmap.MADV_RANDOM)     # no readahead: a walk touches a few pages of it
        if len(mapped) < _INDEX_HEAD.size:
            raise RamFileError('RAM file index %s is truncated' % path)
        magic, count, pages = _INDEX_HEAD.unpack_from(mapped)
        if magic != _INDEX_MAGIC:
            raise RamFileError('%s is not a RAM file index' % path)
        if len(mapped) != _INDEX_HEAD.size + 8 * (4 * count + pages) + count:
            raise RamFileError('RAM file index %s is truncated' % path)
        view, offset, parts = memoryview(mapped), _INDEX_HEAD.size, []
        for n in (count, count, count, count, pages):
            parts.append(view[offset:offset + 8 * n].cast('q'))
            offset += 8 * n
        rec_start, rec_end, rec_page, run_stop, page_payload = parts
        return cls(rec_start, rec_end, rec_page, view[offset:offset + count], run_stop, page_payload)


class RamFile:
    """A base's converted RAM: the file, its size, its index (loaded on first use)."""

    def __init__(self, base_path):
        self.dir = base_path
        self.path = os.path.join(base_path, RAM_FILE)
        try:
            with open(os.path.join(base_path, RAM_META), encoding='utf-8') as f:
                self.meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise RamFileError('base at %s has no RAM file: %s' % (base_path, exc))
        if self.meta.get('format') != FORMAT:
            raise RamFileError('RAM file of the base at %s has format %r, not %d'
                               % (base_path, self.meta.get('format'), FORMAT))
        self._index = None

    @property
    def size(self):
        return self.meta['size']

    def index(self):
        if self._index is None:
            self._index = Index.read(os.path.join(self.dir, RAM_INDEX))
            if self._index.pages * PAGE != self.size:
                raise RamFileError('RAM file index of %s covers %d pages, the file has %d bytes'
                                   % (self.dir, self._index.pages, self.size))
        return self._index

    def check(self):
        """Raise RamFileError if memory.ram is not as it was made (cheap: a stat)."""
        try:
            signature = _signature(os.stat(self.path))
        except OSError as exc:
            raise RamFileError('RAM file %s: %s' % (self.path, exc.strerror))
        if signature != self.meta['signature']:
            raise RamFileError('RAM file %s changed since it was made (size, times or inode differ):'
                               ' it is not used, and is made again from memory.save' % self.path)

    def verify(self):
        """Raise RamFileError unless memory.ram's SHA-256 is the recorded one (reads it all)."""
        self.check()
        if _sha256(self.path) != self.meta['sha256']:
            raise RamFileError('RAM file %s does not match its SHA-256' % self.path)


def _signature(st):
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_blocks]


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            data = f.read(8 << 20)
            if not data:
                return digest.hexdigest()
            digest.update(data)


def unsupported(domain_xml):
    """Why a domain's RAM cannot be a shared base file (None when it can).

    Each reason is a way QEMU 7.2 discards guest RAM, which on a file-backed
    block punches a hole in the file, even when it is mapped private.
    """
    root = etree.fromstring(domain_xml.encode()) if isinstance(domain_xml, str) else domain_xml
    for balloon in root.iterfind('devices/memballoon'):
        # Free page reporting discards without any host action; a plain
        # balloon does when inflated (virsh setmem).
        if balloon.get('model', 'none') != 'none':
            return ('it has a %s memory balloon (nova adds one unless [libvirt] mem_stats_period_seconds'
                    ' = 0)' % balloon.get('model'))
    if root.find("devices/memory[@model='virtio-mem']") is not None:
        return 'it has virtio-mem memory'
    if root.find('memoryBacking') is not None:
        return 'it has its own <memoryBacking>'
    if root.find('cpu/numa') is not None:
        return 'it has guest NUMA nodes (their RAM is not block %s)' % BLOCK
    return None


def convert(base, owner=None):
    """Make the base's RAM file and index from memory.save; returns a RamFile.

    owner: (uid, gid) QEMU runs as; it must be able to open the file
    read-write. Idempotent; concurrent callers wait for one conversion.
    """
    with _locked(base.path):
        try:
            ram = RamFile(base.path)
            ram.check()
            ram.index()
            return ram
        except RamFileError:
            pass
        _remove(base.path)
        try:
            return _convert(base, owner)
        except BaseException:
            _remove(base.path)
            raise


def remove(base):
    """Drop the base's RAM file (e.g. after check() failed); memory.save stays."""
    with _locked(base.path):
        _remove(base.path)


@contextlib.contextmanager
def _locked(base_path):
    with open(os.path.join(base_path, '.ram.lock'), 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _remove(base_path):
    for name in FILES + (RAM_FILE + '.part', RAM_INDEX + '.part'):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(base_path, name))


def _convert(base, owner):
    image = savefile.read_save_image(base.memory_path)
    unsupported_reason = unsupported(image.xml)
    if unsupported_reason:
        raise RamFileError('base %s cannot restore from a RAM file: %s' % (base.base_id, unsupported_reason))
    stats = migstream.ScanStats()
    rec_start, rec_end, rec_page, named = array.array('q'), array.array('q'), array.array('q'), bytearray()
    page_payload = None
    part = os.path.join(base.path, RAM_FILE + '.part')
    with open(base.memory_path, 'rb') as src, open(part, 'xb') as dst:
        src_fd, dst_fd = src.fileno(), dst.fileno()
        for rec in migstream.walk_records(src, image.stream_offset, image.file_size, stats=stats):
            if rec.block != BLOCK:
                continue
            if page_payload is None:
                size = stats.blocks[BLOCK].used_length
                if size % PAGE:
                    raise RamFileError('RAM block %s of %d bytes is not whole pages' % (BLOCK, size))
                page_payload = array.array('q', [ZERO_PAGE]) * (size // PAGE)
                seen = bytearray(size // PAGE)
            page = rec.addr // PAGE
            if seen[page]:
                raise RamFileError('base memory snapshot sends page 0x%x of %s twice' % (rec.addr, BLOCK))
            seen[page] = 1
            rec_start.append(rec.start)
            rec_end.append(rec.end)
            rec_page.append(page)
            named.append(rec.named)
            if rec.zero:
                if rec.fill:
                    raise RamFileError('base memory snapshot fills page 0x%x with 0x%02x' % (rec.addr, rec.fill))
                continue
            payload = rec.end - PAGE
            page_payload[page] = payload
            if os.copy_file_range(src_fd, dst_fd, PAGE, payload, rec.addr) != PAGE:
                raise RamFileError('short copy of page 0x%x into %s' % (rec.addr, part))
        if page_payload is None:
            raise RamFileError('base memory snapshot has no RAM block %s' % BLOCK)
        if 0 in seen:
            raise RamFileError('base memory snapshot lacks %d pages of %s' % (seen.count(0), BLOCK))
        dst.truncate(len(page_payload) * PAGE)
        os.fsync(dst_fd)
    run_stop = array.array('q', bytes(8 * len(rec_start)))
    stop = len(rec_start)
    for i in range(len(rec_start) - 1, -1, -1):
        if i + 1 < len(rec_start) and rec_end[i] != rec_start[i + 1]:
            stop = i + 1
        run_stop[i] = stop
    Index(rec_start, rec_end, rec_page, named, run_stop, page_payload).write(os.path.join(base.path, RAM_INDEX))
    sha256 = _sha256(part)
    os.chmod(part, 0o600)
    if owner is not None:
        os.chown(part, *owner)
    os.rename(part, os.path.join(base.path, RAM_FILE))
    path = os.path.join(base.path, RAM_FILE)
    atomic.write_json(os.path.join(base.path, RAM_META), {
        'format': FORMAT, 'block': BLOCK, 'size': len(page_payload) * PAGE, 'sha256': sha256,
        'signature': _signature(os.stat(path)), 'memory_sha256': base.manifest['files']['memory.save']['sha256']})
    return RamFile(base.path)


def normalize_saved(path):
    """Make a save of a VM restored over a RAM file a stock save image; True if it was one.

    Its stream names the main block BACKEND_ID and its XML maps the RAM
    file: the block is renamed BLOCK in place (same length) and the XML loses
    the mapping, so that overlays and bases captured from it are like any
    other, and restore anywhere.
    """
    image = savefile.read_save_image(path)
    if domainxml.ram_file(image.xml, BACKEND_ID) is None:
        return False
    with open(path, 'r+b') as f:
        source = _Patchable(f.fileno())
        for _piece in migstream.scan_stream(source, image.stream_offset, image.file_size,
                                            rename={BACKEND_ID: BLOCK}):
            pass
        os.fsync(f.fileno())
    savefile.rewrite_xml(path, domainxml.without_ram_file(image.xml, BACKEND_ID))
    return True


class _Patchable(savefile.PositionalReader):
    def patch(self, offset, data):
        os.pwrite(self._fd, data, offset)
