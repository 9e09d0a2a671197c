"""A running VM's residue, streamed while the VM runs: the source side of a handoff.

The residue is an ordinary overlay (doc/overlay-format.md) of the VM against
its base, with `memory_size` null (a stream does not know its memory image's
size in advance), written in three phases so that the VM stops only for the
last, small one:

1. disk pre-copy, VM running: every chunk of the disk's top layer that is not
   the base's, read while QEMU may write it (a torn read is harmless: phase 3
   compares again);
2. memory, VM running: QEMU's pre-copy migration (livemigration.py) paced by
   the network; QEMU pauses the VM for its last iteration. Where that
   pre-copy is not exact (a TCG guest of QEMU before 9.0: `memory`), the VM
   is paused before QEMU sends its memory;
3. VM paused: the disk chunks that changed since phase 1 (or went back to the
   base's content) are sent again; a later item for a disk offset replaces an
   earlier one when the overlay is applied. When the disk file was not
   modified since phase 1 began (its mtime, ctime and size), there is nothing
   to compare: the VM waits for no walk of the whole disk layer.

Every segment's codec is chosen from the measured bandwidth
(adaptive.CodecChooser) unless one is forced. `run()` returns with the VM
paused at the source: the caller either deletes it (the destination took
over) or calls `resume_source()`. Nothing here imports nova.
"""

import dataclasses
import os
import threading
import time

from cloudlet_engine import adaptive
from cloudlet_engine import capture
from cloudlet_engine import chunks
from cloudlet_engine import codecs
from cloudlet_engine import create
from cloudlet_engine import crypto
from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import format as fmt
from cloudlet_engine import livemigration
from cloudlet_engine import migstream
from cloudlet_engine import nics
from cloudlet_engine import ramfile
from cloudlet_engine import savefile

# Smaller than an offline overlay's segments: what waits in a segment being
# built is part of what the VM waits for after it paused.
SEGMENT_DATA_BYTES = 256 << 10
SPOOL_AHEAD_BYTES = 4 << 20
MIGRATION_END_TIMEOUT = 120
# File timestamps move with the kernel's coarse clock: phase 1 starts only once
# the disk's mtime is this far behind, so a later write cannot share its tick.
STAMP_SETTLE_SECONDS = 0.05
STAMP_SETTLE_TRIES = 10
# How the memory crosses (LiveResidue's `memory`): `live`, QEMU's pre-copy with
# the VM running; `stopped`, the VM paused first; `auto`, live where the
# pre-copy is exact (livemigration.precopy_is_exact), else stopped.
MEMORY_TRANSFERS = ('auto', 'live', 'stopped')


@dataclasses.dataclass
class ResidueStats:
    bytes_out: int = 0
    memory_stream_bytes: int = 0
    disk_chunks_sent: int = 0        # phase 1
    disk_chunks_resent: int = 0      # phase 3: changed (or reverted to the base) since phase 1
    disk_pass_skipped: bool = False  # phase 3: the disk file was not modified since phase 1
    paused_at: float = None          # time.monotonic() when QEMU paused the VM
    precopy_seconds: float = 0.0     # phases 1 and 2 until the pause
    ready_wait_seconds: float = 0.0  # of those, waiting for the destination to be ready
    final_seconds: float = 0.0       # from the pause to the overlay's last byte
    # Where the memory phase's time went (the pipeline's slowest stage waits least):
    memory_seconds: float = 0.0      # QEMU's migration start to the stream's end
    qemu_wait_seconds: float = 0.0   # waiting for QEMU's bytes
    send_wait_seconds: float = 0.0   # blocked sending (the link, the destination's pace)
    memory_cpu_seconds: float = 0.0  # this thread's CPU time: the rest is waiting for a core
    bytes_after_pause: int = 0
    memory_transfer: str = None      # 'live' or 'stopped' (see MEMORY_TRANSFERS)
    codecs: dict = dataclasses.field(default_factory=dict)
    migration: dict = dataclasses.field(default_factory=dict)   # QEMU's last query-migrate
    overlay: create.CreateStats = None


class _CountingOut:
    def __init__(self, out):
        self.out, self.bytes, self.seconds = out, 0, 0.0

    def write(self, data):
        started = time.monotonic()
        self.out.write(data)
        self.seconds += time.monotonic() - started
        self.bytes += len(data)


