"""cloudlet_nova.handoff.inbox: a handoff's residue arriving on the destination compute host.

The relay's side (receive) and the apply's side (read) run in real threads
against the real Inbox. Waits are short: small timeouts and buffers, and a
clock that runs ahead of time.monotonic() where a test needs time to pass.
"""

import random
import threading
import time

import pytest

from cloudlet_engine import errors
from cloudlet_nova.handoff import inbox as inbox_mod
from cloudlet_nova.handoff.inbox import Inbox
from cloudlet_nova.handoff.inbox import InboxError
from cloudlet_nova.handoff.inbox import Inboxes

HANDOFF_ID = '3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a'
OTHER_ID = '7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d'


def _status(state, received=0, reason=None):
    return {'state': state, 'bytes_received': received, 'reason': reason}


class _Thread(threading.Thread):
    """Runs func(*args) and keeps its result or exception."""

    def __init__(self, func, *args, **kwargs):
        super().__init__(daemon=True)
        self._call = (func, args, kwargs)
        self.result = self.error = None
        self.start()

    def run(self):
        func, args, kwargs = self._call
        try:
            self.result = func(*args, **kwargs)
        except Exception as exc:   # noqa: BLE001 - the test looks at it
            self.error = exc

    def outcome(self, timeout=5):
        self.join(timeout)
        assert not self.is_alive(), 'still blocked after %s s' % timeout
        return self.result, self.error


def _blocked(thread, seconds=0.2):
    """The thread is still waiting after `seconds`."""
    thread.join(seconds)
    return thread.is_alive()


@pytest.fixture
def skew(monkeypatch):
    """inbox.clock runs `skew[0]` seconds ahead of time.monotonic(): a test moves it on."""
    ahead = [0.0]
    monkeypatch.setattr(inbox_mod, 'clock', lambda: time.monotonic() + ahead[0])
    return ahead


# ---------------------------------------------------------------- Inbox: states and offsets


def test_a_new_inbox_is_ready_then_receiving_then_received():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    assert inbox.state == inbox_mod.READY
    assert inbox.status() == _status('ready')
    assert inbox.receive(0, b'abc') == _status('receiving', 3)
    assert inbox.receive(3, b'defg') == _status('receiving', 7)
    assert inbox.receive(7, b'', end=True) == _status('received', 7)
    assert inbox.status() == _status('received', 7)
    assert inbox.read() == b'abcdefg'
    assert inbox.read() == b''
    assert inbox.read(100) == b''
    assert (inbox.received, inbox.consumed) == (7, 7)


def test_the_last_piece_may_carry_the_end():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'all', end=True)
    assert inbox.state == inbox_mod.RECEIVED
    assert (inbox.read(), inbox.read()) == (b'all', b'')


def test_an_empty_piece_keeps_an_inbox_ready():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    assert inbox.receive(0, b'') == _status('ready')


@pytest.mark.parametrize('offset', [0, 2, 4, 100])
def test_a_piece_at_another_offset_than_the_next_is_refused(offset):
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'abc')
    with pytest.raises(InboxError, match='residue piece at offset %d, expected 3' % offset):
        inbox.receive(offset, b'xyz')
    assert inbox.status() == _status('receiving', 3)      # nothing taken, nothing failed
    inbox.receive(3, b'd', end=True)
    assert inbox.read() == b'abcd'


def test_the_first_piece_must_be_at_offset_0():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    with pytest.raises(InboxError, match='at offset 1, expected 0'):
        inbox.receive(1, b'x')
    assert inbox.status() == _status('ready')


def test_an_end_at_another_offset_is_refused():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'abc')
    with pytest.raises(InboxError, match='expected 3'):
        inbox.receive(2, b'', end=True)
    assert inbox.state == inbox_mod.RECEIVING


def test_bytes_after_the_end_are_refused():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'ab', end=True)
    with pytest.raises(InboxError, match='residue bytes after its end'):
        inbox.receive(2, b'c')
    with pytest.raises(InboxError, match='after its end'):
        inbox.receive(2, b'c', end=True)
    # The end again (a repeated last call) changes nothing.
    assert inbox.receive(2, b'', end=True) == _status('received', 2)
    assert (inbox.read(), inbox.read()) == (b'ab', b'')


# ---------------------------------------------------------------- Inbox: the apply's reads


