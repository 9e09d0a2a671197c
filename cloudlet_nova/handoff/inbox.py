"""The receiving side of a handoff: the residue arriving on the destination compute host.

The destination server's spawn (cloudlet_nova.virt.launch) fetches the base
and its RAM file first, then opens the handoff's `Inbox` and applies the
residue from it as it arrives (apply.apply_overlay reads it like a file).
nova-api relays the source's streaming upload (api_extensions.residue) into
the inbox through `residue_data` RPC calls on topic `cloudlet`
(cloudlet_nova.handoff.rpc). The source asks `status()`, through the same
path, before it starts the VM's memory migration: the destination is
*ready* once its base is in place.

Offsets make the relay exact: a piece is accepted only at the offset the
inbox expects. The buffer is bounded (`buffer_bytes`): receive() waits while
it is full, so the apply paces the relay, which paces the source. Nothing
here imports nova.
"""

import collections
import threading
import time

from cloudlet_engine import errors

WAITING = 'waiting'        # no spawn has opened the inbox yet (building, fetching the base)
READY = 'ready'            # opened: the base is in place, no byte received yet
RECEIVING = 'receiving'
RECEIVED = 'received'      # the last byte is in; the spawn applies and restores
FAILED = 'failed'

BUFFER_BYTES = 8 << 20
KEEP_FINISHED = 64         # states of finished inboxes kept for status()

clock = time.monotonic     # tests replace it


class InboxError(errors.CloudletError):
    """A piece the inbox refuses (wrong offset, after the end, failed inbox)."""


class Inbox:
    """One handoff's residue bytes, from the relay (receive) to the apply (read)."""

    def __init__(self, handoff_id, idle_timeout, buffer_bytes=BUFFER_BYTES):
        self.handoff_id = handoff_id
        self.idle_timeout = idle_timeout
        self.buffer_bytes = buffer_bytes
        self._cond = threading.Condition()
        self._pieces = collections.deque()
        self._head = 0             # bytes of the first piece already read
        self._buffered = 0
        self.received = 0          # bytes accepted
        self.consumed = 0          # bytes read by the apply
        self.opened_at = clock()
        # Which side waits for the other: the apply for bytes, or the relay for room.
        self.apply_waited = 0.0
        self.relay_waited = 0.0
        self._ended = False
        self.reason = None         # why it failed
        self._last_piece = clock()

    @property
    def state(self):
        if self.reason is not None:
            return FAILED
        if self._ended:
            return RECEIVED
        return RECEIVING if self.received else READY

    def status(self):
        with self._cond:
            return {'state': self.state, 'bytes_received': self.received, 'reason': self.reason}

    # -- the relay's side --

    def receive(self, offset, data, end=False, timeout=30.0):
        """Accept `data` at `offset` (and the end of the stream if `end`); the status.

        Waits up to `timeout` s for room in the buffer; InboxError when the
        inbox failed, the offset is not the next one, or it stays full.
        """
        deadline = clock() + timeout
        with self._cond:
            while True:
                if self.reason is not None:
                    raise InboxError('the destination gave up the residue: %s' % self.reason)
                if offset != self.received:
                    raise InboxError('residue piece at offset %d, expected %d' % (offset, self.received))
                if self._ended and data:
                    raise InboxError('residue bytes after its end')
                if not data or self._buffered == 0 or self._buffered + len(data) <= self.buffer_bytes:
                    break
                remaining = deadline - clock()
                if remaining <= 0:
                    raise InboxError('the residue apply took nothing for %d s' % timeout)
                waiting = clock()
                self._cond.wait(min(remaining, 1.0))
                self.relay_waited += clock() - waiting
            if data:
                self._pieces.append(bytes(data))
                self._buffered += len(data)
                self.received += len(data)
                self._last_piece = clock()
            if end:
                self._ended = True
            self._cond.notify_all()
            return {'state': self.state, 'bytes_received': self.received, 'reason': self.reason}

    def fail(self, reason):
        """Give the residue up (either side; idempotent): readers and writers raise."""
        with self._cond:
            if self.reason is None and not (self._ended and not self._pieces and self.consumed == self.received):
                self.reason = str(reason)
            self._pieces.clear()
            self._head = 0
            self._buffered = 0
            self._cond.notify_all()

    # -- the apply's side: a file-like object --

    def read(self, size=-1):
        """Up to `size` bytes (all buffered ones for -1); b'' at the end of the stream.

        SourceError when the inbox failed or no byte came for `idle_timeout` s.
        """
        with self._cond:
            while not self._pieces:
                if self.reason is not None:
                    raise errors.SourceError('handoff %s: %s' % (self.handoff_id, self.reason))
                if self._ended:
                    return b''
                remaining = self._last_piece + self.idle_timeout - clock()
                if remaining <= 0:
                    self.reason = 'no residue byte for %d s' % self.idle_timeout
                    self._cond.notify_all()
                    raise errors.SourceError('handoff %s: %s ([cloudlet] handoff_receive_timeout)'
                                             % (self.handoff_id, self.reason))
                waiting = clock()
                self._cond.wait(min(remaining, 1.0))
                self.apply_waited += clock() - waiting
            out = []
            want = self._buffered if size is None or size < 0 else size
            while self._pieces and want > 0:
                # The relay delivers pieces of up to 1 MiB and the overlay reader reads
                # small headers: take from the head piece at an offset, never copy its rest.
                piece, start = self._pieces[0], self._head
                take = min(len(piece) - start, want)
                out.append(piece[start:start + take])
                if start + take == len(piece):
                    self._pieces.popleft()
                    self._head = 0
                else:
                    self._head = start + take
                want -= take
                self._buffered -= take
            data = b''.join(out)
            self.consumed += len(data)
            self._cond.notify_all()
            return data

    def close(self):
        pass

    def describe_pace(self):
        """A log line's worth: how long the residue took here and which side waited."""
        return ('%.1f MB in %.1f s; the apply waited %.1f s for bytes, the relay %.1f s for room'
                % (self.received / 1e6, clock() - self.opened_at, self.apply_waited, self.relay_waited))


