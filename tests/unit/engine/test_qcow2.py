"""qcow2.py against the real qemu-img / qemu-io (Debian's qemu-utils)."""

import json
import os
import random
import struct
import subprocess
import tempfile

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy
import pytest

from cloudlet_engine.errors import BaseVMError
from cloudlet_engine import qcow2
from cloudlet_engine.qcow2 import iter_top_layer_chunks
from cloudlet_engine.qcow2 import Qcow2Writer
from cloudlet_engine.qcow2 import top_layer_info
from cloudlet_engine.qcow2 import ZERO

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
CS = 4096


def run(*command):
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout


def random_bytes(size, seed):
    return numpy.random.default_rng(seed).bytes(size)


def make_base(path, size, seed=0):
    content = random_bytes(size, seed)
    with open(path, 'wb') as f:
        f.write(content)
    return bytearray(content)


def sparse_base(tmp_path, size):
    """A base of zeros (qemu-img check opens the backing file too)."""
    path = tmp_path / 'base.raw'
    with open(path, 'wb') as f:
        f.truncate(size)
    return str(path)


def chunk(seed):
    return random_bytes(CS, seed)


def assert_clean(path):
    """qemu-img check: exit 0 means no corruptions and no leaks."""
    done = subprocess.run(['qemu-img', 'check', '-f', 'qcow2', '--output=json', str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert done.returncode == 0, (done.stdout, done.stderr)
    report = json.loads(done.stdout)
    for key in ('check-errors', 'corruptions', 'leaks'):
        assert report.get(key, 0) == 0, report
    return report


def assert_same_content(launch, expected_raw):
    done = subprocess.run(['qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw', str(launch), str(expected_raw)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert done.returncode == 0, (done.stdout, done.stderr)


def converted(launch, tmp_dir):
    out = os.path.join(str(tmp_dir), 'converted.raw')
    run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', str(launch), out)
    with open(out, 'rb') as f:
        return f.read()


def info(path):
    return json.loads(run('qemu-img', 'info', '--output=json', '-f', 'qcow2', str(path)))


# -- Qcow2Writer --

def test_launch_disk_has_the_changes_over_the_base(tmp_path):
    size = 64 * MiB + 12 * KiB    # not a multiple of an L2 table's 2 MiB
    base, launch, expected_raw = tmp_path / 'base.raw', tmp_path / 'launch.qcow2', tmp_path / 'expected.raw'
    expected = make_base(base, size)
    rng = random.Random(1)
    clusters = size // CS
    # Both ends, both sides of L2 table boundaries, and random ones.
    offsets = {0, CS, size - CS, 2 * MiB - CS, 2 * MiB, 64 * MiB}
    offsets |= {rng.randrange(clusters) * CS for _ in range(300)}
    offsets = sorted(offsets)
    rng.shuffle(offsets)
    zeros = set(offsets[:40])

    with Qcow2Writer(str(launch), size, str(base)) as writer:
        for i, offset in enumerate(offsets):
            if offset in zeros:
                assert expected[offset:offset + CS] != bytes(CS)   # zeros over base data
                writer.write_zero(offset)
                expected[offset:offset + CS] = bytes(CS)
            else:
                data = chunk(i)
                writer.write_chunk(offset, data)
                expected[offset:offset + CS] = data
        # Overwrites: data over data, zero over data, data over zero.
        for j, offset in enumerate(offsets[40:60]):
            data = chunk(1000 + j)
            writer.write_chunk(offset, data)
            expected[offset:offset + CS] = data
        for offset in offsets[60:70]:
            writer.write_zero(offset)
            expected[offset:offset + CS] = bytes(CS)
        for j, offset in enumerate(offsets[:10]):
            data = chunk(2000 + j)
            writer.write_chunk(offset, data)
            expected[offset:offset + CS] = data
    expected_raw.write_bytes(expected)

    assert_clean(launch)
    image = info(launch)
    assert image['virtual-size'] == size
    assert image['cluster-size'] == CS
    assert image['backing-filename'] == str(base)
    assert image['backing-filename-format'] == 'raw'
    assert image['format-specific']['data']['compat'] == '1.1'
    assert image['format-specific']['data']['refcount-bits'] == 16
    assert_same_content(launch, expected_raw)
    assert converted(launch, tmp_path) == expected
    # O(changes): the data clusters plus a little metadata, nothing of the base.
    assert os.path.getsize(launch) < (len(offsets) + 64) * CS


def test_large_sparse_virtual_disk(tmp_path):
    size = 3 * GiB + 4 * KiB
    base, launch, expected_raw = tmp_path / 'base.raw', tmp_path / 'launch.qcow2', tmp_path / 'expected.raw'
    base_data = {0: chunk(1), 1 * GiB: chunk(2), 2 * GiB + 8 * KiB: chunk(3), size - CS: chunk(4)}
    for path in (base, expected_raw):
        with open(path, 'wb') as f:
            f.truncate(size)
            for offset, data in base_data.items():
                f.seek(offset)
                f.write(data)
    changes = [(size - CS, None), (5 * MiB, chunk(5)), (2 * GiB + 8 * KiB, chunk(6)),
               (1 * GiB, None), (0, chunk(7)), (3 * GiB - 2 * MiB, chunk(8)), (1 * GiB + CS, chunk(9))]
    with Qcow2Writer(str(launch), size, str(base)) as writer:
        for offset, data in changes:
            if data is None:
                writer.write_zero(offset)
            else:
                writer.write_chunk(offset, data)
    with open(expected_raw, 'r+b') as f:
        for offset, data in changes:
            f.seek(offset)
            f.write(data or bytes(CS))

    assert_clean(launch)
    assert info(launch)['virtual-size'] == size
    assert_same_content(launch, expected_raw)
    assert os.path.getsize(launch) < 64 * CS
    # The top layer holds exactly these chunks.
    assert list(iter_top_layer_chunks(str(launch))) == sorted(changes)


def test_read_chunk(tmp_path):
    writer = Qcow2Writer(str(tmp_path / 'launch.qcow2'), 16 * MiB, sparse_base(tmp_path, 16 * MiB))
    assert writer.read_chunk(0) is None
    writer.write_chunk(0, chunk(1))
    writer.write_zero(CS)
    assert writer.read_chunk(0) == chunk(1)
    assert writer.read_chunk(CS) is ZERO
    assert writer.read_chunk(2 * CS) is None
    assert writer.read_chunk(8 * MiB) is None    # in an L2 table never created
    writer.write_chunk(0, chunk(2))
    assert writer.read_chunk(0) == chunk(2)
    # Past the append buffer: read back from the file, and overwritten there.
    for i in range(1, 2 * qcow2.APPEND_BUFFER // CS):
        writer.write_chunk(4 * MiB + i * CS, chunk(i))
    assert writer.read_chunk(0) == chunk(2)
    writer.write_chunk(0, chunk(3))
    assert writer.read_chunk(0) == chunk(3)
    assert writer.read_chunk(4 * MiB + CS) == chunk(1)
    # Zeroed, then data again.
    writer.write_zero(0)
    assert writer.read_chunk(0) is ZERO
    writer.write_chunk(0, chunk(4))
    assert writer.read_chunk(0) == chunk(4)
    writer.close()
    assert_clean(tmp_path / 'launch.qcow2')


def test_zeroed_clusters_are_reused_or_free_not_leaked(tmp_path):
    base = tmp_path / 'base.raw'
    expected = make_base(base, 4 * MiB)
    launch = tmp_path / 'launch.qcow2'
    with Qcow2Writer(str(launch), 4 * MiB, str(base)) as writer:
        for i in range(10):
            writer.write_chunk(i * CS, chunk(i))
            expected[i * CS:(i + 1) * CS] = chunk(i)
        for i in range(6):
            writer.write_zero(i * CS)
            expected[i * CS:(i + 1) * CS] = bytes(CS)
        for i in range(3):     # new guest offsets take the freed clusters
            offset = MiB + i * CS
            writer.write_chunk(offset, chunk(100 + i))
            expected[offset:offset + CS] = chunk(100 + i)
    report = assert_clean(launch)
    # 10 data clusters were ever allocated, 3 of them reused, the L2 table
    # took a fourth; the other 2 stay free (refcount 0).  The file: header,
    # 10 clusters, L1 table, refcount table, refcount block.
    assert report['allocated-clusters'] == 7
    assert report['image-end-offset'] == os.path.getsize(launch) == 14 * CS
    (tmp_path / 'expected.raw').write_bytes(expected)
    assert_same_content(launch, tmp_path / 'expected.raw')


def test_valid_while_written_is_an_empty_image_until_closed_in_place(tmp_path):
    # A restore's QEMU opens the launch disk before the chunks are in, and
    # re-reads its metadata when it activates it: the same file, whole.
    base = tmp_path / 'base.raw'
    expected = make_base(base, 4 * MiB)
    launch = tmp_path / 'launch.qcow2'
    writer = Qcow2Writer(str(launch), 4 * MiB, str(base), valid_while_written=True)
    inode = os.stat(launch).st_ino
    assert_clean(launch)
    assert_same_content(launch, base)          # nothing of the overlay yet
    for i in range(5):
        writer.write_chunk(3 * MiB + i * CS, chunk(i))
        expected[3 * MiB + i * CS:3 * MiB + (i + 1) * CS] = chunk(i)
    writer.write_zero(0)
    expected[:CS] = bytes(CS)
    writer._flush()                            # the data on file, the first metadata still in force
    assert_clean(launch)
    assert_same_content(launch, base)
    writer.close()
    assert os.stat(launch).st_ino == inode
    report = assert_clean(launch)              # the first metadata's clusters are free, not leaked
    (tmp_path / 'expected.raw').write_bytes(expected)
    assert_same_content(launch, tmp_path / 'expected.raw')
    assert report['allocated-clusters'] == 5   # the chunks written; the zeroed one has none


def test_valid_while_written_aborted_leaves_nothing(tmp_path):
    launch = tmp_path / 'launch.qcow2'
    writer = Qcow2Writer(str(launch), MiB, sparse_base(tmp_path, MiB), valid_while_written=True)
    writer.write_chunk(0, chunk(0))
    writer.abort()
    assert not launch.exists()


@pytest.mark.parametrize('chunks', [2039, 2040, 2041, 2042])
def test_refcount_blocks_count_themselves(tmp_path, chunks):
    # A 4 KiB refcount block counts 2048 clusters; the file has the header,
    # 4 L2 tables, the L1 table, the refcount table and blocks besides the
    # chunks, so these counts cross from one refcount block to two.
    launch = tmp_path / 'launch.qcow2'
    with Qcow2Writer(str(launch), 16 * MiB, sparse_base(tmp_path, 16 * MiB)) as writer:
        for i in range(chunks):
            writer.write_chunk(i * CS, chunk(i % 7))
    assert_clean(launch)
    assert list(iter_top_layer_chunks(str(launch)))[-1] == ((chunks - 1) * CS, chunk((chunks - 1) % 7))


def test_header_fields(tmp_path):
    launch = tmp_path / 'launch.qcow2'
    sparse_base(tmp_path, MiB)
    Qcow2Writer(str(launch), 1 * MiB, 'base.raw').close()    # relative to the image
    head = launch.read_bytes()[:4096]
    magic, version = struct.unpack('>4sI', head[:8])
    assert (magic, version) == (b'QFI\xfb', 3)
    backing_offset, backing_size, cluster_bits = struct.unpack('>QII', head[8:24])
    assert head[backing_offset:backing_offset + backing_size] == b'base.raw'
    assert cluster_bits == 12
    assert struct.unpack('>II', head[96:104]) == (4, 112)    # refcount_order, header_length
    assert struct.unpack('>II', head[112:120]) == (0xe2792aca, 3)
    assert head[120:123] == b'raw'
    assert_clean(launch)
    assert top_layer_info(str(launch)) == {
        'virtual_size': MiB, 'backing_file': 'base.raw', 'backing_format': 'raw', 'cluster_size': CS}


def test_invalid_arguments(tmp_path):
    path = str(tmp_path / 'launch.qcow2')
    base = sparse_base(tmp_path, MiB)
    with pytest.raises(ValueError):
        Qcow2Writer(path, MiB + 512, 'base.raw')
    with pytest.raises(ValueError):
        Qcow2Writer(path, 0, 'base.raw')
    with pytest.raises(ValueError):
        Qcow2Writer(path, MiB, 'x' * 4000)
    with pytest.raises(ValueError):
        Qcow2Writer(path, 16 << 40, 'base.raw')    # the L1 table would exceed 32 MiB
    writer = Qcow2Writer(path, MiB, base)
    for offset in (-CS, 1, CS + 512, MiB, 2 * MiB):
        with pytest.raises(ValueError):
            writer.write_chunk(offset, chunk(0))
        with pytest.raises(ValueError):
            writer.write_zero(offset)
        with pytest.raises(ValueError):
            writer.read_chunk(offset)
    for data in (b'', bytes(CS - 1), bytes(CS + 1)):
        with pytest.raises(ValueError):
            writer.write_chunk(0, data)
    writer.write_chunk(MiB - CS, memoryview(chunk(0)))
    writer.close()
    writer.close()    # idempotent
    with pytest.raises(ValueError):
        writer.write_chunk(0, chunk(0))
    assert_clean(path)


def test_context_manager_aborts_on_exception(tmp_path):
    path = tmp_path / 'launch.qcow2'
    with pytest.raises(RuntimeError):
        with Qcow2Writer(str(path), MiB, 'base.raw') as writer:
            writer.write_chunk(0, chunk(0))
            raise RuntimeError('overlay broke')
    assert not path.exists()
    writer = Qcow2Writer(str(path), MiB, 'base.raw')
    writer.write_chunk(0, chunk(0))
    writer.abort()
    assert not path.exists()
    path.write_bytes(b'old junk' * 10000)    # an existing file is replaced
    with Qcow2Writer(str(path), MiB, sparse_base(tmp_path, MiB)) as writer:
        writer.write_chunk(CS, chunk(1))
    assert_clean(path)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_random_writes_match_expected_raw(data):
    clusters = data.draw(st.integers(1, 1600), label='clusters')   # up to 4 L2 tables
    size = clusters * CS
    # Mostly a few offsets, so that overwrites (data or zeros) are common.
    index = st.integers(0, min(clusters, 16) - 1) | st.integers(0, clusters - 1) | st.just(clusters - 1)
    ops = data.draw(st.lists(st.tuples(index, st.none() | st.integers(0, 255)), max_size=120), label='ops')
    with tempfile.TemporaryDirectory() as tmp:
        base, launch = os.path.join(tmp, 'base.raw'), os.path.join(tmp, 'launch.qcow2')
        expected = make_base(base, size, seed=clusters)
        with Qcow2Writer(launch, size, base) as writer:
            for index, fill in ops:
                offset = index * CS
                if fill is None:
                    writer.write_zero(offset)
                    expected[offset:offset + CS] = bytes(CS)
                else:
                    writer.write_chunk(offset, bytes([fill]) * CS)
                    expected[offset:offset + CS] = bytes([fill]) * CS
            last = {index: fill for index, fill in ops}
            for index in range(clusters):
                got = writer.read_chunk(index * CS)
                if index not in last:
                    assert got is None
                else:
                    assert got == (ZERO if last[index] is None else bytes([last[index]]) * CS)
        assert_clean(launch)
        assert converted(launch, tmp) == expected


# -- reading a QEMU-written overlay --

def qemu_overlay(tmp_path, base_size=4 * MiB):
    base, top = tmp_path / 'base.raw', tmp_path / 'top.qcow2'
    content = make_base(base, base_size)
    run('qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', str(base), str(top))
    return content, top


def qemu_io(path, *commands):
    args = ['qemu-io', '-f', 'qcow2']
    for command in commands:
        args += ['-c', command]
    run(*args, str(path))


def test_iter_top_layer_chunks(tmp_path, monkeypatch):
    base, top = qemu_overlay(tmp_path)
    qemu_io(top, 'write -P 0xab 65536 8192', 'write -z 1048576 65536',
            'write -P 0xcd 3145728 131072', 'write -P 0xef 3276800 4096')
    monkeypatch.setattr(qcow2, 'READ_SIZE', 64 * KiB)   # several reads per extent
    got = list(iter_top_layer_chunks(str(top)))

    expected = []
    for offset in range(64 * KiB, 128 * KiB, CS):   # the 64 KiB cluster; QEMU copied the rest
        expected.append((offset, b'\xab' * CS if offset < 72 * KiB else bytes(base[offset:offset + CS])))
    expected += [(offset, None) for offset in range(MiB, MiB + 64 * KiB, CS)]
    for offset in range(3 * MiB, 3 * MiB + 192 * KiB, CS):
        if offset < 3 * MiB + 128 * KiB:
            expected.append((offset, b'\xcd' * CS))
        elif offset == 3 * MiB + 128 * KiB:
            expected.append((offset, b'\xef' * CS))
        else:
            expected.append((offset, bytes(base[offset:offset + CS])))
    assert [offset for offset, _ in got] == [offset for offset, _ in expected]
    assert got == expected


def test_iter_top_layer_chunks_of_an_untouched_overlay(tmp_path):
    _, top = qemu_overlay(tmp_path)
    assert list(iter_top_layer_chunks(str(top))) == []


def test_compressed_clusters_are_refused(tmp_path):
    _, top = qemu_overlay(tmp_path)
    qemu_io(top, 'write -c -P 0xcd 2097152 65536')
    with pytest.raises(BaseVMError, match='compressed'):
        list(iter_top_layer_chunks(str(top)))


def test_top_layer_info(tmp_path):
    _, top = qemu_overlay(tmp_path)
    assert top_layer_info(str(top)) == {
        'virtual_size': 4 * MiB, 'backing_file': str(tmp_path / 'base.raw'),
        'backing_format': 'raw', 'cluster_size': 64 * KiB}


def test_qemu_img_errors_carry_its_message(tmp_path):
    missing = str(tmp_path / 'missing.qcow2')
    with pytest.raises(BaseVMError, match='missing.qcow2.*No such file'):
        top_layer_info(missing)
    with pytest.raises(BaseVMError, match='No such file'):
        iter_top_layer_chunks(missing)
    not_qcow2 = tmp_path / 'plain.raw'
    not_qcow2.write_bytes(bytes(MiB))
    with pytest.raises(BaseVMError, match='qcow2'):
        top_layer_info(str(not_qcow2))
