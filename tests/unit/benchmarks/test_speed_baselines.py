"""bench/baselines.py speed baselines: the tools get the same bytes as ours (no speed asserted)."""

import hashlib
import io
import os
import subprocess

import pytest

from bench import baselines
from cloudlet_engine import apply
from tests.unit.engine.test_engine import Scenario

pytestmark = pytest.mark.skipif(not (os.access(baselines.ZSTD, os.X_OK) and os.access(baselines.XZ, os.X_OK)),
                                reason='needs /usr/bin/zstd and /usr/bin/xz')


@pytest.fixture(scope='module')
def scenario(tmp_path_factory):
    return Scenario(str(tmp_path_factory.mktemp('scenario')))


def test_changed_state_is_what_create_counts(scenario, tmp_path):
    _, stats = scenario.create('zstd')
    out = str(tmp_path / 'changed')
    pages, disk = baselines.write_changed_state(scenario.base, scenario.disk_raw, scenario.memory, out)
    assert (pages, disk) == (stats.memory_pages_changed, stats.disk_chunks_changed)
    assert os.path.getsize(out) == stats.changed_bytes
    for tool, argv in baselines.CREATE_TOOLS.items():
        assert baselines.tool_cpu(argv, out) >= 0
        packed = subprocess.run(argv + [out], capture_output=True, check=True).stdout
        decompress = [argv[0], '-d', '-c']
        assert subprocess.run(decompress, input=packed, capture_output=True, check=True).stdout == \
            open(out, 'rb').read()


@pytest.mark.parametrize('codec', ['zstd', 'xz'])
def test_payloads_decode_to_what_the_codec_stage_decodes(scenario, tmp_path, codec):
    blob, _ = scenario.create(codec)
    overlay = tmp_path / 'overlay.clo'
    overlay.write_bytes(blob)
    directory = tmp_path / 'payloads'
    directory.mkdir()
    tool, level, paths, raw = baselines.write_segment_payloads(scenario.base, str(overlay), str(directory))
    assert tool == codec and paths and raw == sum(os.path.getsize(p) for p in paths)
    joined = hashlib.sha256(b''.join(open(p, 'rb').read() for p in paths)).digest()
    packed = str(tmp_path / 'packed')
    assert baselines.compress_payloads(tool, level, paths, packed) == os.path.getsize(packed)
    assert os.listdir(directory) == []           # the tool's inputs and frames are gone
    argv = baselines.APPLY_TOOLS[tool]
    out = subprocess.run(argv + [packed], capture_output=True, check=True).stdout
    assert hashlib.sha256(out).digest() == joined
    assert baselines.tool_output_size(argv, packed) == raw
    assert baselines.tool_cpu(argv, packed) >= 0
    # The overlay itself still applies: nothing was consumed.
    apply.apply_overlay(scenario.base, io.BytesIO(blob), str(tmp_path / 'launch'))


def test_a_failing_tool_is_an_error(tmp_path):
    missing = str(tmp_path / 'missing')
    with pytest.raises(RuntimeError, match='failed'):
        baselines.tool_cpu(baselines.APPLY_TOOLS['zstd'], missing)
