"""The transfer wrappers: what they count, hash and write."""

import hashlib
import io

from cloudlet_engine import progress as progress_mod
from cloudlet_glance import streams


class RecordingProgress(progress_mod.Progress):
    def __init__(self):
        self.calls = []

    def update(self, stage, done, total=None):
        self.calls.append((stage, done, total))


def test_progress_reader_counts_hashes_and_reports():
    data = b'abc' * 50000
    progress = RecordingProgress()
    reader = streams.ProgressReader(io.BytesIO(data), progress, 'uploading', len(data))
    assert b''.join(iter(lambda: reader.read(65536), b'')) == data
    assert reader.done == len(data)
    assert reader.hasher.hexdigest() == hashlib.sha512(data).hexdigest()
    assert progress.calls[-1] == ('uploading', len(data), len(data))


def test_sparse_writer_keeps_content_and_length(tmp_path):
    zeros, data = bytes(200 * 1024), b'\x01' * 5000
    path = tmp_path / 'out'
    with open(path, 'wb') as f:
        writer = streams.SparseFileWriter(f, None, 'downloading')
        for chunk in (zeros, data, zeros, data[:10], zeros):     # ends with a hole
            writer.write(chunk)
        writer.finish()
    expected = zeros + data + zeros + data[:10] + zeros
    assert path.read_bytes() == expected and writer.done == len(expected)