class _DiskSender:
    """Disk chunks into the overlay, remembering what the launch disk holds where."""

    def __init__(self, base, builder, classifier):
        self.base, self.builder, self.classifier = base, builder, classifier
        self.sent = {}       # disk offset -> digest of what the launch disk now holds there

    def send(self, offset, data):
        """Send the chunk if the launch disk does not hold it already; True if sent."""
        digest = chunks.ZERO_DIGEST if data is None else chunks.digest(data)
        if self.sent.get(offset, self.base.disk_digest(offset)) == digest:
            return False
        self._forget(offset)
        self.sent[offset] = digest
        if digest == chunks.ZERO_DIGEST:
            self.builder.add(fmt.Item(fmt.DISK_ZERO, offset=offset))
            return True
        found = self.classifier.find(digest)
        if found is not None:
            self.builder.add(fmt.Item(fmt.DISK_COPY, offset=offset, area=found[0], source=found[1]))
            return True
        self.classifier.written[digest] = (fmt.AREA_LAUNCH_DISK, offset)
        self.builder.add(fmt.Item(fmt.DISK_DATA, offset=offset), data, self.builder.disk_counterpart(offset))
        return True

    def revert(self, offset):
        """The disk reads the base's chunk at `offset` again (e.g. a discarded cluster)."""
        base_digest = self.base.disk_digest(offset)
        if self.sent.get(offset, base_digest) == base_digest:
            return False
        self._forget(offset)
        self.sent[offset] = base_digest
        self.builder.add(fmt.Item(fmt.DISK_COPY, offset=offset, area=fmt.AREA_BASE_DISK, source=offset))
        return True

    def _forget(self, offset):
        # A later COPY must not name this offset as the source of its old content.
        old = self.sent.get(offset)
        if old is not None and self.classifier.written.get(old) == (fmt.AREA_LAUNCH_DISK, offset):
            del self.classifier.written[old]


def _disk_stamp(path):
    """(mtime, ctime, size) of the disk file."""
    st = os.stat(path)
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size


def _settled_disk_stamp(path):
    """The disk's stamp once the clock is STAMP_SETTLE_SECONDS past its last change,
    so that any later write changes it; None if the VM keeps writing for
    STAMP_SETTLE_TRIES tries (phase 3 then compares every chunk).
    """
    for _ in range(STAMP_SETTLE_TRIES):
        stamp = _disk_stamp(path)
        mtime, ctime, _size = stamp
        if time.time_ns() - max(mtime, ctime) > STAMP_SETTLE_SECONDS * 1e9:
            return stamp
        time.sleep(STAMP_SETTLE_SECONDS)
    return None