def test_read_returns_the_bytes_in_order_across_pieces():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    for offset, piece in ((0, b'012'), (3, b'3456'), (7, b'789')):
        inbox.receive(offset, piece)
    assert inbox.read(2) == b'01'
    assert inbox.read(2) == b'23'          # the rest of the first piece, then the second's first
    assert inbox.read(4) == b'4567'
    assert inbox.consumed == 8
    assert inbox.read(-1) == b'89'
    inbox.receive(10, b'ab', end=True)
    assert inbox.read(None) == b'ab'
    assert inbox.read() == b''


def test_read_returns_what_is_there_without_waiting_for_size():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'abc')
    started = time.monotonic()
    assert inbox.read(1 << 20) == b'abc'
    assert time.monotonic() - started < 1


def test_read_waits_for_the_next_piece():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    reader = _Thread(inbox.read)
    assert _blocked(reader)
    inbox.receive(0, b'late')
    assert reader.outcome() == (b'late', None)


def test_read_waits_for_the_end():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'x')
    assert inbox.read() == b'x'
    reader = _Thread(inbox.read)
    assert _blocked(reader)
    inbox.receive(1, b'', end=True)
    assert reader.outcome() == (b'', None)


def test_the_whole_stream_arrives_intact_through_a_small_buffer():
    data = random.Random(7).randbytes(300000)
    inbox = Inbox(HANDOFF_ID, idle_timeout=10, buffer_bytes=4096)
    sizes = random.Random(8)

    def relay():
        offset = 0
        while offset < len(data):
            piece = data[offset:offset + sizes.randint(1, 3000)]
            inbox.receive(offset, piece, end=offset + len(piece) == len(data), timeout=5)
            offset += len(piece)
    writer = _Thread(relay)
    out = bytearray()
    while True:
        piece = inbox.read(sizes.randint(1, 5000))
        if not piece:
            break
        out += piece
    assert writer.outcome() == (None, None)
    assert bytes(out) == data
    assert inbox.status() == _status('received', len(data))


# ---------------------------------------------------------------- Inbox: the bounded buffer


def test_a_full_buffer_makes_receive_wait_for_the_apply():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10, buffer_bytes=4)
    inbox.receive(0, b'abcd')
    writer = _Thread(inbox.receive, 4, b'ef', timeout=5)
    assert _blocked(writer)
    assert inbox.received == 4
    assert inbox.read(1) == b'a'           # 3 + 2 > 4: still full
    assert _blocked(writer)
    assert inbox.read(1) == b'b'           # 2 + 2 fit
    assert writer.outcome() == (_status('receiving', 6), None)
    assert inbox.read() == b'cdef'


def test_the_pace_names_the_side_that_waited():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10, buffer_bytes=4)
    reader = _Thread(inbox.read)
    assert _blocked(reader, 0.3)                   # the apply waits for bytes
    inbox.receive(0, b'abcd')
    assert reader.outcome() == (b'abcd', None)
    inbox.receive(4, b'efgh')
    writer = _Thread(inbox.receive, 8, b'ij', timeout=5)
    assert _blocked(writer, 0.3)                   # the relay waits for room
    assert inbox.read() == b'efgh'
    writer.outcome()
    assert inbox.apply_waited >= 0.25
    assert inbox.relay_waited >= 0.25
    pace = inbox.describe_pace()
    assert pace.startswith('0.0 MB in ')
    assert 'the apply waited %.1f s for bytes, the relay %.1f s for room' % (
        inbox.apply_waited, inbox.relay_waited) in pace


def test_a_full_buffer_fails_receive_after_its_timeout():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10, buffer_bytes=4)
    inbox.receive(0, b'abcd')
    started = time.monotonic()
    with pytest.raises(InboxError, match='the residue apply took nothing for'):
        inbox.receive(4, b'e', timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 3
    # The piece was not taken; the relay may send it again.
    assert inbox.status() == _status('receiving', 4)
    assert inbox.read() == b'abcd'
    assert inbox.receive(4, b'e') == _status('receiving', 5)


def test_a_full_buffer_times_out_on_the_inbox_clock(skew):
    inbox = Inbox(HANDOFF_ID, idle_timeout=1000, buffer_bytes=4)
    inbox.receive(0, b'abcd')
    writer = _Thread(inbox.receive, 4, b'e', timeout=30)
    assert _blocked(writer)
    skew[0] += 31                         # the writer notices within its 1 s wait
    result, error = writer.outcome()
    assert result is None and isinstance(error, InboxError)
    assert 'took nothing for 30 s' in str(error)


def test_a_piece_larger_than_the_buffer_is_taken_into_an_empty_buffer():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10, buffer_bytes=4)
    assert inbox.receive(0, b'0123456789', timeout=0.1) == _status('receiving', 10)
    with pytest.raises(InboxError, match='took nothing'):
        inbox.receive(10, b'x', timeout=0.1)
    assert inbox.read() == b'0123456789'


