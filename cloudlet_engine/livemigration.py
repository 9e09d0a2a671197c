"""A running VM's memory, live: QEMU's pre-copy migration into a file we read as it grows.

Stock QEMU can migrate to a file descriptor while the guest runs: it sends
all RAM, then again the pages the guest dirtied meanwhile, iteration after
iteration, and pauses the guest only for the last, small, iteration
(`downtime-limit`) and the device state. libvirt's own save uses the same
stream with the guest paused first. So:

    libvirt header of the base's memory image + QEMU's live stream
        = a save image libvirt restores (a page sent twice: the later copy wins)

The fd is handed to QEMU through libvirt's monitor (`getfd`, then
`migrate fd:...`); the domain gets libvirt's `custom-monitor` taint.

Backpressure: `Spool` accepts QEMU's bytes only while it is at most `ahead`
bytes past what its reader consumed. The reader is the overlay builder,
which waits for the network, so QEMU's migration runs at the speed the
residue crosses the WAN, and QEMU keeps iterating while the guest runs
instead of pausing the guest early.

Where the pre-copy is not exact (`precopy_is_exact`), the migration runs
with the guest paused from its start (`stop_first`): the same stream, every
page sent once. Nothing here imports nova.
"""

import json
import os
import socket
import threading
import time

import libvirt
import libvirt_qemu

from cloudlet_engine import errors

RECV_BYTES = 1 << 20
POLL_SECONDS = 0.05
# The first QEMU whose pre-copy of a TCG guest re-sends every page the guest
# dirtied (virConnectGetVersion's number for 9.0.0). Before it, a bitmap sync
# clears the pages' migration dirty bits without re-arming the write traps in
# the vCPUs' TLBs, so a page written again through a TLB entry that outlived
# the sync is never sent again: QEMU commit 03bfc2188f ("physmem: Fix
# migration dirty bitmap coherency with TCG memory access"). doc/handoff.md,
# "The memory of a TCG guest", has what that did to handoffs here.
TCG_EXACT_PRECOPY_VERSION = 9000000
# QEMU statuses after which the guest no longer runs at the source.
STOPPED_STATUSES = ('pre-switchover', 'device', 'completed')
ENDED_STATUSES = ('completed', 'failed', 'cancelled')


class Spool:
    """A file that grows while its reader reads it (see `migstream.scan_stream`, file_size None)."""

    def __init__(self, path, prefix, ahead=4 << 20):
        self.path = path
        self.ahead = ahead
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._cond = threading.Condition()
        self._size = 0
        self._wanted = 0          # how far the reader has asked to read
        self.reader_waited = 0.0  # seconds the reader waited for QEMU's bytes
        self._ended = False
        self._error = None
        self._write(prefix)

    def _write(self, data):
        view = memoryview(data)
        while view:
            view = view[os.pwrite(self._fd, view, self._size + len(data) - len(view)):]
        with self._cond:
            self._size += len(data)
            self._cond.notify_all()

    # -- the writer side (a thread reading QEMU's socket) --

    def feed_from(self, sock, stop):
        """Copy `sock` into the file until EOF or `stop` is set; honours `ahead`."""
        try:
            while not stop.is_set():
                with self._cond:
                    while self._size - self._wanted >= self.ahead and not stop.is_set():
                        self._cond.wait(0.2)
                if stop.is_set():
                    break
                data = sock.recv(RECV_BYTES)
                if not data:
                    break
                self._write(data)
        except OSError as exc:
            with self._cond:
                self._error = 'reading the migration stream: %s' % exc
        finally:
            self.end()

    def end(self):
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    # -- the reader side --

    def pread(self, length, offset):
        """Up to `length` bytes at `offset`: waits for at least min(length, 64 KiB) of
        them (so a parser's large read window does not wait for bytes it may never
        need), fewer only at the end of the stream.
        """
        need = offset + min(length, 65536)
        with self._cond:
            self._wanted = max(self._wanted, offset + length)
            self._cond.notify_all()
            if self._size < need and not self._ended:
                waiting = time.monotonic()
                while self._size < need and not self._ended:
                    self._cond.wait(0.5)
                self.reader_waited += time.monotonic() - waiting
            if self._error:
                raise errors.HypervisorError(self._error)
            available = min(length, max(0, self._size - offset))
        return os.pread(self._fd, available, offset)

    def patch(self, offset, data):
        """Overwrite bytes already received (a RAM block's name, see migstream.scan_stream)."""
        if offset + len(data) > self._size:
            raise errors.HypervisorError('patch at %d past the %d bytes received' % (offset, self._size))
        os.pwrite(self._fd, data, offset)

    def size(self):
        """The final size: waits for the end of the stream."""
        with self._cond:
            while not self._ended:
                self._cond.wait(0.5)
            if self._error:
                raise errors.HypervisorError(self._error)
            return self._size

    @property
    def bytes_so_far(self):
        return self._size

    def close(self):
        self.end()
        os.close(self._fd)


def precopy_is_exact(virt_type, qemu_version):
    """Whether QEMU's pre-copy sends again every page the guest dirties.

    `virt_type`: the domain's type (`kvm`, or `qemu` for TCG), as nova's
    [libvirt] virt_type names it. `qemu_version`: virConnectGetVersion() of
    the domain's libvirt (major * 1 000 000 + minor * 1 000 + release).
    KVM's dirty log is exact; TCG's is from QEMU 9.0 on.
    """
    return virt_type != 'qemu' or qemu_version >= TCG_EXACT_PRECOPY_VERSION


