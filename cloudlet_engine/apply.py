"""Overlay application: base + overlay stream -> launch disk and launch memory.

The overlay is consumed as a stream, one verified segment at a time, so memory
stays bounded by the segment limits whatever the overlay's size, and applying
starts with the first segment while the rest is still arriving.

Every offset an item carries is checked before it is used: disk offsets must
be chunk-aligned and inside the disk, copies must come from inside the base
or from launch chunks already written, and the memory image may not grow past
the size the header declared. Any failure removes the launch files.

An encrypted overlay (format version 2) needs its key; a `verifier` (a
signature check) sees every byte read and must accept them before the launch
files count as made.

`Streamed` runs an apply in a thread whose launch memory is a named pipe: a
restore loads it while the overlay still arrives (a handoff's residue), and
the VM runs as soon as the last byte is checked (doc/handoff.md, "The
restore streamed").
"""

import dataclasses
import os
import threading
import time

from cloudlet_engine import chunks
from cloudlet_engine import codecs
from cloudlet_engine import errors
from cloudlet_engine import format as fmt
from cloudlet_engine import qcow2
from cloudlet_engine import savefile
from cloudlet_engine import sparse

LAUNCH_DISK = 'disk.qcow2'
LAUNCH_MEMORY = 'memory.save'
SPARSE_SPILL = 'memory.new'     # an overlay's new memory bytes, while a sparse image is made
CHUNK = chunks.CHUNK


@dataclasses.dataclass
class Launch:
    disk_path: str
    memory_path: str
    meta: dict
    overlay_bytes: int = 0
    restored_bytes: int = 0        # disk chunks written + memory image bytes
    seconds: float = 0.0
    finish_seconds: float = 0.0    # of those, after the last segment: the trailer, the memory image
    # The base's ramfile.RamFile when memory_path is a sparse image to restore
    # over it (None: a full image).
    ram: object = None
    # The `Streamed` apply still writing memory_path (a named pipe), or None.
    streamed: object = None
    # Of finish_seconds, a memory image written into a pipe: how long its walk took to catch up.
    catch_up_seconds: float = None


class _MemoryTarget:
    """The launch memory file, written front to back through a small buffer."""

    def __init__(self, path, size, limit):
        self.size = size           # None: not declared (a streamed overlay); `limit` bounds it
        self.limit = limit if size is None else size
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.read_fd = os.open(path, os.O_RDONLY)
        self.position = 0          # bytes appended so far
        self._flushed = 0
        self._buffer = bytearray()

    def append(self, data):
        if self.position + len(data) > self.limit:
            if self.size is None:
                raise errors.LimitExceeded('memory image grows past the limit of %d bytes' % self.limit)
            raise errors.CorruptOverlay('memory image grows past its declared %d bytes' % self.size)
        self._buffer += data
        self.position += len(data)
        if len(self._buffer) >= 8 << 20:
            self.flush()

    def read(self, offset):
        if offset + CHUNK > self.position:
            raise errors.CorruptOverlay('copy from launch memory offset %d, not written yet' % offset)
        if offset + CHUNK > self._flushed:
            self.flush()
        return os.pread(self.read_fd, CHUNK, offset)

    def flush(self):
        view = memoryview(self._buffer)
        while view:
            view = view[os.write(self.fd, view):]
        self._flushed = self.position
        self._buffer = bytearray()

    def close(self):
        self.flush()
        os.close(self.fd)
        os.close(self.read_fd)


