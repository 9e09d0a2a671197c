"""The launch memory written into a named pipe while the overlay is applied (sparse.PipeWriter,
apply.Streamed): what a restore reading the pipe gets, and when.
"""

import io
import os
import subprocess
import threading
import time

import pytest

from cloudlet_engine import apply
from cloudlet_engine import errors
from cloudlet_engine import savefile
from cloudlet_engine import sparse
from tests.unit.engine.test_engine import qcow2_to_raw
from tests.unit.engine.test_ramfile import load

NEW_XML = '<domain type="qemu"><name>restored-here</name></domain>'


class PipeReader:
    """A restore's read of the pipe, in a thread: what came, and when it ended."""

    def __init__(self, path):
        self.data = bytearray()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path):
        with open(path, 'rb', buffering=0) as pipe:
            while True:
                piece = pipe.read(65536)
                if not piece:
                    break
                self.data += piece
        self.ended.set()

    def settled(self, seconds=0.3):
        """The bytes read once nothing more came for `seconds`."""
        while True:
            before = len(self.data)
            time.sleep(seconds)
            if len(self.data) == before:
                return bytes(self.data)

    def join(self, timeout=10):
        assert self.ended.wait(timeout), 'the pipe was never closed'
        return bytes(self.data)


def sparse_image_with_new_xml(ram_scenario, ram, tmp_path):
    """What the pipe must carry: write()'s sparse image of the changed memory, its XML replaced."""
    size = os.path.getsize(ram_scenario.memory)
    pieces = sparse.Pieces(str(tmp_path / 'spill-whole'), ram_scenario.base.memory_path, size, size)
    with open(ram_scenario.memory, 'rb') as f:
        pieces.append(f.read())
    path = str(tmp_path / 'whole.sparse')
    pages = sparse.write(pieces, ram, path)
    pieces.close()
    savefile.rewrite_xml(path, NEW_XML, fsync=False)
    with open(path, 'rb') as f:
        return f.read(), pages


def pipe_writer(ram_scenario, ram, tmp_path):
    """(Pieces of the changed VM's memory image, a PipeWriter over them, the image's bytes, the pipe's path)."""
    size = os.path.getsize(ram_scenario.memory)
    pieces = sparse.Pieces(str(tmp_path / 'spill'), ram_scenario.base.memory_path, size, size)
    pipe = str(tmp_path / 'memory.pipe')
    with open(ram_scenario.memory, 'rb') as f:
        image = f.read()
    return pieces, sparse.PipeWriter(pieces, ram, pipe), image, pipe


def test_the_pipe_carries_the_sparse_image_and_holds_the_device_state_back(ram_scenario, ram, tmp_path):
    expected, pages = sparse_image_with_new_xml(ram_scenario, ram, tmp_path)
    pieces, writer, image, pipe = pipe_writer(ram_scenario, ram, tmp_path)
    pieces.append(image[:100])
    with pytest.raises(errors.CloudletError, match='did not arrive'):
        writer.header(timeout=0.1)               # the header's XML is not all in yet
    for at in range(100, len(image), 777):
        pieces.append(image[at:at + 777])
    assert writer.header(timeout=5).xml == savefile.read_save_image(ram_scenario.memory).xml
    writer.give_xml(NEW_XML)
    reader = PipeReader(pipe)
    pieces.end()
    held = reader.settled()
    # Everything but the RAM section's end and the device state: QEMU would run the VM on those.
    device_state = load(ram_scenario.memory)[1]
    assert expected.startswith(held)
    assert len(expected) - len(held) >= len(device_state)
    assert not reader.ended.is_set()
    writer.release()
    assert writer.finish() == pages
    assert reader.join() == expected
    assert writer.bytes_written == len(expected)
    assert load_bytes(expected, tmp_path, ram)[0] == load(ram_scenario.memory)[0]
    pieces.close()
    writer.abort()                               # idempotent after a finish: the pipe is removed
    assert not os.path.exists(pipe)


def load_bytes(data, tmp_path, ram):
    path = str(tmp_path / 'loaded.save')
    with open(path, 'wb') as f:
        f.write(data)
    return load(path, ram.path)