def test_an_end_without_bytes_is_taken_into_a_full_buffer():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10, buffer_bytes=4)
    inbox.receive(0, b'abcd')
    assert inbox.receive(4, b'', end=True, timeout=0.1) == _status('received', 4)


# ---------------------------------------------------------------- Inbox: failures


def test_fail_wakes_a_waiting_reader_with_a_source_error():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    reader = _Thread(inbox.read)
    assert _blocked(reader)
    inbox.fail('the relay gave up')
    result, error = reader.outcome()
    assert result is None and isinstance(error, errors.SourceError)
    assert str(error) == 'handoff %s: the relay gave up' % HANDOFF_ID
    assert inbox.status() == _status('failed', 0, 'the relay gave up')


def test_fail_wakes_a_waiting_writer_with_an_inbox_error():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10, buffer_bytes=4)
    inbox.receive(0, b'abcd')
    writer = _Thread(inbox.receive, 4, b'e', timeout=10)
    assert _blocked(writer)
    inbox.fail('the apply failed: bad overlay')
    result, error = writer.outcome()
    assert result is None and isinstance(error, InboxError)
    assert str(error) == 'the destination gave up the residue: the apply failed: bad overlay'


def test_a_failed_inbox_drops_its_bytes_and_refuses_more():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'abc')
    inbox.fail(ValueError('boom'))
    assert inbox.status() == _status('failed', 3, 'boom')
    with pytest.raises(errors.SourceError, match='boom'):
        inbox.read()
    with pytest.raises(InboxError, match='gave up the residue: boom'):
        inbox.receive(3, b'd')
    with pytest.raises(InboxError, match='gave up'):
        inbox.receive(3, b'', end=True)


def test_fail_keeps_the_first_reason():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.fail('first')
    inbox.fail('second')
    assert inbox.reason == 'first'


def test_fail_after_the_whole_residue_was_read_keeps_it_received():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'abc', end=True)
    assert inbox.read() == b'abc'
    inbox.fail('the restore failed')
    assert inbox.status() == _status('received', 3)
    assert inbox.read() == b''


def test_fail_with_bytes_still_unread_after_the_end_fails():
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'abc', end=True)
    assert inbox.read(1) == b'a'
    inbox.fail('the apply stopped')
    assert inbox.status() == _status('failed', 3, 'the apply stopped')
    with pytest.raises(errors.SourceError):
        inbox.read()


def test_read_fails_after_idle_timeout_without_a_byte(skew):
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    skew[0] += 9.8
    started = time.monotonic()
    with pytest.raises(errors.SourceError) as caught:
        inbox.read()
    assert 0.1 <= time.monotonic() - started < 3          # it waited the last 0.2 s
    assert str(caught.value) == ('handoff %s: no residue byte for 10 s ([cloudlet] handoff_receive_timeout)'
                                 % HANDOFF_ID)
    assert inbox.status() == _status('failed', 0, 'no residue byte for 10 s')
    with pytest.raises(InboxError, match='gave up the residue: no residue byte for 10 s'):
        inbox.receive(0, b'too late')


def test_the_idle_timeout_counts_from_the_last_piece(skew):
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    skew[0] += 8
    inbox.receive(0, b'a')
    assert inbox.read() == b'a'
    skew[0] += 5                          # 13 s after the open, 5 s after the piece
    reader = _Thread(inbox.read)
    assert _blocked(reader)
    inbox.receive(1, b'b')
    assert reader.outcome() == (b'b', None)
    skew[0] += 11                         # then 11 s without a byte
    with pytest.raises(errors.SourceError, match='no residue byte for 10 s'):
        inbox.read()


def test_a_waiting_reader_times_out(skew):
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    reader = _Thread(inbox.read)
    assert _blocked(reader)
    skew[0] += 11                         # the reader notices within its 1 s wait
    result, error = reader.outcome()
    assert isinstance(error, errors.SourceError) and 'no residue byte' in str(error)