class _Applier:
    def __init__(self, base, launch_dir, meta, workdir, max_memory_bytes, ram=None, pipe=False):
        self.base = base
        self.workdir = workdir
        self.disk_size = meta['disk_size']
        self.base_memory_size = base.memory_size
        self.disk_path = os.path.join(launch_dir, LAUNCH_DISK)
        self.memory_path = os.path.join(launch_dir, LAUNCH_MEMORY)
        self.restored_bytes = 0
        self.ram = ram
        self.sparse_writer = None
        self.base_disk_fd = self.base_memory_fd = self.memory = self.disk = None
        try:
            self.base_disk_fd = os.open(base.disk_path, os.O_RDONLY)
            self.base_memory_fd = os.open(base.memory_path, os.O_RDONLY)
            if ram is None:
                self.memory = _MemoryTarget(self.memory_path, meta['memory_size'], max_memory_bytes)
            else:
                self.memory = sparse.Pieces(os.path.join(launch_dir, SPARSE_SPILL), base.memory_path,
                                            meta['memory_size'], max_memory_bytes)
                # Written while the overlay arrives, not after its last byte.
                writer = sparse.PipeWriter if pipe else sparse.SparseWriter
                self.sparse_writer = writer(self.memory, ram, self.memory_path)
            # A restore reading the pipe opens the disk before its chunks are in.
            self.disk = qcow2.Qcow2Writer(self.disk_path, base.disk_size, base.disk_path, 'raw',
                                          valid_while_written=pipe)
        except BaseException:
            # Half-built: remove what was created, close what was opened.
            self.abort()
            self.close_sources()
            raise

    # -- sources -------------------------------------------------------------

    def _check_disk_offset(self, offset, what):
        if offset % CHUNK or offset + CHUNK > self.disk_size:
            raise errors.CorruptOverlay('%s: disk offset %d is unaligned or outside the %d-byte disk'
                                        % (what, offset, self.disk_size))

    def base_disk_chunk(self, offset, what):
        if offset % CHUNK or offset + CHUNK > self.base.disk_size:
            raise errors.CorruptOverlay('%s: base disk offset %d out of range' % (what, offset))
        return os.pread(self.base_disk_fd, CHUNK, offset)

    def base_memory_chunk(self, offset, what):
        if offset + CHUNK > self.base_memory_size:
            raise errors.CorruptOverlay('%s: base memory offset %d out of range' % (what, offset))
        return os.pread(self.base_memory_fd, CHUNK, offset)

    def copy_base_memory_range(self, offset, length, what):
        """Append a run of the base memory image: unchanged pages and their record headers."""
        if offset + length > self.base_memory_size:
            raise errors.CorruptOverlay('%s: base memory range %d+%d out of range' % (what, offset, length))
        if self.ram is not None:
            self.memory.append_base(offset, length)
            return
        end = offset + length
        while offset < end:
            size = min(end - offset, 8 << 20)
            self.memory.append(os.pread(self.base_memory_fd, size, offset))
            offset += size

    def copy_source(self, area, offset, what):
        if area == fmt.AREA_BASE_DISK:
            return self.base_disk_chunk(offset, what)
        if area == fmt.AREA_BASE_MEMORY:
            return self.base_memory_chunk(offset, what)
        if area == fmt.AREA_LAUNCH_MEMORY:
            return self.memory.read(offset)
        if area == fmt.AREA_LAUNCH_DISK:
            self._check_disk_offset(offset, what)
            data = self.disk.read_chunk(offset)
            if data is None:
                raise errors.CorruptOverlay('%s: copy from launch disk offset %d, not written yet'
                                            % (what, offset))
            return bytes(CHUNK) if data is qcow2.ZERO else data
        raise errors.CorruptOverlay('%s: unknown copy source area %d' % (what, area))

    def counterparts(self, items, what):
        """The base chunks the segment's data was encoded against, in item order."""
        parts = []
        for item in items:
            if item.kind == fmt.DISK_DATA:
                self._check_disk_offset(item.offset, what)
                parts.append(self.base_disk_chunk(item.offset, what))
            elif item.kind == fmt.MEM_PAGE_DATA and item.source != fmt.NO_COUNTERPART:
                parts.append(self.base_memory_chunk(item.source, what))
        return b''.join(parts)

    # -- one segment ---------------------------------------------------------

    def apply_segment(self, segment):
        what = 'segment %d' % segment.index
        items_raw = codecs.decompress(segment.codec, segment.items_stored, segment.items_raw_len,
                                      what + ' items')
        items = fmt.decode_items(items_raw, segment.item_count)
        data_len = sum(item.data_length for item in items)
        if data_len != segment.data_raw_len:
            raise errors.CorruptOverlay('%s: items need %d data bytes, the segment has %d'
                                        % (what, data_len, segment.data_raw_len))
        data = codecs.decode_data(segment, self.counterparts(items, what), what + ' data', self.workdir)
        view, cursor = memoryview(data), 0
        for item in items:
            kind = item.kind
            if kind == fmt.MEM_PAGE_COPY and item.area == fmt.AREA_BASE_MEMORY and self.ram is not None:
                self.copy_base_memory_range(item.source, CHUNK, what)
            elif kind == fmt.MEM_PAGE_COPY:
                self.memory.append(self.copy_source(item.area, item.source, what))
            elif kind == fmt.MEM_RANGE_COPY:
                self.copy_base_memory_range(item.source, item.length, what)
            elif kind in (fmt.MEM_PAGE_DATA, fmt.MEM_BYTES):
                size = item.data_length
                self.memory.append(view[cursor:cursor + size])
                cursor += size
            elif kind == fmt.MEM_PAGE_ZERO:
                self.memory.append(chunks.ZERO_CHUNK)
            else:
                self._check_disk_offset(item.offset, what)
                if kind == fmt.DISK_DATA:
                    self.disk.write_chunk(item.offset, bytes(view[cursor:cursor + CHUNK]))
                    cursor += CHUNK
                elif kind == fmt.DISK_ZERO:
                    self.disk.write_zero(item.offset)
                else:
                    self.disk.write_chunk(item.offset, self.copy_source(item.area, item.source, what))
                self.restored_bytes += CHUNK

    def finish(self):
        if self.memory.size is not None and self.memory.position != self.memory.size:
            raise errors.CorruptOverlay('memory image has %d of its declared %d bytes'
                                        % (self.memory.position, self.memory.size))
        if self.ram is None:
            self.restored_bytes += self.memory.position
            self.memory.close()
        elif isinstance(self.sparse_writer, sparse.PipeWriter):
            # The reader runs the VM once it has the device state: the disk first.
            self.sparse_writer.end()
            self.disk.close()
            self.sparse_writer.release()
            self.sparse_writer.finish()
            self.restored_bytes += self.sparse_writer.bytes_written
            self.memory.close()
            return
        else:
            self.sparse_writer.finish()
            self.restored_bytes += os.path.getsize(self.memory_path)
            self.memory.close()
        self.disk.close()

    def close_sources(self):
        for fd in (self.base_disk_fd, self.base_memory_fd):
            if fd is not None:
                os.close(fd)
        self.base_disk_fd = self.base_memory_fd = None

    def abort(self):
        for closer in (lambda: self.sparse_writer and self.sparse_writer.abort(),
                       lambda: self.memory and self.memory.close(), lambda: self.disk and self.disk.abort()):
            try:
                closer()
            except Exception:   # noqa: BLE001 - cleanup must go on
                pass
        # Only files this applier created: a memory image that already existed
        # (O_EXCL refused it) belongs to someone else. The sparse writer
        # removed its own.
        for target, path in ((self.memory, self.memory_path), (self.disk, self.disk_path)):
            if target is None or (target is self.memory and self.ram is not None):
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def check_overlay_base(meta, base):
    if meta['base_id'] != base.base_id:
        raise errors.WrongBase('overlay was made for base %s, not for base %s'
                               % (meta['base_id'], base.base_id))
    if meta['disk_size'] != base.disk_size:
        raise errors.WrongBase('overlay expects a %d-byte base disk, base %s has %d bytes'
                               % (meta['disk_size'], base.base_id, base.disk_size))