def qemu_version(domain):
    """virConnectGetVersion() of the domain's libvirt: its QEMU's version number."""
    try:
        return domain.connect().getVersion()
    except libvirt.libvirtError as exc:
        raise errors.HypervisorError('cannot read the QEMU version: %s' % exc.get_error_message()) from exc


class LiveMigration:
    """QEMU's migration of `domain` into a `Spool`; the guest keeps running until QEMU's last
    iteration, or, with `stop_first`, is paused before QEMU sends anything.
    """

    def __init__(self, domain, spool, max_downtime_ms=300, stop_first=False):
        self.domain, self.spool = domain, spool
        self.max_downtime_ms = max_downtime_ms
        self.stop_first = stop_first
        self.fd_name = 'cloudlet-%d' % id(self)
        self.paused_at = None          # time.monotonic() when QEMU stopped the guest
        self.status = {}
        self._stop = threading.Event()
        self._sock = None
        self._threads = []

    def _qmp(self, command, arguments=None, files=None):
        request = {'execute': command}
        if arguments:
            request['arguments'] = arguments
        try:
            if files:
                reply = libvirt_qemu.qemuMonitorCommandWithFiles(self.domain, json.dumps(request), files, 0)[0]
            else:
                reply = libvirt_qemu.qemuMonitorCommand(self.domain, json.dumps(request), 0)
        except libvirt.libvirtError as exc:
            raise errors.HypervisorError('QEMU monitor command %s failed: %s'
                                         % (command, exc.get_error_message())) from exc
        reply = json.loads(reply)
        if 'error' in reply:
            raise errors.HypervisorError('QEMU refused %s: %s' % (command, reply['error'].get('desc')))
        return reply.get('return')

    def start(self):
        ours, qemus = socket.socketpair()
        self._sock = ours
        try:
            self._qmp('getfd', {'fdname': self.fd_name}, [qemus.fileno()])
        finally:
            qemus.close()
        self._qmp('migrate-set-parameters', {'downtime-limit': int(self.max_downtime_ms),
                                             # QEMU's default caps it at 32 MiB/s; the spool paces it.
                                             'max-bandwidth': 1 << 40})
        feeder = threading.Thread(target=self.spool.feed_from, args=(ours, self._stop),
                                  name='cloudlet-migration-feed', daemon=True)
        feeder.start()
        self._threads.append(feeder)
        if self.stop_first:
            # QEMU resumes after a failed migration only a guest it stopped itself:
            # the caller's roll back resumes this one (resume_if_paused).
            try:
                self.domain.suspend()
            except libvirt.libvirtError as exc:
                raise errors.HypervisorError('cannot pause the VM: %s' % exc.get_error_message()) from exc
            self.paused_at = time.monotonic()
        self._qmp('migrate', {'uri': 'fd:%s' % self.fd_name})
        watcher = threading.Thread(target=self._watch, name='cloudlet-migration-watch', daemon=True)
        watcher.start()
        self._threads.append(watcher)

    def _watch(self):
        """Notes when the guest stops; ends the spool if QEMU gives up."""
        while not self._stop.is_set():
            try:
                status = self._qmp('query-migrate') or {}
            except errors.HypervisorError:
                status = {'status': 'failed', 'error-desc': 'the domain went away'}
            self.status = status
            state = status.get('status')
            if state in STOPPED_STATUSES and self.paused_at is None:
                self.paused_at = time.monotonic()
            if state == 'completed' and status.get('downtime') is not None and not self.stop_first:
                # QEMU measured the stop itself; our poll may have seen it late.
                self.paused_at = min(self.paused_at, time.monotonic() - status['downtime'] / 1000.0)
            if state in ENDED_STATUSES:
                if state != 'completed':
                    self._stop.set()
                    self.spool.end()
                return
            time.sleep(POLL_SECONDS)

    def wait(self, timeout=60):
        """After the stream ended: QEMU's final status; HypervisorError unless completed."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0, deadline - time.monotonic()))
        state = self.status.get('status')
        if state != 'completed':
            raise errors.HypervisorError('QEMU migration of the memory ended %s: %s'
                                         % (state or 'without a status',
                                            self.status.get('error-desc', 'no reason given')))
        return self.status

    def cancel(self):
        """Stop the migration (thread-safe, idempotent); QEMU resumes the guest if it paused it."""
        self._stop.set()
        try:
            self._qmp('migrate_cancel')
        except errors.HypervisorError:
            pass
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.spool.end()

    def close(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if self._sock is not None:
            self._sock.close()
        try:
            self._qmp('closefd', {'fdname': self.fd_name})
        except errors.HypervisorError:
            pass    # QEMU closes a migration's fd itself when it is done with it


def resume_if_paused(domain):
    """Resume a guest a migration left paused (QEMU's postmigrate state); idempotent."""
    try:
        state, _reason = domain.state()
        if state == libvirt.VIR_DOMAIN_PAUSED:
            domain.resume()
            return True
    except libvirt.libvirtError as exc:
        raise errors.HypervisorError('cannot resume the VM: %s' % exc.get_error_message()) from exc
    return False
