"""Create and apply overlays on synthetic bases (fake save images, real qcow2)."""

import io
import os
import random
import subprocess

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from cloudlet_engine import apply
from cloudlet_engine import basestore
from cloudlet_engine import basevm
from cloudlet_engine import create
from cloudlet_engine import errors
from cloudlet_engine import savefile
from tests.fixtures import fake_savefile

PAGE = 4096
XML = fake_savefile.SAMPLE_XML


def _page(rng):
    return rng.randbytes(PAGE)


class Scenario:
    """A base (disk + memory) and a changed VM, built from one seed."""

    def __init__(self, root, seed=1, disk_chunks=256, memory_pages=96):
        rng = random.Random(seed)
        self.root = root
        os.makedirs(root, exist_ok=True)
        base_disk = bytearray(disk_chunks * PAGE)
        for i in range(0, disk_chunks, 2):                # half data, half holes
            base_disk[i * PAGE:(i + 1) * PAGE] = _page(rng)
        base_pages = [('pc.ram', i * PAGE, _page(rng) if i % 5 else None) for i in range(memory_pages)]
        base_pages.append(('vga.vram', 0, _page(rng)))
        self.base = self._make_base(bytes(base_disk), base_pages, rng)

        disk = bytearray(base_disk)
        mem_pages = list(base_pages)
        # Memory: small in-place edits, brand new pages, moved pages, pages equal to disk chunks.
        for i in (1, 2, 3):
            block, addr, data = mem_pages[i]
            edited = bytearray(data)
            edited[100:108] = b'MODIFIED'
            mem_pages[i] = (block, addr, bytes(edited))
        for i in (6, 7):
            mem_pages[i] = ('pc.ram', mem_pages[i][1], _page(rng))
        mem_pages[8] = ('pc.ram', mem_pages[8][1], base_pages[11][2])      # moved
        mem_pages[9] = ('pc.ram', mem_pages[9][1], bytes(base_disk[2 * PAGE:3 * PAGE]))
        mem_pages[12] = ('pc.ram', mem_pages[12][1], bytes(PAGE))          # a zero page as data record
        # Disk: edits, new data, zeroed data, a chunk equal to a memory page, a duplicate.
        disk[4 * PAGE + 10:4 * PAGE + 20] = b'0123456789'
        new_chunk = _page(rng)
        disk[5 * PAGE:6 * PAGE] = new_chunk
        disk[7 * PAGE:8 * PAGE] = new_chunk                                 # self dedup
        disk[8 * PAGE:9 * PAGE] = bytes(PAGE)                              # zero over data
        disk[9 * PAGE:10 * PAGE] = mem_pages[6][2]                         # equal to a new memory page
        disk[11 * PAGE:12 * PAGE] = base_pages[21][2]                      # equal to a base memory page
        disk[-PAGE:] = _page(rng)                                          # last chunk
        self.disk_raw = os.path.join(root, 'changed-disk.raw')
        with open(self.disk_raw, 'wb') as f:
            f.write(disk)
        self.memory = fake_savefile.build_fake_save_image(os.path.join(root, 'changed-memory.save'),
                                                          XML, mem_pages).path
        self.expected_disk = bytes(disk)

    def _make_base(self, disk, pages, rng):
        work = os.path.join(self.root, 'base-work')
        os.makedirs(work)
        with open(os.path.join(work, 'in-disk.raw'), 'wb') as f:
            f.write(disk)
        fake_savefile.build_fake_save_image(os.path.join(work, 'in-memory.save'), XML, pages)
        return basevm.build_base(work, os.path.join(work, 'in-disk.raw'),
                                 os.path.join(work, 'in-memory.save'), 'synthetic')

    def create(self, codec='zstd', disk=None):
        out = io.BytesIO()
        stats = create.create_overlay(self.base, disk or self.disk_raw, self.memory, out, codec,
                                      workdir=self.root)
        return out.getvalue(), stats