class _Tap:
    """Hands every byte read to the verifier; what it raises is a SignatureInvalid."""

    def __init__(self, verifier):
        self.verifier = verifier

    def __call__(self, data):
        try:
            self.verifier.update(data)
        except errors.SignatureInvalid:
            raise
        except Exception as exc:
            raise _signature_error(exc) from exc

    def verify(self):
        try:
            self.verifier.verify()
        except errors.SignatureInvalid:
            raise
        except Exception as exc:
            raise _signature_error(exc) from exc


def _signature_error(exc):
    if isinstance(exc, errors.OverlayError):
        return errors.SignatureInvalid(str(exc))
    detail = str(exc)
    return errors.SignatureInvalid('the overlay\'s signature does not verify'
                                   + (': %s' % detail if detail else ' (%s)' % type(exc).__name__))


def apply_overlay(base, fileobj, launch_dir, limits=None, progress=None, key=None, verifier=None, ram=None,
                  streamed=None):
    """Apply the overlay read from `fileobj` to `base`, writing into `launch_dir`.

    key: the 32-byte key of an encrypted overlay (KeyRequired without it;
    NotEncrypted if the overlay is plain). verifier: an object with
    update(data) and verify(); every byte read from `fileobj` goes to update()
    in order, and verify() is called once the trailer and the end of the stream
    were checked; if it raises, the launch files are removed and
    SignatureInvalid is raised.

    ram: the base's ramfile.RamFile to restore over: the memory image
    written is then sparse (sparse.py) and only valid over that file.

    streamed: the `Streamed` running this apply (with `ram`): the memory
    image is then a named pipe, handed to it with the launch's paths as soon
    as the overlay's header is read.

    Returns a Launch. On any error the launch files are removed and the error
    (an errors.OverlayError for bad input) propagates.
    """
    started = time.monotonic()
    tap = _Tap(verifier) if verifier is not None else None
    reader = fmt.OverlayReader(fileobj, limits, key=key, tap=tap)
    reader.require_key()
    check_overlay_base(reader.meta, base)
    os.makedirs(launch_dir, exist_ok=True)
    pipe = streamed is not None and ram is not None
    applier = _Applier(base, launch_dir, reader.meta, launch_dir, reader.limits.max_memory_bytes, ram, pipe)
    try:
        if pipe:
            streamed.started(Launch(applier.disk_path, applier.memory_path, reader.meta, ram=ram,
                                    streamed=streamed), applier.sparse_writer)
        for segment in reader.segments():
            applier.apply_segment(segment)
            if progress:
                progress.update('applying overlay', reader.position)
        finishing = time.monotonic()
        if tap is not None:
            tap.verify()
        applier.finish()
        if not pipe:
            savefile.read_save_image(applier.memory_path)
        finish_seconds = time.monotonic() - finishing
    except BaseException:
        applier.abort()
        raise
    finally:
        applier.close_sources()
    return Launch(applier.disk_path, applier.memory_path, reader.meta, reader.position,
                  applier.restored_bytes, time.monotonic() - started, finish_seconds, ram,
                  catch_up_seconds=getattr(applier.sparse_writer, 'catch_up_seconds', None))


