"""qcow2 images: writing a launch disk, reading what a VM changed.

A) `Qcow2Writer` writes a qcow2 version 3 image whose backing file is the
   cached base disk and which holds only the chunks an overlay changes.  The
   cluster size is the chunk size, so every chunk is exactly one cluster and
   no copy-on-write merging is ever needed; data clusters are appended to the
   file as chunks arrive (in any order) and the metadata is written by
   `close()`. With `valid_while_written`, the file is an empty valid image
   from the start (a restore's QEMU may open it while the chunks arrive: it
   re-reads the metadata when it activates the disk, after `close()`).

B) `iter_top_layer_chunks` and `top_layer_info` read the top layer of a qcow2
   overlay that QEMU wrote (a VM's disk on a raw base), through `qemu-img`.

Field names in comments are those of QEMU's docs/interop/qcow2.txt.
"""

import array
import json
import os
import struct
import subprocess
import sys

from cloudlet_engine.errors import BaseVMError

MAGIC = b'QFI\xfb'
VERSION = 3

# The version 3 header up to and including compression_type, padded to a
# multiple of 8 as the spec requires: header_length = 112.
_HEADER = struct.Struct('>4sIQIIQIIQQIIQQQQIIB7x')
HEADER_LENGTH = _HEADER.size
_EXTENSION = struct.Struct('>II')            # header extension type, length
EXT_END = 0x00000000                         # end of the header extension area
EXT_BACKING_FORMAT = 0xe2792aca              # backing file format name

REFCOUNT_ORDER = 4                           # refcount_bits = 1 << 4 = 16

# L1 and L2 table entries (standard clusters).
OFLAG_COPIED = 1 << 63                       # refcount is exactly one
OFFSET_MASK = 0x00fffffffffffe00             # bits 9-55: host offset
OFLAG_ZERO = 1                               # L2 bit 0: cluster reads as zeros
MAX_L1_SIZE = 32 << 20                       # qemu's limit on the L1 table, bytes

_BIG_ENDIAN = sys.byteorder == 'big'
assert array.array('Q').itemsize == 8 and array.array('H').itemsize == 2

# Qcow2Writer writes new data clusters this many bytes at a time.
APPEND_BUFFER = 1 << 20
# iter_top_layer_chunks reads the overlay at most this many bytes at a time.
READ_SIZE = 4 << 20


class _Zero:
    """Type of `ZERO`, what `read_chunk` returns for a zero-flagged chunk."""

    def __repr__(self):
        return 'ZERO'

    def __bool__(self):
        return False


ZERO = _Zero()