def qcow2_to_raw(path, out):
    subprocess.run(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', path, out], check=True)
    with open(out, 'rb') as f:
        return f.read()


@pytest.fixture(scope='module')
def scenario(tmp_path_factory):
    return Scenario(str(tmp_path_factory.mktemp('scenario')))


@pytest.mark.parametrize('codec', ['zstd', 'xz', 'none'])
def test_roundtrip_is_exact(scenario, tmp_path, codec):
    blob, stats = scenario.create(codec)
    launch = apply.apply_overlay(scenario.base, io.BytesIO(blob), str(tmp_path / 'launch'))
    with open(launch.memory_path, 'rb') as f, open(scenario.memory, 'rb') as g:
        assert f.read() == g.read()
    assert qcow2_to_raw(launch.disk_path, str(tmp_path / 'disk.raw')) == scenario.expected_disk
    assert launch.meta['base_id'] == scenario.base.base_id


def test_classification(scenario):
    _, stats = scenario.create()
    assert stats.disk_chunks_changed == 7
    assert stats.disk_chunks_data == 3          # the edit, the new chunk, the last chunk; the rest dedup
    assert stats.from_self >= 2                 # duplicate disk chunk, disk chunk = new memory page
    assert stats.from_base_disk >= 1            # memory page equal to a base disk chunk
    assert stats.memory_pages_data == 5         # three edits, two new pages
    assert stats.memory_pages_changed == 8      # those, a moved page, a disk chunk, a zero page
    assert stats.changed_bytes == (8 + 7) * PAGE
    assert stats.segments_delta >= 1


def test_unchanged_memory_is_copied_in_runs(scenario):
    from cloudlet_cmd import cloudlet as cli
    blob, stats = scenario.create()
    path = os.path.join(scenario.root, 'runs.clo')
    with open(path, 'wb') as f:
        f.write(blob)
    items = cli.inspect_overlay(path)['items']
    # 71 unchanged pages, interrupted by 11 changed ones: a dozen runs, not 71 page copies.
    assert stats.from_base_memory >= 60
    assert items['mem_range_copy'] <= 15
    assert 'mem_page_copy' not in items or items['mem_page_copy'] <= 5


def test_small_edits_cost_little(scenario):
    blob, _ = scenario.create()
    # 2 new random pages + 2 new random disk chunks are incompressible: ~16 KiB.
    # Everything else (in-place edits, dedup, page table) must add only a little.
    assert len(blob) < 4 * PAGE + 6000


def test_wrong_base_refused_and_nothing_left(scenario, tmp_path):
    other = Scenario(str(tmp_path / 'other'), seed=2)
    blob, _ = scenario.create()
    launch_dir = tmp_path / 'launch'
    with pytest.raises(errors.WrongBase, match='made for base'):
        apply.apply_overlay(other.base, io.BytesIO(blob), str(launch_dir))
    assert not launch_dir.exists() or not os.listdir(launch_dir)


def test_create_refuses_memory_of_another_machine(scenario, tmp_path):
    xml = XML.replace("<memory unit='KiB'>65536</memory>", "<memory unit='KiB'>131072</memory>")
    other = fake_savefile.build_fake_save_image(str(tmp_path / 'm.save'), xml,
                                                [('pc.ram', 0, b'x' * PAGE)]).path
    with pytest.raises(errors.WrongBase, match='not taken from a VM of base'):
        create.create_overlay(scenario.base, scenario.disk_raw, other, io.BytesIO())


def test_create_from_qcow2_layer(scenario, tmp_path):
    layer = str(tmp_path / 'layer.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b',
                    scenario.base.disk_path, layer], check=True)
    # Write the changed chunks through qemu-io, as a running VM would.
    base_disk = open(scenario.base.disk_path, 'rb').read()
    changed = [i for i in range(len(base_disk) // PAGE)
               if base_disk[i * PAGE:(i + 1) * PAGE] != scenario.expected_disk[i * PAGE:(i + 1) * PAGE]]
    for i in changed:
        chunk_file = tmp_path / ('c%d' % i)
        chunk_file.write_bytes(scenario.expected_disk[i * PAGE:(i + 1) * PAGE])
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c',
                        'write -s %s %d %d' % (chunk_file, i * PAGE, PAGE), layer],
                       check=True, capture_output=True)
    blob, stats = scenario.create(disk=layer)
    assert stats.disk_chunks_changed == len(changed)
    launch = apply.apply_overlay(scenario.base, io.BytesIO(blob), str(tmp_path / 'launch'))
    assert qcow2_to_raw(launch.disk_path, str(tmp_path / 'disk.raw')) == scenario.expected_disk


def test_qcow2_layer_over_another_base_refused(scenario, tmp_path):
    other = tmp_path / 'other.raw'
    other.write_bytes(bytes(len(scenario.expected_disk)))
    layer = str(tmp_path / 'layer.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', str(other), layer],
                   check=True)
    with pytest.raises(errors.WrongBase, match='not a layer over the base disk'):
        scenario.create(disk=layer)