def test_an_xml_that_does_not_fit_is_refused_before_anything_is_written(ram_scenario, ram, tmp_path):
    pieces, writer, image, _pipe = pipe_writer(ram_scenario, ram, tmp_path)
    pieces.append(image)
    data_len = writer.header(timeout=5).data_len
    with pytest.raises(errors.SaveImageError, match='do not fit'):
        writer.give_xml('<domain>%s</domain>' % ('x' * data_len))
    writer.abort()
    assert not writer._thread.is_alive()
    assert not os.path.exists(str(tmp_path / 'memory.pipe'))
    pieces.close()


def test_abort_closes_the_pipe_short(ram_scenario, ram, tmp_path):
    pieces, writer, image, pipe = pipe_writer(ram_scenario, ram, tmp_path)
    pieces.append(image[:len(image) // 2])
    writer.give_xml(NEW_XML)
    reader = PipeReader(pipe)
    reader.settled()
    writer.abort()
    short = reader.join()
    assert 0 < len(short) < len(image)
    with pytest.raises(errors.LaunchAbandoned):
        pieces.append(image[len(image) // 2:])
    assert not os.path.exists(pipe)
    pieces.close()


def test_abort_without_a_reader_ends_the_writer(ram_scenario, ram, tmp_path):
    pieces, writer, image, _pipe = pipe_writer(ram_scenario, ram, tmp_path)
    pieces.append(image)
    writer.give_xml(NEW_XML)                     # the writer now waits for a reader
    writer._thread.join(0.2)
    assert writer._thread.is_alive()
    writer.abort()
    assert not writer._thread.is_alive()
    pieces.close()


def restore_from(streamed, timeout=10):
    """A restore's part: the launch, the header, the XML given, the pipe read whole."""
    launch = streamed.launch(timeout)
    streamed.header(timeout)
    streamed.give_xml(NEW_XML)
    return launch, PipeReader(launch.memory_path)


def test_a_streamed_apply_gives_the_restore_what_a_file_apply_gives(ram_scenario, ram, tmp_path):
    blob, _stats = ram_scenario.create('zstd')
    whole = apply.apply_overlay(ram_scenario.base, io.BytesIO(blob), str(tmp_path / 'file'), ram=ram)
    launch_dir = str(tmp_path / 'pipe')
    streamed = apply.Streamed(lambda s: apply.apply_overlay(ram_scenario.base, io.BytesIO(blob), launch_dir,
                                                            ram=ram, streamed=s))
    launch, reader = restore_from(streamed)
    assert launch.streamed is streamed and launch.meta['base_id'] == ram_scenario.base.base_id
    data = reader.join()
    done = streamed.result(10)
    assert done.streamed is None and done.overlay_bytes == len(blob)
    assert 0 <= done.catch_up_seconds <= done.finish_seconds and whole.catch_up_seconds is None
    assert done.restored_bytes == whole.restored_bytes - os.path.getsize(whole.memory_path) + len(data)
    assert load_bytes(data, tmp_path, ram)[0] == load(whole.memory_path, ram.path)[0]
    qcow2_to_raw(done.disk_path, str(tmp_path / 'disk.raw'))
    with open(str(tmp_path / 'disk.raw'), 'rb') as f:
        assert f.read() == ram_scenario.expected_disk


class Trickle(io.RawIOBase):
    """An overlay arriving slowly: `gate` holds its last `tail` bytes (of its trailer) back."""

    def __init__(self, blob, tail):
        self._head, self._tail = io.BytesIO(blob[:-tail]), io.BytesIO(blob[-tail:])
        self.gate = threading.Event()

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self._head.readinto(buffer)
        if n:
            return n
        self.gate.wait(10)
        return self._tail.readinto(buffer)


def test_the_launch_disk_is_a_valid_image_while_the_overlay_arrives(ram_scenario, ram, tmp_path):
    blob, _stats = ram_scenario.create('zstd')
    source = Trickle(blob, 40)
    streamed = apply.Streamed(lambda s: apply.apply_overlay(ram_scenario.base, source, str(tmp_path / 'l'),
                                                            ram=ram, streamed=s))
    launch, reader = restore_from(streamed)
    subprocess.run(['qemu-img', 'check', '-q', '-f', 'qcow2', launch.disk_path], check=True)
    inode = os.stat(launch.disk_path).st_ino
    assert not reader.ended.is_set()
    source.gate.set()
    reader.join()
    assert os.stat(streamed.result(10).disk_path).st_ino == inode


def test_a_corrupt_overlay_closes_the_pipe_short_and_leaves_no_files(ram_scenario, ram, tmp_path):
    blob, _stats = ram_scenario.create('zstd')
    source = Trickle(blob[:-40], 20)             # its trailer cut short
    launch_dir = str(tmp_path / 'bad')
    streamed = apply.Streamed(lambda s: apply.apply_overlay(ram_scenario.base, source, launch_dir,
                                                            ram=ram, streamed=s))
    launch, reader = restore_from(streamed)
    source.gate.set()
    data = reader.join()
    assert len(data) < len(sparse_image_with_new_xml(ram_scenario, ram, tmp_path)[0])
    with pytest.raises(errors.TruncatedOverlay):
        streamed.result(10)
    assert sorted(os.listdir(launch_dir)) == []


def test_an_apply_failing_first_is_the_restore_s_error(ram_scenario, ram, tmp_path):
    blob, _stats = ram_scenario.create('zstd')
    streamed = apply.Streamed(lambda s: apply.apply_overlay(ram_scenario.base, io.BytesIO(blob[:-40]),
                                                            str(tmp_path / 'bad'), ram=ram, streamed=s))
    with pytest.raises(errors.TruncatedOverlay):
        streamed.result(10)
    with pytest.raises(errors.TruncatedOverlay):
        streamed.header(10)      # not "abandoned": why the apply gave up


def test_the_restore_s_failure_stops_the_apply(ram_scenario, ram, tmp_path):
    blob, _stats = ram_scenario.create('zstd')
    source = Trickle(blob, 40)
    launch_dir = str(tmp_path / 'stopped')
    streamed = apply.Streamed(lambda s: apply.apply_overlay(ram_scenario.base, source, launch_dir,
                                                            ram=ram, streamed=s))
    streamed.launch(10)
    streamed.abort()                             # e.g. the spawn failed before its restore
    source.gate.set()
    with pytest.raises(errors.LaunchAbandoned):
        streamed.result(10)
    assert sorted(os.listdir(launch_dir)) == []


def test_an_apply_that_fails_before_its_files_exist_says_why_to_the_restore(ram_scenario, ram, tmp_path):
    streamed = apply.Streamed(lambda s: apply.apply_overlay(ram_scenario.base, io.BytesIO(b'not an overlay'),
                                                            str(tmp_path / 'x'), ram=ram, streamed=s))
    with pytest.raises(errors.OverlayError):
        streamed.launch(10)
    with pytest.raises(errors.OverlayError):
        streamed.header(10)


def test_abort_tolerates_the_apply_removing_the_pipe_first(ram_scenario, ram, tmp_path, monkeypatch):
    pieces, writer, _image, pipe = pipe_writer(ram_scenario, ram, tmp_path)
    real_open = os.open

    def open_then_apply_cleans_up(path, *args):
        fd = real_open(path, *args)
        if path == pipe:
            os.remove(pipe)          # the failing apply removes its launch files meanwhile
        return fd
    monkeypatch.setattr(sparse.os, 'open', open_then_apply_cleans_up)
    writer.abort()
    assert not os.path.exists(pipe)
    pieces.close()


def test_abort_releases_a_reader_waiting_for_a_writer(ram_scenario, ram, tmp_path):
    pieces, writer, _image, pipe = pipe_writer(ram_scenario, ram, tmp_path)   # no XML given: no open
    reader = PipeReader(pipe)                         # libvirt's open() waits for a writer
    time.sleep(0.1)
    writer.abort()
    assert reader.join(5) == b''
    assert not os.path.exists(pipe)
    pieces.close()