class Inboxes:
    """The inboxes of one compute host (CloudletDriver holds one)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open = {}
        self._finished = collections.OrderedDict()
        self._given_up = collections.OrderedDict()     # aborted before their spawn opened them
        self._refusing = None          # fail_all's reason: nova-compute is stopping

    def open(self, handoff_id, idle_timeout):
        """A new inbox for `handoff_id` (the spawn's; one at a time)."""
        with self._lock:
            if self._refusing is not None:
                # A spawn that comes after fail_all would wait idle_timeout for nothing.
                raise InboxError('handoff %s: %s' % (handoff_id, self._refusing))
            if handoff_id in self._open:
                raise InboxError('handoff %s already has an inbox on this host' % handoff_id)
            given_up = self._given_up.pop(handoff_id, None)
            if given_up is not None:
                # The relay gave up before the spawn was ready: fail the spawn at once.
                self._finished[handoff_id] = given_up
                raise InboxError('the residue of handoff %s was given up: %s'
                                 % (handoff_id, given_up['reason']))
            self._finished.pop(handoff_id, None)
            inbox = self._open[handoff_id] = Inbox(handoff_id, idle_timeout)
            return inbox

    def close(self, inbox, reason=None):
        """The spawn is done with it: failed with `reason`, or the whole residue applied."""
        if reason is not None:
            inbox.fail(reason)
        with self._lock:
            if self._open.get(inbox.handoff_id) is inbox:
                del self._open[inbox.handoff_id]
            self._finished[inbox.handoff_id] = inbox.status()
            while len(self._finished) > KEEP_FINISHED:
                self._finished.popitem(last=False)

    def _get(self, handoff_id):
        with self._lock:
            return self._open.get(handoff_id), self._finished.get(handoff_id)

    def status(self, handoff_id):
        inbox, finished = self._get(handoff_id)
        if inbox is not None:
            return inbox.status()
        with self._lock:
            finished = finished or self._given_up.get(handoff_id)
        return dict(finished) if finished else {'state': WAITING, 'bytes_received': 0, 'reason': None}

    def receive(self, handoff_id, offset, data, end=False, timeout=30.0):
        """Into the open inbox; {'state': 'waiting'} (nothing taken) while there is none."""
        inbox, finished = self._get(handoff_id)
        if inbox is None:
            if finished:
                raise InboxError('the residue of handoff %s is no longer received here (%s%s)'
                                 % (handoff_id, finished['state'],
                                    ': %s' % finished['reason'] if finished.get('reason') else ''))
            return {'state': WAITING, 'bytes_received': 0, 'reason': None}
        return inbox.receive(offset, data, end, timeout)

    def abort(self, handoff_id, reason):
        """Fail the handoff's inbox, or the one its spawn will open (it then fails at once)."""
        with self._lock:
            inbox = self._open.get(handoff_id)
            if inbox is None:
                self._given_up[handoff_id] = {'state': FAILED, 'bytes_received': 0, 'reason': str(reason)}
                while len(self._given_up) > KEEP_FINISHED:
                    self._given_up.popitem(last=False)
                return
        inbox.fail(reason)

    def fail_all(self, reason):
        """Fail the open inboxes, and refuse to open new ones from now on."""
        with self._lock:
            self._refusing = str(reason)
            inboxes = list(self._open.values())
        for inbox in inboxes:
            inbox.fail(reason)