def test_buffered_bytes_are_read_even_past_the_idle_timeout(skew):
    inbox = Inbox(HANDOFF_ID, idle_timeout=10)
    inbox.receive(0, b'abc')
    skew[0] += 60
    assert inbox.read() == b'abc'


# ---------------------------------------------------------------- Inboxes: one host's


def test_a_handoff_without_an_inbox_is_waiting():
    inboxes = Inboxes()
    assert inboxes.status(HANDOFF_ID) == _status('waiting')


def test_receive_without_an_open_inbox_takes_nothing():
    inboxes = Inboxes()
    assert inboxes.receive(HANDOFF_ID, 0, b'early') == _status('waiting')
    inbox = inboxes.open(HANDOFF_ID, idle_timeout=10)
    assert inboxes.status(HANDOFF_ID) == _status('ready')
    # The early piece was not kept: the relay sends it again, at the same offset.
    assert inboxes.receive(HANDOFF_ID, 0, b'early') == _status('receiving', 5)
    assert inboxes.receive(HANDOFF_ID, 5, b'!', end=True) == _status('received', 6)
    assert inboxes.status(HANDOFF_ID) == _status('received', 6)
    assert inbox.read() == b'early!'
    assert (inbox.handoff_id, inbox.idle_timeout) == (HANDOFF_ID, 10)


def test_receive_passes_its_timeout_to_the_inbox():
    inboxes = Inboxes()
    inbox = inboxes.open(HANDOFF_ID, idle_timeout=10)
    inbox.buffer_bytes = 2
    inboxes.receive(HANDOFF_ID, 0, b'ab')
    with pytest.raises(InboxError, match='took nothing'):
        inboxes.receive(HANDOFF_ID, 2, b'c', timeout=0.1)


def test_a_second_inbox_for_the_same_handoff_is_refused():
    inboxes = Inboxes()
    inboxes.open(HANDOFF_ID, idle_timeout=10)
    with pytest.raises(InboxError, match='handoff %s already has an inbox on this host' % HANDOFF_ID):
        inboxes.open(HANDOFF_ID, idle_timeout=10)


def test_inboxes_of_two_handoffs_are_apart():
    inboxes = Inboxes()
    first = inboxes.open(HANDOFF_ID, idle_timeout=10)
    second = inboxes.open(OTHER_ID, idle_timeout=10)
    inboxes.receive(HANDOFF_ID, 0, b'one')
    inboxes.receive(OTHER_ID, 0, b'second')
    assert inboxes.status(HANDOFF_ID)['bytes_received'] == 3
    assert inboxes.status(OTHER_ID)['bytes_received'] == 6
    inboxes.abort(OTHER_ID, 'gone')
    assert (first.read(), first.state) == (b'one', inbox_mod.RECEIVING)
    assert second.state == inbox_mod.FAILED


def test_close_after_the_apply_keeps_the_final_status():
    inboxes = Inboxes()
    inbox = inboxes.open(HANDOFF_ID, idle_timeout=10)
    inboxes.receive(HANDOFF_ID, 0, b'residue', end=True)
    assert inbox.read() == b'residue' and inbox.read() == b''
    inboxes.close(inbox)
    assert inboxes.status(HANDOFF_ID) == _status('received', 7)
    with pytest.raises(InboxError) as caught:
        inboxes.receive(HANDOFF_ID, 7, b'', end=True)
    assert str(caught.value) == ('the residue of handoff %s is no longer received here (received)'
                                 % HANDOFF_ID)


def test_close_with_a_reason_fails_the_inbox_and_keeps_why():
    inboxes = Inboxes()
    inbox = inboxes.open(HANDOFF_ID, idle_timeout=10)
    inboxes.receive(HANDOFF_ID, 0, b'abc')
    inboxes.close(inbox, 'CloudletSpawnFailed: the overlay was made for another base')
    assert inboxes.status(HANDOFF_ID) == _status('failed', 3,
                                                 'CloudletSpawnFailed: the overlay was made for another base')
    with pytest.raises(InboxError) as caught:
        inboxes.receive(HANDOFF_ID, 3, b'def')
    assert str(caught.value) == ('the residue of handoff %s is no longer received here (failed: '
                                 'CloudletSpawnFailed: the overlay was made for another base)' % HANDOFF_ID)
    with pytest.raises(errors.SourceError):
        inbox.read()


