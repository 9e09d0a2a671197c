"""cloudlet_engine.livemigration.Spool: QEMU's stream written by one thread, read as it grows."""

import socket
import threading
import time

from cloudlet_engine import livemigration


def test_a_reader_waits_for_bytes_not_yet_fed_and_counts_the_wait(tmp_path):
    spool = livemigration.Spool(str(tmp_path / 'spool'), b'head')
    qemu, ours = socket.socketpair()
    feeder = threading.Thread(target=spool.feed_from, args=(ours, threading.Event()), daemon=True)
    feeder.start()

    def late():
        time.sleep(0.3)
        qemu.sendall(b'stream')
        qemu.close()
    threading.Thread(target=late, daemon=True).start()
    assert spool.pread(4, 0) == b'head'
    assert spool.reader_waited == 0.0                # there already: no wait
    assert spool.pread(6, 4) == b'stream'
    assert spool.reader_waited >= 0.25
    feeder.join(5)
    assert spool.size() == 10
    spool.close()
    ours.close()


def test_the_feeder_stays_at_most_ahead_bytes_past_the_reader(tmp_path):
    spool = livemigration.Spool(str(tmp_path / 'spool'), b'', ahead=8)
    qemu, ours = socket.socketpair()
    feeder = threading.Thread(target=spool.feed_from, args=(ours, threading.Event()), daemon=True)
    feeder.start()
    qemu.sendall(b'01234567')
    time.sleep(0.2)
    qemu.sendall(b'89abcdef')
    time.sleep(0.3)
    assert spool.bytes_so_far == 8                   # 8 ahead of the reader: waits for it
    assert spool.pread(16, 0) == b'0123456789abcdef'
    qemu.close()
    feeder.join(5)
    spool.close()
    ours.close()
