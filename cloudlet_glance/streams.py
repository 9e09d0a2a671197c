"""File wrappers for image transfers: progress, a digest on upload, holes on download.

Image services read and write through these one chunk at a time, so memory
stays bounded whatever the image size.
"""

import hashlib
import os

from cloudlet_engine import progress as progress_mod

# Glance's default multihash algorithm (`[DEFAULT] hashing_algorithm`); an
# upload is checked against the image's os_hash_value when Glance used it.
UPLOAD_HASH = 'sha512'
_HOLE_BLOCK = 64 * 1024


class ProgressReader:
    """Read side of an upload: counts, hashes and reports the bytes read."""

    def __init__(self, fileobj, progress, stage, total=None):
        self._fileobj = fileobj
        self._progress = progress or progress_mod.NullProgress()
        self._stage = stage
        self.total = total
        self.done = 0
        self.hasher = hashlib.new(UPLOAD_HASH)

    def read(self, size=-1):
        data = self._fileobj.read(size)
        if data:
            self.done += len(data)
            self.hasher.update(data)
            self._progress.update(self._stage, self.done, self.total)
        return data


class ProgressWriter:
    """Write side of a download: counts and reports the bytes written."""

    def __init__(self, fileobj, progress, stage, total=None):
        self._fileobj = fileobj
        self._progress = progress or progress_mod.NullProgress()
        self._stage = stage
        self.total = total
        self.done = 0

    def write(self, data):
        self._store(data)
        self.done += len(data)
        self._progress.update(self._stage, self.done, self.total)
        return len(data)

    def _store(self, data):
        self._fileobj.write(data)


class SparseFileWriter(ProgressWriter):
    """Download into a regular file, leaving all-zero blocks as holes.

    Base disks are mostly empty and memory snapshots hold many zero pages;
    the engine's package import keeps them sparse too. Call finish() at the
    end: a trailing hole only exists once the file is truncated to its size.
    """

    def _store(self, data):
        for start in range(0, len(data), _HOLE_BLOCK):
            block = data[start:start + _HOLE_BLOCK]
            if block.count(0) == len(block):
                self._fileobj.seek(len(block), os.SEEK_CUR)
            else:
                self._fileobj.write(block)

    def finish(self):
        self._fileobj.truncate(self.done)
        self._fileobj.flush()
