"""The sparse launch image: a save image that carries only what the base's RAM file lacks.

An overlay rebuilds the launch memory image byte by byte: new bytes, and
ranges copied from the base's memory.save. `Pieces` records that sequence
without copying the base's ranges. `write` then walks the launch stream it
describes and writes a save image with the same libvirt header, QEMU
preamble, device state and other RAM blocks, but with only those records of
the main RAM block whose page differs from the base's RAM file (ramfile.py):
restored into a QEMU whose RAM maps that file copy-on-write, it gives the
same guest as the full image, having read the changed pages only.

A record is left out when it is the base's own record for that page (its
payload is copied from where memory.save holds that page) or a zero record
for a page that is zero in the base, unless an earlier record for the page
was written (a later record wins in QEMU's loader). Runs of the base's
records are skipped with the RAM file's index, without reading them, so the
walk costs what the overlay changed, not the RAM size.

`SparseWriter` does the same walk in a thread while the overlay is still
being applied (the walk waits for the bytes it needs), so that a streamed
residue leaves only its last records and the device state to write after
its last byte: that part of a handoff's downtime. `PipeWriter` writes it
into a named pipe instead of a file, for a restore that loads it as it is
written (doc/handoff.md, "The restore streamed"): with the restored VM's
XML in its libvirt header, and the device state held back until the
caller says the rest of the launch (the disk, the overlay's trailer) is
sound, because QEMU runs the VM once it has loaded the device state.

The written stream has one RAM section (START with the block list, the
records, EOS) and an empty END section, as QEMU's loader accepts from any
saver; the main block is written under ramfile.BACKEND_ID, the id of the
memory backend the restored domain gets.
"""

import bisect
import errno
import fcntl
import io
import os
import struct
import threading
import time

from cloudlet_engine import errors
from cloudlet_engine import migstream
from cloudlet_engine import ramfile
from cloudlet_engine import savefile

PAGE = migstream.PAGE_SIZE
_NEW, _BASE = 0, 1
# Bytes read per refill while walking: the walk jumps over base runs, and a
# big window would read what it then skips.
_WINDOW = 64 << 10
_BE32 = struct.Struct('>I')
_BE64 = struct.Struct('>Q')
# A walk of a growing image is done with this size (its end is known at its end).
_UNKNOWN_SIZE = 1 << 62
# A pipe of 1 MiB (Linux's default limit for F_SETPIPE_SZ) lets QEMU load as
# fast as from a file; the default 64 KiB makes it wait on every few pages.
PIPE_BYTES = 1 << 20
# Buffered writes into the pipe, and how often the writer looks for its reader.
_PIPE_WRITES = 256 << 10
# The spill file's write buffer: pread flushes it only when it reads what is still in it.
_SPILL_BUFFER = 1 << 20
_READER_POLL = 0.01