class LiveResidue:
    """The residue of a running domain (resumed or synthesized from `base`)."""

    def __init__(self, domain, base, workdir, *, codec='auto', max_downtime_ms=300, progress=None,
                 bandwidth=None, key=None, memory='auto'):
        if memory not in MEMORY_TRANSFERS:
            raise ValueError('memory transfer %r is not one of %s' % (memory, ', '.join(MEMORY_TRANSFERS)))
        self.domain, self.base, self.workdir = domain, base, workdir
        self.memory = memory
        # Encrypts the residue (format version 2); checked now, before anything runs.
        self._key = None if key is None else crypto.check_key(key)
        self.codec, self.max_downtime_ms = codec, max_downtime_ms
        self.progress, self.bandwidth = progress, bandwidth
        self.stats = ResidueStats()
        self._migration = None
        self._cancelled = threading.Event()
        self._paused_by_us = False

    def run(self, out, before_memory=None):
        """Stream the residue into out.write(); returns ResidueStats with the VM paused.

        before_memory(): called after the disk pre-copy, before QEMU's
        migration starts (the handoff waits there for the destination to be
        ready: the VM must not pause before the destination can take it).
        """
        live_xml = self.domain.XMLDesc(0)
        disk_path = capture.domain_disk_path(live_xml)
        template = savefile.read_save_image(self.base.memory_path)
        with open(self.base.memory_path, 'rb') as base_memory:
            prefix = base_memory.read(template.stream_offset)
        counted = _CountingOut(out)
        chooser = None
        if self.codec == 'auto':
            chooser = adaptive.CodecChooser(self.bandwidth)
            codec = chooser
        else:
            codec = codecs.codec_by_name(self.codec)
        overlay_stats = create.CreateStats()
        # The NICs still plugged go along in the memory stream: the destination
        # restores the VM with the same ones (nics.py).
        meta = {'base_id': self.base.base_id, 'base_name': self.base.name, 'disk_size': self.base.disk_size,
                'memory_size': None, 'codec': self.codec, 'kind': nics.RESIDUE_KIND,
                'nics': nics.guest_nics(live_xml),
                'created_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
        started = time.monotonic()
        writer = fmt.OverlayWriter(counted, meta, key=self._key)
        builder = create.SegmentBuilder(writer, self.base, codec, None, self.workdir, overlay_stats,
                                        segment_bytes=SEGMENT_DATA_BYTES)
        classifier = create.Classifier(self.base, overlay_stats)
        disk = _DiskSender(self.base, builder, classifier)
        spool = livemigration.Spool(os.path.join(self.workdir, 'memory.stream'), prefix, SPOOL_AHEAD_BYTES)
        try:
            stamp = _settled_disk_stamp(disk_path)
            self._precopy_disk(disk, disk_path)
            self._check_cancelled()
            if before_memory is not None:
                builder.flush()         # the disk pre-copy goes out while the destination gets ready
                waited = time.monotonic()
                before_memory()
                self.stats.ready_wait_seconds = time.monotonic() - waited
                self._check_cancelled()
            self.stats.memory_transfer = self._memory_transfer(live_xml)
            self._migration = livemigration.LiveMigration(self.domain, spool, self.max_downtime_ms,
                                                          stop_first=self.stats.memory_transfer == 'stopped')
            self._paused_by_us = True      # from here on a failure must resume the VM
            self._migration.start()
            memory_started, sending_before = time.monotonic(), counted.seconds
            cpu_before = time.thread_time()
            self._send_memory(builder, classifier, spool, len(prefix))
            self.stats.memory_cpu_seconds = time.thread_time() - cpu_before
            self.stats.memory_seconds = time.monotonic() - memory_started
            self.stats.send_wait_seconds = counted.seconds - sending_before
            self.stats.qemu_wait_seconds = spool.reader_waited
            self.stats.migration = self._migration.wait(MIGRATION_END_TIMEOUT)
            self.stats.paused_at = self._migration.paused_at or time.monotonic()
            bytes_at_pause = counted.bytes
            if stamp is not None and _disk_stamp(disk_path) == stamp:
                self.stats.disk_pass_skipped = True
            else:
                self._final_disk_pass(disk, disk_path)
            builder.flush()
            writer.finish()
        except BaseException:
            self.cancel()
            raise
        finally:
            builder.close()
            self.stats.memory_stream_bytes = spool.bytes_so_far - len(prefix)
            spool.close()
            if self._migration is not None:
                self._migration.close()
            try:
                os.unlink(spool.path)
            except FileNotFoundError:
                pass
        ended = time.monotonic()
        self.stats.bytes_out = counted.bytes
        self.stats.bytes_after_pause = counted.bytes - bytes_at_pause
        self.stats.precopy_seconds = self.stats.paused_at - started
        self.stats.final_seconds = ended - self.stats.paused_at
        self.stats.codecs = dict(chooser.chosen) if chooser else {self.codec: overlay_stats.segments}
        self.stats.overlay = overlay_stats
        return self.stats

    def _memory_transfer(self, live_xml):
        if self.memory != 'auto':
            return self.memory
        exact = livemigration.precopy_is_exact(domainxml.virt_type(live_xml),
                                               livemigration.qemu_version(self.domain))
        return 'live' if exact else 'stopped'

    def _precopy_disk(self, disk, disk_path):
        """Phase 1. The VM writes meanwhile: any error here only means phase 3 sends more."""
        try:
            for offset, data in create.iter_disk_chunks(self.base, disk_path):
                self._check_cancelled()
                self.stats.disk_chunks_sent += disk.send(offset, data)
        except errors.WrongBase:
            raise
        except (errors.CloudletError, OSError):
            pass

    def _send_memory(self, builder, classifier, spool, prefix_len):
        # A VM restored over its base's RAM file migrates that block under
        # the backend's id; the residue names it as the base does.
        pieces = migstream.scan_stream(spool, prefix_len, None, rename={ramfile.BACKEND_ID: ramfile.BLOCK})
        try:
            create.add_memory_pieces(builder, classifier, spool.pread, prefix_len, pieces)
        except errors.CloudletError as exc:
            status = self._migration.status if self._migration else {}
            if self._cancelled.is_set():
                raise errors.HypervisorError('the handoff was cancelled') from exc
            if status.get('status') in ('failed', 'cancelled'):
                raise errors.HypervisorError('QEMU migration of the memory %s: %s'
                                             % (status['status'], status.get('error-desc', 'no reason given'))
                                             ) from exc
            raise

    def _final_disk_pass(self, disk, disk_path):
        """Phase 3, VM paused: what changed since phase 1; offsets the top layer no
        longer allocates (discarded) read from the base again.
        """
        allocated = set()
        for offset, data in create.iter_disk_chunks(self.base, disk_path):
            allocated.add(offset)
            self.stats.disk_chunks_resent += disk.send(offset, data)
        for offset in [o for o in disk.sent if o not in allocated]:
            self.stats.disk_chunks_resent += disk.revert(offset)

    def _check_cancelled(self):
        if self._cancelled.is_set():
            raise errors.HypervisorError('the handoff was cancelled')

    def cancel(self):
        """Stop a running migration (thread-safe); QEMU resumes the guest if the migration had not ended."""
        self._cancelled.set()
        if self._migration is not None:
            self._migration.cancel()

    def resume_source(self):
        """Resume the VM if the handoff paused it (idempotent): after a failure past `run()`."""
        if self._paused_by_us:
            livemigration.resume_if_paused(self.domain)