def test_apply_result_is_a_valid_save_image(scenario, tmp_path):
    blob, _ = scenario.create()
    launch = apply.apply_overlay(scenario.base, io.BytesIO(blob), str(tmp_path / 'l'))
    assert 'fake-guest' in savefile.read_save_image(launch.memory_path).xml


def test_base_package_roundtrip(scenario, tmp_path):
    package = str(tmp_path / 'base.zip')
    basevm.export_package(scenario.base, package)
    store = basestore.BaseStore(str(tmp_path / 'store'))
    imported = basevm.import_package(store, package)
    assert imported.base_id == scenario.base.base_id
    again = basevm.import_package(store, package)                  # idempotent
    assert again.path == imported.path
    assert [b.base_id for b in store.list()] == [scenario.base.base_id]
    blob, _ = scenario.create()
    launch = apply.apply_overlay(imported, io.BytesIO(blob), str(tmp_path / 'l'))
    assert qcow2_to_raw(launch.disk_path, str(tmp_path / 'd.raw')) == scenario.expected_disk


def test_tampered_package_refused(scenario, tmp_path):
    import zipfile
    package = str(tmp_path / 'base.zip')
    basevm.export_package(scenario.base, package)
    tampered = str(tmp_path / 'tampered.zip')
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(tampered, 'w') as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == basevm.DISK:
                data = b'\xff' + data[1:]
            dst.writestr(info, data)
    store = basestore.BaseStore(str(tmp_path / 'store'))
    with pytest.raises(errors.BaseVMError, match='SHA-256 mismatch'):
        basevm.import_package(store, tampered)
    assert store.list() == []
    assert [e for e in os.listdir(store.root) if e.startswith('.incoming')] == []


_FUZZ_BLOB = {}


def _fuzz_blob(scenario):
    if 'blob' not in _FUZZ_BLOB:
        _FUZZ_BLOB['blob'] = scenario.create()[0]
    return _FUZZ_BLOB['blob']


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_corrupted_overlays_fail_cleanly(scenario, tmp_path, data):
    """Bit flips, truncations and splices: an OverlayError, no file left behind."""
    original = _fuzz_blob(scenario)
    blob = bytearray(original)
    mode = data.draw(st.sampled_from(['flip', 'truncate', 'splice', 'garbage-tail']))
    if mode == 'flip':
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(blob) - 1))
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    elif mode == 'truncate':
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    elif mode == 'splice':
        start = data.draw(st.integers(0, len(blob) - 1))
        blob[start:start + data.draw(st.integers(1, 64))] = data.draw(st.binary(min_size=1, max_size=64))
    else:
        blob += data.draw(st.binary(min_size=1, max_size=32))
    launch_dir = tmp_path / ('launch-' + os.urandom(8).hex())   # hypothesis seeds `random`
    try:
        apply.apply_overlay(scenario.base, io.BytesIO(bytes(blob)), str(launch_dir))
    except errors.OverlayError:
        assert not launch_dir.exists() or os.listdir(launch_dir) == []
    else:
        # Every byte is covered by a check (trailing bytes too): only flips that cancel out pass.
        assert bytes(blob) == original
        subprocess.run(['rm', '-rf', str(launch_dir)], check=True)


def _hostile_overlay(base, items, data=b'', memory_size=None):
    """A well-formed, correctly checksummed overlay whose items lie."""
    from cloudlet_engine import format as fmt
    out = io.BytesIO()
    writer = fmt.OverlayWriter(out, {'base_id': base.base_id, 'disk_size': base.disk_size,
                                     'memory_size': PAGE if memory_size is None else memory_size})
    raw = fmt.encode_items(items)
    writer.add_segment(fmt.CODEC_NONE, fmt.DELTA_NONE, len(items), len(raw), raw, len(data), data)
    writer.finish()
    return out.getvalue()