class Pieces:
    """The launch memory image as a sequence of new bytes and base ranges.

    New bytes go to a spill file; base ranges are only noted. `pread` reads
    the image as if it had been written whole. Thread-safe: one thread
    appends, another may walk it as it grows (`wait_pread`) until `end()`.
    """

    def __init__(self, spill_path, base_memory_path, size, limit):
        self.size = size            # None: not declared (a streamed overlay); `limit` bounds it
        self.limit = limit if size is None else size
        self.position = 0
        self._starts, self._kinds, self._sources, self._lengths = [], [], [], []
        self._spill_path = spill_path
        self._spill = open(spill_path, 'xb+', buffering=_SPILL_BUFFER)
        self._spilled = 0
        self._flushed = 0           # of the spilled bytes, those on file (pread sees them)
        self._base = open(base_memory_path, 'rb')
        self._base_size = os.fstat(self._base.fileno()).st_size
        self._cond = threading.Condition()
        # What a waiting walker waits for: an append wakes it only once that is in
        # (an append per page, each waking the walker, cost the two threads more in
        # lock and GIL handovers than the walk itself).
        self._wanted = _UNKNOWN_SIZE
        self._ended = False
        self._failure = None        # why the walker gave up: appending then raises it

    def _grow(self, length):
        if self._failure is not None:
            raise self._failure
        if self.position + length > self.limit:
            if self.size is None:
                raise errors.LimitExceeded('memory image grows past the limit of %d bytes' % self.limit)
            raise errors.CorruptOverlay('memory image grows past its declared %d bytes' % self.size)

    def _add(self, kind, source, length):
        """Under the lock."""
        if not length:
            return
        if (self._kinds and self._kinds[-1] == kind
                and self._sources[-1] + self._lengths[-1] == source):
            self._lengths[-1] += length
        else:
            self._starts.append(self.position)
            self._kinds.append(kind)
            self._sources.append(source)
            self._lengths.append(length)
        self.position += length
        if self.position >= self._wanted:
            self._cond.notify_all()

    def append(self, data):
        self._grow(len(data))
        with self._cond:
            self._spill.write(data)
            self._add(_NEW, self._spilled, len(data))
            self._spilled += len(data)

    def append_base(self, offset, length):
        if offset < 0 or offset + length > self._base_size:
            raise errors.CorruptOverlay('base memory range %d+%d out of range' % (offset, length))
        self._grow(length)
        with self._cond:
            self._add(_BASE, offset, length)

    def read(self, offset):
        """A launch memory chunk already appended (an overlay's copy from launch memory)."""
        if offset < 0 or offset + PAGE > self.position:
            raise errors.CorruptOverlay('copy from launch memory offset %d, not written yet' % offset)
        return self.pread(PAGE, offset)

    def end(self):
        """Nothing more will be appended: walkers waiting for more see the end."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def fail(self, exc):
        """The walker gave up (`exc`): the next append raises it, waiters stop."""
        with self._cond:
            self._failure = exc
            self._ended = True
            self._cond.notify_all()

    def wait_for(self, end):
        """Until `end` bytes were appended or the image ended."""
        if self.position >= end:
            return      # without the lock: only the appender moves it, and only forward
        with self._cond:
            while self.position < end and not self._ended:
                self._wanted = end
                self._cond.wait(1.0)
            self._wanted = _UNKNOWN_SIZE

    def wait_pread(self, length, offset):
        """pread, first waiting for min(length, 64 KiB) bytes at `offset` (fewer at the end)."""
        self.wait_for(offset + min(length, _WINDOW))
        return self.pread(length, offset)

    def pread(self, length, offset):
        with self._cond:
            length = max(0, min(length, self.position - offset))
            pieces = []
            i = bisect.bisect_right(self._starts, offset) - 1
            at = offset
            while at < offset + length:
                start, kind, source, size = self._starts[i], self._kinds[i], self._sources[i], self._lengths[i]
                pieces.append((kind, source + at - start, min(offset + length - at, size - (at - start))))
                at += pieces[-1][2]
                i += 1
            if any(kind == _NEW and where + n > self._flushed for kind, where, n in pieces):
                self._spill.flush()
                self._flushed = self._spilled
        parts = []
        for kind, where, n in pieces:
            if kind == _NEW:
                data = os.pread(self._spill.fileno(), n, where)
            else:
                data = os.pread(self._base.fileno(), n, where)
            if len(data) != n:
                raise errors.CloudletError('launch memory piece at %d reads short' % offset)
            parts.append(data)
        return b''.join(parts)

    def base_extent(self, offset):
        """(memory.save offset, launch offset where that base range ends so far) at `offset`, or None."""
        with self._cond:
            i = bisect.bisect_right(self._starts, offset) - 1
            if i < 0 or self._kinds[i] != _BASE or offset >= self._starts[i] + self._lengths[i]:
                return None
            return self._sources[i] + offset - self._starts[i], self._starts[i] + self._lengths[i]

    def close(self):
        """Close and remove the spill file (idempotent)."""
        for f in (self._spill, self._base):
            f.close()
        try:
            os.unlink(self._spill_path)
        except FileNotFoundError:
            pass


class _Writer:
    """Writes the sparse image's records, naming a block when the previous record was another's."""

    def __init__(self, out, rename):
        self.out = out
        self.rename = rename
        self.last = None
        self.records = 0

    def record(self, block, addr, zero, fill, payload=b''):
        name = self.rename.get(block, block)
        self.out.write(migstream.record_header(name, addr, zero, name != self.last, fill))
        if not zero:
            self.out.write(payload)
        self.last = name
        self.records += 1


class _Growing:
    """`pieces` as migstream's walker reads a stream still arriving: pread waits for the bytes."""

    def __init__(self, pieces):
        self.pread = pieces.wait_pread


