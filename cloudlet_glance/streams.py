"""File wrappers for image transfers: progress, a digest on upload, holes on
download, and a download read as a stream through a pipe.

Image services read and write through these one chunk at a time, so memory
stays bounded whatever the image size.
"""

import hashlib
import os
import threading

from cloudlet_engine import errors
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


class DownloadPipe:
    """An image streamed out of Glance through a pipe.

    A thread runs `images.download(image_id, <pipe writer>)` while the caller
    reads the other end, so applying an overlay starts with its first segment
    and memory stays bounded (no temporary copy). Closing the read end early
    (the applier found a bad segment) makes the writer fail with EPIPE and
    end. Unbounded: wrap it in cloudlet_engine.source.Bounded.
    """

    def __init__(self, images, image_id, timeout):
        self.image_id, self.timeout = image_id, timeout
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, 'rb')
        self._writer = os.fdopen(write_fd, 'wb')
        self._images = images
        self._error = None
        self._thread = threading.Thread(target=self._download, name='cloudlet-image-download',
                                        daemon=True)
        self._thread.start()

    def _download(self):
        try:
            self._images.download(self.image_id, self._writer)
        except BaseException as exc:        # handed to the reader
            self._error = exc
        finally:
            try:
                self._writer.close()
            except OSError:
                pass

    def read(self, size=-1):
        data = self._reader.read(size)
        if size < 0 or len(data) < size:        # end of the pipe: did the download finish?
            self._thread.join(self.timeout)
            if self._error is not None:
                raise errors.SourceError('downloading overlay image %s failed: %s'
                                         % (self.image_id, self._error)) from self._error
        return data

    def close(self):
        self._reader.close()
        self._thread.join(self.timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