def test_the_status_of_a_closed_inbox_is_a_copy():
    inboxes = Inboxes()
    inbox = inboxes.open(HANDOFF_ID, idle_timeout=10)
    inboxes.close(inbox, 'x')
    inboxes.status(HANDOFF_ID)['state'] = 'changed'
    assert inboxes.status(HANDOFF_ID)['state'] == 'failed'


def test_a_new_spawn_opens_a_fresh_inbox_after_a_closed_one():
    inboxes = Inboxes()
    old = inboxes.open(HANDOFF_ID, idle_timeout=10)
    inboxes.close(old, 'the first build failed')
    new = inboxes.open(HANDOFF_ID, idle_timeout=10)
    assert new is not old
    assert inboxes.status(HANDOFF_ID) == _status('ready')
    inboxes.close(old)                  # a late close of the old one leaves the new one open
    assert inboxes.receive(HANDOFF_ID, 0, b'x') == _status('receiving', 1)
    assert new.read() == b'x'


def test_only_the_latest_finished_states_are_kept(monkeypatch):
    monkeypatch.setattr(inbox_mod, 'KEEP_FINISHED', 2)
    inboxes = Inboxes()
    ids = ['handoff-%d' % i for i in range(3)]
    for handoff_id in ids:
        inboxes.close(inboxes.open(handoff_id, idle_timeout=10), 'failed %s' % handoff_id)
    assert inboxes.status(ids[0]) == _status('waiting')
    assert [inboxes.status(i)['reason'] for i in ids[1:]] == ['failed handoff-1', 'failed handoff-2']
    assert inboxes.receive(ids[0], 0, b'x') == _status('waiting')


def test_an_abort_before_the_spawn_is_ready_fails_its_open():
    inboxes = Inboxes()
    inboxes.abort(HANDOFF_ID, 'the residue upload broke off after 10 bytes')
    assert inboxes.status(HANDOFF_ID) == _status('failed', 0, 'the residue upload broke off after 10 bytes')
    with pytest.raises(InboxError, match='given up: the residue upload broke off'):
        inboxes.open(HANDOFF_ID, idle_timeout=10)
    assert inboxes.status(HANDOFF_ID)['state'] == 'failed'
    # Only that handoff's.
    assert inboxes.open('another', idle_timeout=10).state == 'ready'


def test_abort_fails_an_open_inbox():
    inboxes = Inboxes()
    inbox = inboxes.open(HANDOFF_ID, idle_timeout=10)
    reader = _Thread(inbox.read)
    assert _blocked(reader)
    inboxes.abort(HANDOFF_ID, 'the residue upload broke off after 0 bytes')
    result, error = reader.outcome()
    assert isinstance(error, errors.SourceError) and 'broke off' in str(error)
    assert inboxes.status(HANDOFF_ID) == _status('failed', 0, 'the residue upload broke off after 0 bytes')
    inboxes.close(inbox, 'the apply failed')
    assert inboxes.status(HANDOFF_ID)['reason'] == 'the residue upload broke off after 0 bytes'


def test_fail_all_fails_every_open_inbox():
    inboxes = Inboxes()
    done = inboxes.open('done', idle_timeout=10)
    inboxes.receive('done', 0, b'd', end=True)
    assert done.read() == b'd' and done.read() == b''
    inboxes.close(done)
    readers = [_Thread(inboxes.open(handoff_id, idle_timeout=10).read) for handoff_id in (HANDOFF_ID, OTHER_ID)]
    assert all(_blocked(reader) for reader in readers)
    inboxes.fail_all('nova-compute is stopping')
    for reader in readers:
        result, error = reader.outcome()
        assert isinstance(error, errors.SourceError) and 'nova-compute is stopping' in str(error)
    for handoff_id in (HANDOFF_ID, OTHER_ID):
        assert inboxes.status(handoff_id) == _status('failed', 0, 'nova-compute is stopping')
        with pytest.raises(InboxError, match='nova-compute is stopping'):
            inboxes.receive(handoff_id, 0, b'x')
    assert inboxes.status('done') == _status('received', 1)


def test_no_inbox_opens_after_fail_all():
    """A spawn reaching its inbox after nova-compute began stopping fails at once, not after idle_timeout."""
    inboxes = Inboxes()
    inboxes.fail_all('nova-compute is stopping')
    with pytest.raises(InboxError, match='handoff %s: nova-compute is stopping' % HANDOFF_ID):
        inboxes.open(HANDOFF_ID, idle_timeout=120)
    assert inboxes.status(HANDOFF_ID) == _status('waiting', 0)