class Streamed:
    """An apply in a thread (`target(streamed)` calls apply_overlay with
    `streamed=` this) whose launch memory a restore reads as it is written.

    The restoring thread waits for `launch()` (the paths and the overlay's
    metadata, once its header is read), reads the memory image's `header()`,
    gives the restored VM's XML (`give_xml`), restores from the pipe, then
    asks for the `result()`: the finished Launch, or the apply's error. On
    its own failure it calls `abort()`, which closes the pipe short: an
    apply still reading then fails at its next write.
    """

    def __init__(self, target, name='cloudlet-streamed-apply'):
        self._cond = threading.Condition()
        self._launch = self._writer = self._result = self._error = None
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(target,), name=name, daemon=True)
        self._thread.start()

    def _run(self, target):
        try:
            result = target(self)
        except BaseException as exc:   # noqa: BLE001 - handed to the restoring thread
            with self._cond:
                self._error, self._done = exc, True
                self._cond.notify_all()
            return
        with self._cond:
            self._result, self._done = result, True
            self._cond.notify_all()

    def started(self, launch, writer):
        """apply_overlay's call: the launch's files exist, `writer` (sparse.PipeWriter) fills the pipe."""
        with self._cond:
            self._launch, self._writer = launch, writer
            self._cond.notify_all()

    def launch(self, timeout=None):
        """The Launch once its files exist (an apply without a pipe: once it
        ended, its files whole); the apply's error if it failed first.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._launch or self._done, timeout):
                raise errors.CloudletError('the overlay\'s header did not arrive in %s s' % timeout)
            if self._launch is not None:
                return self._launch
            if self._error is not None:
                raise self._error
            return self._result

    def header(self, timeout=None):
        """The launch memory image's libvirt header (savefile.SaveImageHeader), once it arrived."""
        self.launch(timeout)
        try:
            return self._writer.header(timeout)
        except errors.CloudletError:
            self._raise_failure_first()
            raise

    def give_xml(self, xml):
        """The restored VM's XML, for the image's libvirt header (SaveImageError: it does not fit)."""
        self.launch()
        self._writer.give_xml(xml)

    def result(self, timeout=None):
        """The finished Launch (after the reader had the whole image), or the apply's error."""
        self._thread.join(timeout)
        with self._cond:
            if not self._done:
                raise errors.CloudletError('the overlay\'s apply did not end in %s s' % timeout)
            if self._error is not None:
                raise self._error
            return dataclasses.replace(self._result, streamed=None)

    def failure(self):
        """The apply's error if it has ended with one, else None."""
        with self._cond:
            return self._error if self._done else None

    def abort(self):
        """Close the pipe short (the reader's load fails); the apply fails at its next write.
        Nothing to do once the apply has ended.
        """
        with self._cond:
            writer = None if self._done else self._writer
        if writer is not None:
            writer.abort()

    def _raise_failure_first(self):
        """The apply's own error, when it ended: it says why better than a closed pipe."""
        self._thread.join(0.5)
        error = self.failure()
        if error is not None:
            raise error


