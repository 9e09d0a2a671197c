"""The residue upload to the destination: a chunked PUT fed from a bounded buffer."""

import collections
import socket
import threading
import time

import requests
import urllib3.connection

from cloudlet_engine import outbound
from cloudlet_nova.handoff.remote import HandoffDestinationError
from cloudlet_nova.handoff.remote import response_message

# write() hands pieces of at most CHUNK_BYTES to the HTTP body; at most
# BUFFER_BYTES wait in memory (write() blocks beyond that).
CHUNK_BYTES = 64 * 1024
# Small on purpose: bytes queued here or unsent in the kernel are bytes the VM
# waits for after it paused (the residue's downtime), and the queue's
# backpressure paces QEMU's migration.
BUFFER_BYTES = 256 * 1024
# On a slow link less: at most QUEUE_SECONDS of the link's time (not under
# MIN_BUFFER_BYTES), so that what is queued when the VM pauses crosses fast.
QUEUE_SECONDS = 0.1
MIN_BUFFER_BYTES = 64 * 1024
NOTSENT_LOWAT_BYTES = 128 * 1024
BANDWIDTH_WINDOW = 2.0      # seconds of history bandwidth() averages over
BANDWIDTH_MIN_SPAN = 0.5    # seconds of history before bandwidth() answers
BUSY_FLOOR = 1e-3           # seconds: a connection that took a window's bytes at once

# Module attributes so that tests can run time-based loops without waiting.
clock = time.monotonic
sleep = time.sleep


class _Aborted(Exception):
    """Raised inside the HTTP body generator: the request is abandoned, its connection closed."""


