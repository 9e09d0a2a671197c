"""cloudlet_engine.handoff's disk stamps: the final disk pass is skipped only for an unmodified disk file."""

import os
import threading
import time

from cloudlet_engine import handoff


def test_a_stamp_taken_after_a_write_changes_with_the_next_write(tmp_path):
    disk = tmp_path / 'disk.qcow2'
    disk.write_bytes(b'a' * 4096)
    stamp = handoff._settled_disk_stamp(str(disk))  # waits until the write's tick is past
    assert stamp is not None
    assert handoff._disk_stamp(str(disk)) == stamp
    with open(disk, 'r+b') as f:                    # the same size, a rewrite in place
        f.write(b'b')
    assert handoff._disk_stamp(str(disk)) != stamp


def test_a_disk_written_all_the_time_gets_no_stamp(tmp_path, monkeypatch):
    monkeypatch.setattr(handoff, 'STAMP_SETTLE_TRIES', 3)
    disk = tmp_path / 'disk.qcow2'
    disk.write_bytes(b'a' * 4096)
    stop = threading.Event()

    def writer():
        with open(disk, 'r+b') as f:
            while not stop.is_set():
                f.seek(0)
                f.write(os.urandom(16))
                f.flush()
                time.sleep(0.005)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        assert handoff._settled_disk_stamp(str(disk)) is None
    finally:
        stop.set()
        thread.join(5)