def _read_header(pieces):
    head = pieces.wait_pread(savefile.HEADER_SIZE, 0)
    data_len = struct.unpack_from(savefile.HEADER_FORMAT, head)[2] if len(head) == savefile.HEADER_SIZE else 0
    if data_len > savefile.MAX_DATA_LEN:
        raise errors.SaveImageError('launch memory image header announces %d bytes of XML' % data_len)
    pieces.wait_for(savefile.HEADER_SIZE + data_len)
    return savefile.read_save_image(io.BytesIO(pieces.pread(savefile.HEADER_SIZE + data_len, 0)))


def write(pieces, ram, out_path):
    """Write the sparse launch image for `pieces` (whole: ends it) over the base's RamFile `ram`.

    Returns the number of main-block pages written. SaveImageError for a
    launch image that is not a save image whose main block matches the base's.
    """
    pieces.end()
    with open(out_path, 'xb') as out:
        return _write_to(out, pieces, ram)


class _Walker:
    """A walk of `pieces` in a thread (SparseWriter, PipeWriter): its pages, its end, its error."""

    def __init__(self, pieces, ram, name):
        self.pieces, self.ram = pieces, ram
        self.pages = None
        self._error = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self):
        raise NotImplementedError

    def finish(self):
        """Ends `pieces`, waits for the walk's end; raises its error."""
        self.pieces.end()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.pages


class SparseWriter(_Walker):
    """`write` in a thread, walking `pieces` while they are appended (see the module doc).

    The caller appends, then `finish()` (ends `pieces`, waits for the walk,
    raises its error) or `abort()` (stops it, removes the image). A walk that
    fails makes the caller's next append raise its error.
    """

    def __init__(self, pieces, ram, out_path):
        super().__init__(pieces, ram, 'cloudlet-sparse-writer')
        self.out_path = out_path
        self._out = open(out_path, 'xb')
        self._thread.start()

    def _run(self):
        try:
            with self._out:
                self.pages = _write_to(self._out, self.pieces, self.ram)
        except BaseException as exc:   # noqa: BLE001 - handed to the appending thread
            self._error = exc
            self.pieces.fail(exc)

    def abort(self):
        """Stop the walk and remove the image (idempotent)."""
        self.pieces.fail(errors.LaunchAbandoned('the launch memory image was abandoned'))
        self._thread.join()
        try:
            os.unlink(self.out_path)
        except FileNotFoundError:
            pass