class _TrackingAdapter(outbound.HTTPAdapter):
    """The outbound policy's HTTPAdapter, remembering the connections it opens so that abort() can shut them."""

    def __init__(self, connections, policy):
        self._connections = connections
        super().__init__(policy, max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        # Keep little unsent data in the kernel: what waits in a socket buffer
        # (Linux grows it to MBs) crosses the WAN only after the VM paused, and
        # the backpressure that paces QEMU's migration would come late.
        kwargs['socket_options'] = urllib3.connection.HTTPConnection.default_socket_options + [
            (socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, NOTSENT_LOWAT_BYTES)]
        super().init_poolmanager(*args, **kwargs)
        connections = self._connections

        def tracking(pool_class):
            class TrackingPool(pool_class):
                def _new_conn(self):
                    conn = super()._new_conn()
                    connections.append(conn)
                    return conn
            return TrackingPool
        manager = self.poolmanager
        manager.pool_classes_by_scheme = {scheme: tracking(cls)
                                          for scheme, cls in manager.pool_classes_by_scheme.items()}


class Upload:
    """A chunked `PUT` (the destination's `cloudlet-residue`), its body fed by write() from a bounded buffer.

    A background thread runs the request; its body is a generator that takes
    pieces from the buffer. write() blocks while the buffer is full (the
    sender is ahead of the network) and raises HandoffDestinationError when
    the request failed or nothing moved for `stall_timeout` seconds.

    bandwidth() is what the link can take, not what it was given: the bytes
    handed to the connection over the last BANDWIDTH_WINDOW seconds divided
    by the time the connection took to take them (the body generator waits
    in `yield` until the socket took the piece, and the socket takes a piece
    at once while less than TCP_NOTSENT_LOWAT is unsent). A link the sender
    keeps full reads at the rate the network drains it; a sender slower than
    the link (compressing with xz, say) reads far above its own pace, so the
    codec chooser is not led to the slower codec by its own slowness. None
    until BANDWIDTH_MIN_SPAN seconds of history exist.

    Timeouts: connecting takes at most `connect_timeout`; while the body is
    sent each socket write has `stall_timeout`; Glance's answer after the
    body, max(connect_timeout, stall_timeout). __exit__ without an exception
    ends the body and waits for Glance's answer (non-2xx raises); with one,
    it aborts: the body generator stops and the connection is shut down.

    The connection goes only where `policy` (an outbound.Policy; None: public
    addresses only) allows, and through no proxy: a refused host fails the
    upload (refused) before any connection.
    """

    def __init__(self, url, headers, *, verify=True, connect_timeout=30, stall_timeout=60,
                 buffer_bytes=BUFFER_BYTES, chunk_bytes=CHUNK_BYTES, describe=None, redact=str, policy=None):
        self.url = url
        self._headers = dict(headers)
        self._verify = verify
        self.connect_timeout = float(connect_timeout)
        self.stall_timeout = float(stall_timeout)
        self.response_timeout = max(self.connect_timeout, self.stall_timeout)
        self._buffer_bytes, self._chunk_bytes = int(buffer_bytes), int(chunk_bytes)
        self._describe = describe or 'upload to %s' % url
        self._redact = redact
        self._cond = threading.Condition()
        self._buffer = collections.deque()
        self._buffered = 0
        self._closed = self._aborted = self._done = False
        self._failure = None                    # HandoffDestinationError once the request failed
        self.status_code = None
        self.bytes_written = 0                  # accepted by write()
        self.bytes_sent = 0                     # handed to the connection by the body generator
        self._samples = collections.deque()     # (time, bytes_sent, busy)
        self._busy = 0.0                        # seconds the connection took to take the pieces
        self._last_progress = None
        self._connections = []
        policy = outbound.Policy() if policy is None else policy
        self._http = policy.session()           # trust_env off: no proxy, no .netrc
        adapter = _TrackingAdapter(self._connections, policy)
        self._http.mount('http://', adapter)
        self._http.mount('https://', adapter)
        self._thread = threading.Thread(target=self._run, name='cloudlet-handoff-upload', daemon=True)

    # ------------------------------------------------------------ context manager

    def __enter__(self):
        self._last_progress = clock()
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
            return False
        self.finish()
        return False

    # ------------------------------------------------------------ the request thread

    def _error(self, message, refused=False):
        return HandoffDestinationError(self._redact('%s: %s' % (self._describe, message)), refused=refused)

    def _run(self):
        failure = None
        try:
            response = self._http.put(self.url, data=self._body(), headers=self._headers, verify=self._verify,
                                      timeout=(self.connect_timeout, self.response_timeout),
                                      allow_redirects=False)
            with response:
                self.status_code = response.status_code
                if not 200 <= response.status_code < 300:
                    failure = self._error('%s (HTTP %d)' % (response_message(response), response.status_code),
                                          refused=400 <= response.status_code < 500)
                elif not self._closed:
                    failure = self._error('the destination answered before the upload ended (HTTP %d)'
                                          % response.status_code)
        except _Aborted:
            failure = self._error('aborted')
        except outbound.Refused as exc:
            failure = self._error(str(exc), refused=True)
        except requests.exceptions.Timeout as exc:
            failure = self._error('timed out (%s)' % exc.__class__.__name__)
        except Exception as exc:        # reported to write()/finish() in the caller's thread
            failure = self._error(str(exc) or exc.__class__.__name__)
        finally:
            with self._cond:
                self._failure = failure
                self._done = True
                self._cond.notify_all()
            self._http.close()

    def _body(self):
        """The chunked request body: pieces from the buffer until finish() (or _Aborted)."""
        # Connected and the headers sent: from here each socket write may take stall_timeout.
        for conn in list(self._connections):
            sock = getattr(conn, 'sock', None)
            if sock is not None:
                sock.settimeout(self.stall_timeout)
        with self._cond:
            self._samples.append((clock(), 0, 0.0))
        while True:
            with self._cond:
                while not self._buffer and not self._closed and not self._aborted:
                    self._cond.wait(1.0)
                if self._aborted:
                    raise _Aborted()
                if not self._buffer:
                    return
                piece = self._buffer.popleft()
                self._buffered -= len(piece)
                self._cond.notify_all()
            handed = clock()
            yield piece
            # Resumed: the connection has taken the piece.
            with self._cond:
                now = clock()
                self.bytes_sent += len(piece)
                self._busy += now - handed
                self._last_progress = now
                self._samples.append((now, self.bytes_sent, self._busy))
                self._prune(now)
                self._cond.notify_all()

    # ------------------------------------------------------------ the caller's side

    def _prune(self, now):
        while len(self._samples) >= 2 and self._samples[1][0] <= now - BANDWIDTH_WINDOW:
            self._samples.popleft()

    def bandwidth(self):
        """Upstream bits/s the link takes, over the last ~BANDWIDTH_WINDOW s (see the class doc), or None."""
        with self._cond:
            if not self._samples:
                return None
            now = clock()
            self._prune(now)
            since, sent, busy = self._samples[0]
            if now - since < BANDWIDTH_MIN_SPAN:
                return None
            moved = self.bytes_sent - sent
            if not moved:
                return 0.0          # nothing moved in the window: stalled
            return moved * 8 / max(self._busy - busy, BUSY_FLOOR)

    def _raise_if_failed(self):
        if self._failure is not None:
            raise self._failure
        if self._done:
            raise self._error('the request ended early')

    def _room(self):
        """Bytes the buffer may hold now (see QUEUE_SECONDS)."""
        bits_per_second = self.bandwidth()
        if not bits_per_second:
            return self._buffer_bytes
        return min(self._buffer_bytes, max(MIN_BUFFER_BYTES, int(bits_per_second * QUEUE_SECONDS / 8)))

    def _wait_for_room(self, size, waiting_since):
        """Under the lock: until `size` more bytes fit, or raise (failure, stall)."""
        while True:
            self._raise_if_failed()
            if self._aborted:
                raise self._error('aborted')
            if self._buffered == 0 or self._buffered + size <= self._room():
                return
            since = max(self._last_progress, waiting_since)
            remaining = since + self.stall_timeout - clock()
            if remaining <= 0:
                raise self._error('nothing moved for %d s (stalled)' % self.stall_timeout)
            self._cond.wait(min(remaining, 1.0))

    def write(self, data):
        """Queue `data` for the body; blocks while the buffer is full (see the class doc)."""
        if not self._thread.is_alive() and not self._done:
            raise RuntimeError('Upload.write() outside its with block')
        view = memoryview(data).cast('B')
        waiting_since = clock()
        for offset in range(0, len(view), self._chunk_bytes):
            piece = bytes(view[offset:offset + self._chunk_bytes])
            with self._cond:
                if self._closed:
                    raise ValueError('write() after the upload ended')
                self._wait_for_room(len(piece), waiting_since)
                self._buffer.append(piece)
                self._buffered += len(piece)
                self.bytes_written += len(piece)
                self._cond.notify_all()

    def finish(self):
        """End the body and wait for Glance's answer; raise HandoffDestinationError unless 2xx."""
        problem = None
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            waiting_since = clock()
            drained_at = None
            while not self._done:
                now = clock()
                if self._buffered:
                    remaining = max(self._last_progress, waiting_since) + self.stall_timeout - now
                    if remaining <= 0:
                        problem = 'nothing moved for %d s (stalled)' % self.stall_timeout
                        break
                else:
                    # The last piece may still be in flight, then Glance answers.
                    drained_at = drained_at or now
                    remaining = drained_at + self.stall_timeout + self.response_timeout + 5 - now
                    if remaining <= 0:
                        problem = 'no answer after the whole body was sent'
                        break
                self._cond.wait(min(remaining, 1.0))
        if problem:
            self.abort()
            raise self._error(problem)
        if self._failure is not None:
            raise self._failure

    def abort(self):
        """Abandon the request: stop the body, shut the connection down, let the thread end."""
        with self._cond:
            if not self._done:
                self._aborted = True
            self._cond.notify_all()
        for conn in list(self._connections):
            sock = getattr(conn, 'sock', None)
            if sock is not None:
                try:
                    # The plain socket's shutdown, also under TLS: it unblocks a send or
                    # recv in the request thread at once.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._http.close()