def _hostile_cases():
    from cloudlet_engine import format as fmt
    Item = fmt.Item
    return {
        'disk offset past the end': ([Item(fmt.DISK_ZERO, offset=1 << 40)], b''),
        'unaligned disk offset': ([Item(fmt.DISK_DATA, offset=100)], b'x' * PAGE),
        'copy past the base memory': ([Item(fmt.MEM_PAGE_COPY, area=fmt.AREA_BASE_MEMORY,
                                            source=1 << 40)], b''),
        'copy from unwritten launch memory': ([Item(fmt.MEM_PAGE_COPY, area=fmt.AREA_LAUNCH_MEMORY,
                                                    source=0)], b''),
        'copy from unwritten launch disk': ([Item(fmt.DISK_COPY, offset=0, area=fmt.AREA_LAUNCH_DISK,
                                                  source=PAGE)], b''),
        'unknown area': ([Item(fmt.MEM_PAGE_COPY, area=9, source=0)], b''),
        'base memory range past the end': ([Item(fmt.MEM_RANGE_COPY, area=fmt.AREA_BASE_MEMORY,
                                                 source=1 << 40, length=PAGE)], b''),
        'base memory range longer than the image': ([Item(fmt.MEM_RANGE_COPY, area=fmt.AREA_BASE_MEMORY,
                                                          source=0, length=2 * PAGE)], b''),
        'memory grows past its size': ([Item(fmt.MEM_PAGE_ZERO), Item(fmt.MEM_PAGE_ZERO)], b''),
        'memory shorter than declared': ([], b''),
        'data length mismatch': ([Item(fmt.MEM_BYTES, length=10)], b'x' * 11),
    }


@pytest.mark.parametrize('case', sorted(_hostile_cases()))
def test_hostile_items_are_refused(scenario, tmp_path, case):
    items, data = _hostile_cases()[case]
    blob = _hostile_overlay(scenario.base, items, data)
    launch_dir = tmp_path / 'launch'
    with pytest.raises(errors.CorruptOverlay):
        apply.apply_overlay(scenario.base, io.BytesIO(blob), str(launch_dir))
    assert os.listdir(launch_dir) == []


def test_damaged_package_is_a_base_error(scenario, tmp_path):
    package = tmp_path / 'base.zip'
    basevm.export_package(scenario.base, str(package))
    blob = bytearray(package.read_bytes())
    middle = len(blob) // 2             # inside the deflated disk image
    blob[middle:middle + 64] = bytes(64)
    package.write_bytes(bytes(blob))
    store = basestore.BaseStore(str(tmp_path / 'store'))
    with pytest.raises(errors.BaseVMError):
        basevm.import_package(store, str(package))
    assert [e for e in os.listdir(store.root) if e.startswith('.incoming')] == []


def test_unprefetched_source_is_a_context_manager(scenario, tmp_path):
    from cloudlet_engine import source
    path = tmp_path / 'o.clo'
    path.write_bytes(scenario.create()[0])
    with source.open_overlay(str(path), prefetch=False) as stream:
        assert stream.read(8) == b'\x89CLOVL\r\n'


def test_existing_launch_file_is_left_alone(scenario, tmp_path):
    blob, _ = scenario.create()
    launch_dir = tmp_path / 'launch'
    launch_dir.mkdir()
    (launch_dir / apply.LAUNCH_MEMORY).write_bytes(b'not ours')
    with pytest.raises(FileExistsError):
        apply.apply_overlay(scenario.base, io.BytesIO(blob), str(launch_dir))
    assert (launch_dir / apply.LAUNCH_MEMORY).read_bytes() == b'not ours'
    assert os.listdir(launch_dir) == [apply.LAUNCH_MEMORY]


def test_streamed_memory_image_is_bounded_by_the_limit(scenario, tmp_path):
    """memory_size null (a handoff residue): the applier stops at the memory limit."""
    from cloudlet_engine import format as fmt
    out = io.BytesIO()
    writer = fmt.OverlayWriter(out, {'base_id': scenario.base.base_id, 'disk_size': scenario.base.disk_size,
                                     'memory_size': None})
    raw = fmt.encode_items([fmt.Item(fmt.MEM_PAGE_ZERO)] * 3)
    writer.add_segment(fmt.CODEC_NONE, fmt.DELTA_NONE, 3, len(raw), raw, 0, b'')
    writer.finish()
    limits = fmt.Limits(max_memory_bytes=2 * PAGE)
    launch_dir = tmp_path / 'launch'
    with pytest.raises(errors.LimitExceeded, match='memory image grows past the limit'):
        apply.apply_overlay(scenario.base, io.BytesIO(out.getvalue()), str(launch_dir), limits)
    assert not list(launch_dir.iterdir())