def empty_launch(base, launch_dir, ram=None):
    """Launch files that resume the base itself: an empty layer and a memory
    copy (with `ram`, the base's ramfile.RamFile: a sparse image over it).
    """
    os.makedirs(launch_dir, exist_ok=True)
    disk_path = os.path.join(launch_dir, LAUNCH_DISK)
    memory_path = os.path.join(launch_dir, LAUNCH_MEMORY)
    try:
        with qcow2.Qcow2Writer(disk_path, base.disk_size, base.disk_path, 'raw'):
            pass
        if ram is None:
            _copy_file(base.memory_path, memory_path)
        else:
            pieces = sparse.Pieces(os.path.join(launch_dir, SPARSE_SPILL), base.memory_path,
                                   base.memory_size, base.memory_size)
            try:
                pieces.append_base(0, base.memory_size)
                sparse.write(pieces, ram, memory_path)
            finally:
                pieces.close()
    except BaseException:
        for path in (disk_path, memory_path):
            if os.path.exists(path):
                os.unlink(path)
        raise
    return Launch(disk_path, memory_path, {'base_id': base.base_id}, ram=ram)


def _copy_file(src, dst):
    with open(src, 'rb') as fin, open(dst, 'xb') as fout:
        size = os.fstat(fin.fileno()).st_size
        copied = 0
        while copied < size:   # copy_file_range shares extents where the filesystem can
            sent = os.copy_file_range(fin.fileno(), fout.fileno(), size - copied)
            if not sent:
                break
            copied += sent