class PipeWriter(_Walker):
    """The sparse image written into a named pipe while `pieces` are appended,
    for a restore reading the pipe meanwhile (see the module doc).

    The caller appends; once `header()` has the image's libvirt header, it
    gives the restored VM's XML (`give_xml`) and starts the restore on
    `path`. Then `release()` when the launch is sound (the device state
    follows: QEMU runs the VM) and `finish()`, or `abort()`: the pipe closes
    short, and QEMU's load fails. A walk that fails makes the caller's next
    append raise its error, and closes the pipe short too.
    """

    def __init__(self, pieces, ram, path):
        super().__init__(pieces, ram, 'cloudlet-pipe-writer')
        self.path = path
        self.bytes_written = 0
        # From `end()` until the walk had everything but the device state: how far
        # behind the appends it was when they ended (the walk's share of the downtime).
        self.catch_up_seconds = None
        self._ended_at = None
        self._image = None
        self._prefix = None
        self._released = False
        self._aborted = False
        self._cond = threading.Condition()
        os.mkfifo(path, 0o600)
        self._thread.start()

    # -- the caller's side --

    def header(self, timeout=None):
        """The image's libvirt header (savefile.SaveImageHeader) once it is in; the walk's error, if it failed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._image or self._error or self._aborted, timeout):
                raise errors.CloudletError('the launch memory image\'s header did not arrive in %s s' % timeout)
            self._raise_if_ended()
            return self._image

    def give_xml(self, xml):
        """The XML the restored VM gets in the image's header (SaveImageError: it does not fit)."""
        prefix = savefile.with_xml(self.header(), xml)
        with self._cond:
            self._prefix = prefix
            self._cond.notify_all()

    def end(self):
        """Nothing more will be appended (the walk goes on to the image's end)."""
        self._ended_at = time.monotonic()
        self.pieces.end()

    def release(self):
        """The rest of the launch is sound: the device state may follow."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def abort(self, timeout=30.0):
        """Stop: the pipe closes short (QEMU's load fails) and is removed (idempotent)."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
        self.pieces.fail(errors.LaunchAbandoned('the launch memory image was abandoned'))
        self._thread.join(timeout)
        # A reader still waiting in open() for a writer (the walk ended before
        # it had one) would wait for ever: it gets this one, then the end of
        # the pipe. Removed meanwhile, the pipe takes no new reader.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass     # the apply, failing on the abandoned launch, removed its files first
        finally:
            os.close(fd)

    def _raise_if_ended(self):
        if self._error is not None:
            raise self._error
        if self._aborted:
            raise errors.LaunchAbandoned('the launch memory image was abandoned')

    # -- the writing thread --

    def _run(self):
        try:
            image = _read_header(self.pieces)
            with self._cond:
                self._image = image
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._prefix is not None or self._aborted)
                self._raise_if_ended()
            fd = self._open_for_reader()
            with open(fd, 'wb', buffering=_PIPE_WRITES) as pipe:
                self.pages = _write_to(_Counting(pipe, self), self.pieces, self.ram, image=image,
                                       prefix=self._prefix, hold=self._wait_released)
        except BaseException as exc:   # noqa: BLE001 - handed to the caller
            with self._cond:
                if self._aborted:    # the walk saw the image cut short: that is not why
                    exc = errors.LaunchAbandoned('the launch memory image was abandoned')
                self._error = exc
                self._cond.notify_all()
            self.pieces.fail(exc)

    def _open_for_reader(self):
        """The pipe's write end, once a reader has opened it (polled: `abort` must be able to stop the wait)."""
        while True:
            with self._cond:
                self._raise_if_ended()
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:     # ENXIO: no reader yet
                    raise
            time.sleep(_READER_POLL)
        os.set_blocking(fd, True)
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass    # above the host's pipe-max-size: the default size, only slower
        return fd

    def _wait_released(self):
        if self._ended_at is not None:
            self.catch_up_seconds = time.monotonic() - self._ended_at
        with self._cond:
            self._cond.wait_for(lambda: self._released or self._aborted)
            self._raise_if_ended()


class _Counting:
    """A pipe's file object that counts the bytes written into `owner.bytes_written`."""

    def __init__(self, out, owner):
        self._out, self._owner = out, owner

    def write(self, data):
        self._owner.bytes_written += len(data)
        return self._out.write(data)

    def flush(self):
        self._out.flush()


