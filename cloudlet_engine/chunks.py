"""Chunking and hashing of disk images and memory snapshots (4 KiB chunks).

Hash lists are stored as flat binary files so that a base's index loads in one
read: `disk.hashes` is one SHA-256 per disk chunk, in order; `memory.pages` is
one record per RAM page of the save image (see MEMORY_PAGE_RECORD).
"""

import hashlib
import os
import struct

from cloudlet_engine import format as fmt
from cloudlet_engine import migstream
from cloudlet_engine import savefile

CHUNK = fmt.CHUNK_SIZE
ZERO_CHUNK = bytes(CHUNK)
ZERO_DIGEST = hashlib.sha256(ZERO_CHUNK).digest()
DIGEST_SIZE = 32
# file offset of the page payload, page address in its block, block number, digest
MEMORY_PAGE_RECORD = struct.Struct('<QQH32s')
_READ_SIZE = 4 << 20


def digest(data):
    return hashlib.sha256(data).digest()


def _data_extents(fd, size):
    """(start, end) ranges holding data; holes read as zeros and are skipped."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:          # ENXIO: only a hole is left
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start - start % CHUNK, min(end, size)
        pos = end


def hash_disk(path, progress=None):
    """SHA-256 of every 4 KiB chunk of a raw image: bytes, 32 per chunk."""
    size = os.path.getsize(path)
    count = (size + CHUNK - 1) // CHUNK
    digests = bytearray(ZERO_DIGEST * count)
    with open(path, 'rb') as f:
        fd = f.fileno()
        for start, end in _data_extents(fd, size):
            for pos in range(start, end, _READ_SIZE):
                block = os.pread(fd, min(_READ_SIZE, end - pos), pos)
                for i in range(0, len(block), CHUNK):
                    # A chunk cut by a hole is padded with the zeros the hole
                    # reads as; if data follows in the same chunk, the next
                    # extent (aligned down) hashes it again, whole.
                    chunk = block[i:i + CHUNK].ljust(CHUNK, b'\0')
                    index = (pos + i) // CHUNK
                    digests[index * 32:index * 32 + 32] = hashlib.sha256(chunk).digest()
                if progress:
                    progress.update('hashing disk', pos + len(block), size)
    return bytes(digests)


def hash_memory(path, progress=None):
    """Index the RAM pages of a save image: (records bytes, block names)."""
    image = savefile.read_save_image(path)
    blocks, block_numbers, records = [], {}, bytearray()
    with open(path, 'rb') as f:
        for page in _pages(f, image):
            number = block_numbers.get(page.block)
            if number is None:
                number = block_numbers[page.block] = len(blocks)
                blocks.append(page.block)
            data = os.pread(f.fileno(), CHUNK, page.file_offset)
            records += MEMORY_PAGE_RECORD.pack(page.file_offset, page.addr, number, digest(data))
            if progress and len(records) % (MEMORY_PAGE_RECORD.size * 4096) == 0:
                progress.update('hashing memory', page.file_offset, image.file_size)
    return bytes(records), blocks


def _pages(f, image):
    for piece in migstream.scan_stream(f, image.stream_offset, image.file_size):
        if isinstance(piece, migstream.Page):
            yield piece


def iter_memory_records(records):
    """(file_offset, addr, block_number, digest) for each stored page record."""
    return MEMORY_PAGE_RECORD.iter_unpack(records)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            block = f.read(_READ_SIZE)
            if not block:
                return h.hexdigest()
            h.update(block)