def _ceil_div(a, b):
    return -(-a // b)


def _big_endian(table):
    """The bytes of an array of integers, big-endian as qcow2 stores them."""
    if not _BIG_ENDIAN:
        table = array.array(table.typecode, table)
        table.byteswap()
    return table.tobytes()


class Qcow2Writer:
    """Writes a qcow2 v3 image over a backing file, one cluster per chunk.

    Work and memory are proportional to the chunks written, never to the
    base: an L2 table (one 8-byte entry per cluster) is kept in memory for
    each 2 MiB (with 4 KiB clusters) of guest space touched; data goes
    straight to the file.  The image is valid only after `close()`, which
    writes the header last, so a crash leaves a file qemu will not open.

    `valid_while_written`: the file is first an empty image over the backing
    file (its own metadata clusters, freed at `close()`), and `close()`
    rewrites the header in place (same inode) to the whole image's metadata.
    That is for a restore that opens the disk before the chunks are in
    (doc/handoff.md, "The restore streamed").
    """

    def __init__(self, path, virtual_size, backing_file, backing_format='raw',
                 cluster_size=4096, valid_while_written=False):
        if cluster_size < 512 or cluster_size > (2 << 20) or cluster_size & (cluster_size - 1):
            raise ValueError('cluster_size must be a power of two from 512 to 2 MiB: %r'
                             % (cluster_size,))
        if virtual_size <= 0 or virtual_size % cluster_size:
            raise ValueError('virtual_size %r is not a positive multiple of the cluster size %d'
                             % (virtual_size, cluster_size))
        backing = os.fsencode(backing_file)
        fmt = backing_format.encode('ascii')
        if not backing or not fmt:
            raise ValueError('a backing file and its format are required')
        # The header extensions end at backing_file_offset, and qemu wants the
        # backing file name (at most 1023 bytes) inside the first cluster.
        ext = _EXTENSION.pack(EXT_BACKING_FORMAT, len(fmt)) + fmt.ljust(_ceil_div(len(fmt), 8) * 8, b'\0')
        self._extensions = ext + _EXTENSION.pack(EXT_END, 0)
        self._backing = backing
        if len(backing) > 1023 or HEADER_LENGTH + len(self._extensions) + len(backing) > cluster_size:
            raise ValueError('backing file name too long: %r' % (backing_file,))

        self.path = path
        self.virtual_size = virtual_size
        self.cluster_size = cluster_size
        self._l2_entries = cluster_size // 8
        self._l1_size = _ceil_div(virtual_size // cluster_size, self._l2_entries)
        if self._l1_size * 8 > MAX_L1_SIZE:
            raise ValueError('virtual_size %d is too large for %d-byte clusters'
                             % (virtual_size, cluster_size))
        self._l2 = {}         # L1 index -> array('Q') of L2 entries, as stored
        self._end = cluster_size  # host cluster 0 is the header's
        self._free = []       # host offsets of clusters write_zero unmapped
        self._retired = []    # the first metadata's clusters (valid_while_written): free at close
        # New data clusters are collected here and written in large writes:
        # 4 KiB pwrites would cost more in system calls than in copying.
        self._buffer = bytearray()
        self._buffer_start = self._end  # host offset of _buffer[0]
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        if valid_while_written:
            try:
                first = self._end
                self._write_header(*self._write_tables())
                self._retired = list(range(first, self._end, cluster_size))
                self._buffer_start = self._end
            except BaseException:
                self.abort()
                raise

    # -- chunks --

    def write_chunk(self, offset, data):
        """Sets the guest cluster at `offset` to `data` (one cluster of bytes)."""
        if len(data) != self.cluster_size:
            raise ValueError('chunk at %r is %d bytes, not %d'
                             % (offset, len(data), self.cluster_size))
        table, index = self._locate(offset, create=True)
        host = table[index] & OFFSET_MASK
        if not host:          # first write here: a new (or recycled) cluster
            host = self._allocate()
        if host >= self._buffer_start:    # new, or still in the append buffer
            at = host - self._buffer_start
            self._buffer[at:at + len(data)] = data
            if len(self._buffer) >= APPEND_BUFFER:
                self._flush()
        else:
            self._pwrite(data, host)
        table[index] = host | OFLAG_COPIED

    def write_zero(self, offset):
        """Makes the guest cluster at `offset` read as zeros, whatever the base holds."""
        table, index = self._locate(offset, create=True)
        host = table[index] & OFFSET_MASK
        if host:
            # Unmapped, it would be counted but unreferenced (a leak): reuse
            # it for the next new chunk or an L2 table; if nothing does, it
            # gets refcount 0, a free cluster.
            self._free.append(host)
        # No host offset, bit 0 set: "all zeros", with no data cluster.
        table[index] = OFLAG_ZERO

    def read_chunk(self, offset):
        """The chunk written at `offset`: bytes, `ZERO`, or None if never written."""
        table, index = self._locate(offset, create=False)
        entry = table[index] if table is not None else 0
        if entry & OFLAG_ZERO:
            return ZERO
        if not entry:
            return None
        host = entry & OFFSET_MASK
        if host >= self._buffer_start:
            at = host - self._buffer_start
            return bytes(self._buffer[at:at + self.cluster_size])
        data = os.pread(self._fd, self.cluster_size, host)
        if len(data) != self.cluster_size:
            raise OSError('%s: short read at %d' % (self.path, host))
        return data

    def _locate(self, offset, create):
        if self._fd is None:
            raise ValueError('%s is closed' % self.path)
        if not 0 <= offset < self.virtual_size or offset % self.cluster_size:
            raise ValueError('offset %r is not a cluster-aligned offset below %d'
                             % (offset, self.virtual_size))
        l1_index, index = divmod(offset // self.cluster_size, self._l2_entries)
        table = self._l2.get(l1_index)
        if table is None and create:
            table = self._l2[l1_index] = array.array('Q', bytes(self.cluster_size))
        return table, index

    def _allocate(self):
        """Host offset of a free cluster: a recycled one, else one at the end."""
        if self._free:
            return self._free.pop()
        host = self._end
        self._end += self.cluster_size
        return host

    def _flush(self):
        self._pwrite(self._buffer, self._buffer_start)
        self._buffer_start += len(self._buffer)
        self._buffer.clear()

    def _append(self, data):
        """Writes `data` at the end of the file, in whole clusters; returns its offset."""
        host = self._end
        size = _ceil_div(len(data), self.cluster_size) * self.cluster_size
        self._pwrite(data.ljust(size, b'\0'), host)
        self._end += size
        return host

    def _pwrite(self, data, host):
        written = os.pwrite(self._fd, data, host)
        if written != memoryview(data).nbytes:
            raise OSError('%s: short write at %d' % (self.path, host))

    # -- finishing --

    def close(self):
        """Writes the metadata and header and fsyncs; on failure removes the file."""
        if self._fd is None:
            return
        try:
            self._write_metadata()
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        self._fd = None

    def abort(self):
        """Closes and removes the unfinished file."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _write_metadata(self):
        self._flush()
        self._buffer_start = 1 << 64    # from now on, everything is pwritten
        tables = self._write_tables()
        # The header goes last (after an fsync), so the image never looks
        # valid with incomplete metadata.
        os.fsync(self._fd)
        self._write_header(*tables)
        os.fsync(self._fd)

    def _write_tables(self):
        """L2 tables, the L1 table and the refcounts, at the end of the file.

        Returns (l1_table_offset, refcount_table_offset, refcount_table_clusters).
        """
        cs = self.cluster_size
        # L2 tables, one cluster each (recycled clusters first); the L1 table
        # points at them.  Every cluster has refcount 1, hence OFLAG_COPIED.
        l1 = array.array('Q', bytes(8 * self._l1_size))
        for l1_index in sorted(self._l2):
            host = self._allocate()
            self._pwrite(_big_endian(self._l2[l1_index]), host)
            l1[l1_index] = host | OFLAG_COPIED
        l1_table_offset = self._append(_big_endian(l1))

        # Refcount blocks must count every cluster, themselves and the
        # refcount table included: grow both until the sizes settle.
        per_block = cs * 8 >> REFCOUNT_ORDER
        used = self._end // cs
        blocks = table_clusters = 0
        while True:
            need_blocks = _ceil_div(used + blocks + table_clusters, per_block)
            need_table = _ceil_div(8 * need_blocks, cs)
            if (need_blocks, need_table) == (blocks, table_clusters):
                break
            blocks, table_clusters = need_blocks, need_table
        refcount_table_offset = self._end
        first_block = refcount_table_offset + table_clusters * cs
        total = used + table_clusters + blocks
        refcounts = array.array('H', [1]) * total + array.array('H', [0]) * (blocks * per_block - total)
        # Clusters write_zero unmapped and nothing reused, the first metadata's.
        for host in self._free + self._retired:
            refcounts[host // cs] = 0
        table = array.array('Q', [first_block + i * cs for i in range(blocks)])
        self._append(_big_endian(table))
        self._append(_big_endian(refcounts))
        os.ftruncate(self._fd, self._end)
        return l1_table_offset, refcount_table_offset, table_clusters

    def _write_header(self, l1_table_offset, refcount_table_offset, refcount_table_clusters):
        backing_file_offset = HEADER_LENGTH + len(self._extensions)
        header = _HEADER.pack(
            MAGIC, VERSION,
            backing_file_offset, len(self._backing),
            self.cluster_size.bit_length() - 1,   # cluster_bits
            self.virtual_size,             # size
            0,                             # crypt_method: none
            self._l1_size, l1_table_offset,
            refcount_table_offset, refcount_table_clusters,
            0, 0,                          # nb_snapshots, snapshots_offset
            0, 0, 0,                       # incompatible/compatible/autoclear features
            REFCOUNT_ORDER, HEADER_LENGTH,
            0)                             # compression_type: zlib
        self._pwrite(header + self._extensions + self._backing, 0)


# -- reading a QEMU-written overlay --

def _qemu_img_json(*args):
    command = ['qemu-img'] + list(args)
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        raise BaseVMError('cannot run qemu-img: %s' % e)
    if done.returncode:
        raise BaseVMError('%s failed (exit %d): %s' % (' '.join(command), done.returncode,
                                                       done.stderr.decode(errors='replace').strip()))
    try:
        return json.loads(done.stdout)
    except ValueError as e:
        raise BaseVMError('%s: unexpected output: %s' % (' '.join(command), e))


def top_layer_info(qcow2_path):
    """virtual_size, backing_file, backing_format, cluster_size of a qcow2 image."""
    info = _qemu_img_json('info', '--output=json', '-U', '-f', 'qcow2', os.fspath(qcow2_path))
    return {
        'virtual_size': info['virtual-size'],
        'backing_file': info.get('backing-filename'),
        'backing_format': info.get('backing-filename-format'),
        'cluster_size': info.get('cluster-size'),
    }


def iter_top_layer_chunks(qcow2_path, chunk_size=4096):
    """Yields (guest_offset, data) for each chunk allocated in the top layer.

    In increasing offset order; data is `chunk_size` bytes, or None where the
    top layer says the chunk reads as zeros.  Chunks the top layer does not
    allocate (they come from the backing chain) are not yielded.  A whole
    allocated qcow2 cluster is yielded, including the parts QEMU copied from
    the base.  The image must not change meanwhile (pause or stop the VM).
    qemu-img runs now, so its errors (BaseVMError) come from this call.
    """
    path = os.fspath(qcow2_path)
    extents = _qemu_img_json('map', '--output=json', '-U', '-f', 'qcow2', path)
    return _top_layer_chunks(path, extents, chunk_size)


def _top_layer_chunks(path, extents, chunk_size):
    read_size = max(chunk_size, READ_SIZE // chunk_size * chunk_size)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for extent in extents:
            # depth 0 is the top layer; present false is unallocated everywhere.
            if extent['depth'] != 0 or not extent.get('present', True):
                continue
            start, length = extent['start'], extent['length']
            if start % chunk_size or length % chunk_size:
                raise BaseVMError('%s: extent at %d (+%d) is not aligned to %d-byte chunks'
                                  % (path, start, length, chunk_size))
            if extent['zero']:
                for offset in range(start, start + length, chunk_size):
                    yield offset, None
                continue
            host = extent.get('offset')
            if not extent['data'] or host is None:
                # Compressed or encrypted clusters have no plain host offset.
                raise BaseVMError('%s: data at guest offset %d has no host offset: compressed '
                                  '(or encrypted) clusters are not supported' % (path, start))
            for done in range(0, length, read_size):
                size = min(read_size, length - done)
                data = os.pread(fd, size, host + done)
                if len(data) != size:
                    raise BaseVMError('%s: short read at host offset %d' % (path, host + done))
                for i in range(0, size, chunk_size):
                    yield start + done + i, data[i:i + chunk_size]
    finally:
        os.close(fd)