def _write_to(out, pieces, ram, image=None, prefix=None, hold=None):
    """The walk (see the module doc) into `out`. `image`: the image's header,
    read already; `prefix`: bytes in place of its libvirt header and XML;
    `hold`: called once everything before the RAM section's end is written,
    returns when the rest may follow.
    """
    if image is None:
        image = _read_header(pieces)
    index = ram.index()
    block = ramfile.BLOCK
    rename = {block: ramfile.BACKEND_ID}
    stats = migstream.ScanStats()
    written = bytearray(index.pages)   # pages whose record was written
    state = {'written': 0, 'next': 0}   # 'next': the record a skip expects next

    def skip(pos, last_block):
        ours = stats.blocks.get(block)
        if ours is None or ours.used_length != ram.size:
            return None   # not the base's block: every record is walked (and refused below)
        extent = pieces.base_extent(pos)
        if extent is None:
            return None
        base_offset, piece_end = extent
        i = index.record_at(base_offset, state['next'])
        if i is None or not (index.rec_named[i] or last_block == block):
            return None
        j = index.run_end(i, base_offset + piece_end - pos)
        if j <= i:
            return None
        if state['written']:
            pages = index.rec_page[i:j]
            if written.find(1, min(pages), max(pages) + 1) != -1:
                return None
        state['next'] = j
        return pos + index.rec_end[j - 1] - base_offset
    skip.block = block

    writer = _Writer(out, rename)
    started = False
    records = migstream.walk_records(_Growing(pieces), image.stream_offset, _UNKNOWN_SIZE, stats=stats,
                                     skip=skip, window=_WINDOW)
    for rec in records:
        pieces.wait_for(rec.end)     # the walker yields a record before reading its payload
        if not started:
            _write_prefix(out, pieces, stats, rename, ram.size, prefix)
            started = True
        if rec.block == block:
            page = rec.addr // PAGE
            if not written[page]:
                if rec.zero:
                    if rec.fill == 0 and index.page_payload[page] == ramfile.ZERO_PAGE:
                        continue
                else:
                    extent = pieces.base_extent(rec.end - PAGE)
                    if (extent is not None and extent[0] == index.page_payload[page]
                            and extent[1] >= rec.end):
                        continue
                written[page] = 1
                state['written'] += 1
        writer.record(rec.block, rec.addr, rec.zero, rec.fill,
                      b'' if rec.zero else pieces.pread(PAGE, rec.end - PAGE))
    if stats.device_state_offset is None:
        raise errors.SaveImageError('launch memory image has no device state')
    if not started:
        _write_prefix(out, pieces, stats, rename, ram.size, prefix)
    pieces.wait_for(_UNKNOWN_SIZE)   # the device state: to the image's end
    if hold is not None:
        out.flush()
        hold()
    _write_ram_end(out, stats)
    _copy(out, pieces, stats.device_state_offset, pieces.position)
    return state['written']


def _write_prefix(out, pieces, stats, rename, ram_size, prefix=None):
    """libvirt header (`prefix`, if given), QEMU preamble, the RAM START section's header and block list."""
    ours = stats.blocks.get(ramfile.BLOCK)
    if stats.ram_section_offset is None or ours is None:
        raise errors.SaveImageError('launch memory image has no RAM block %s' % ramfile.BLOCK)
    if ours.used_length != ram_size:
        raise errors.SaveImageError('launch memory has a %s of %d bytes, the base\'s RAM file %d'
                                    % (ramfile.BLOCK, ours.used_length, ram_size))
    if prefix is None:
        _copy(out, pieces, 0, stats.ram_section_offset)
    else:
        out.write(prefix)
        _copy(out, pieces, len(prefix), stats.ram_section_offset)
    out.write(bytes((migstream.QEMU_VM_SECTION_START,)) + _BE32.pack(stats.ram_section_id)
              + migstream.idstr(migstream.RAM_SECTION_NAME) + _BE32.pack(stats.ram_instance_id)
              + _BE32.pack(migstream.RAM_SECTION_VERSION))
    out.write(_BE64.pack(stats.ram_total | migstream.RAM_SAVE_FLAG_MEM_SIZE))
    for name, block in stats.blocks.items():
        out.write(migstream.idstr(rename.get(name, name)) + _BE64.pack(block.used_length))


def _write_ram_end(out, stats):
    """EOS and footer of the START section, then an empty END section."""
    footer = (bytes((migstream.QEMU_VM_SECTION_FOOTER,)) + _BE32.pack(stats.ram_section_id)
              if stats.footers else b'')
    eos = _BE64.pack(migstream.RAM_SAVE_FLAG_EOS)
    out.write(eos + footer + bytes((migstream.QEMU_VM_SECTION_END,)) + _BE32.pack(stats.ram_section_id)
              + eos + footer)


def _copy(out, pieces, start, end):
    while start < end:
        n = min(end - start, 8 << 20)
        out.write(pieces.pread(n, start))
        start += n
