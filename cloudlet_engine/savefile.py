"""libvirt QEMU save images ("memory snapshots"): header, embedded XML, RAM pages.

A save image written by libvirt's ``virDomainSave*`` (raw format) is::

    [0, 92)                       header, little-endian '<16s5I14I'
    [92, 92 + data_len)           data area: domain XML + NUL, cookie + NUL at
                                  cookie_offset (relative to the data area),
                                  zero padding (libvirt leaves 64 KiB of slack)
    [92 + data_len, EOF)          the QEMU migration stream, big-endian

This module reads and validates the header (`read_save_image`) and rewrites
the XML in place without moving the stream (`rewrite_xml`); migstream.py
scans the QEMU stream for RAM pages.  Nothing here talks to libvirt.
"""


import dataclasses
import io
import os
import struct

from cloudlet_engine.errors import SaveImageError


# --- libvirt header ---------------------------------------------------------

HEADER_FORMAT = '<16s5I14I'
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)  # 92
MAGIC_SAVE = b'LibvirtQemudSave'
MAGIC_PARTIAL = b'LibvirtQemudPart'
SUPPORTED_VERSION = 2
MAX_DATA_LEN = 16 * 1024 * 1024

# libvirt's virQEMUSaveFormat values as stored in the header.
FORMAT_NAMES = {0: 'raw', 1: 'gzip', 2: 'bzip2', 3: 'xz', 4: 'lzop', 5: 'zstd', 6: 'sparse'}

# --- header -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SaveImageHeader:
    """The parsed and validated libvirt header of a save image."""

    magic: bytes
    version: int
    data_len: int
    was_running: int
    compressed: int
    cookie_offset: int
    unused: tuple
    xml: str
    cookie: bytes       # without its NUL; b'' when cookie_offset is 0
    stream_offset: int  # HEADER_SIZE + data_len: where the QEMU stream starts
    file_size: int

    def pack_header(self, magic=None, cookie_offset=None):
        """The 92 header bytes, optionally with another magic or cookie offset."""
        return struct.pack(
            HEADER_FORMAT, self.magic if magic is None else magic, self.version,
            self.data_len, self.was_running, self.compressed,
            self.cookie_offset if cookie_offset is None else cookie_offset,
            *self.unused)


class PositionalReader:
    """Positional reads from a path's fd, a raw fd, or a file object."""

    def __init__(self, fileobj):
        self._owner = fileobj  # keeps a file object (and so its fd) alive
        self._file = None
        self._fd = None
        if isinstance(fileobj, int):
            self._fd = fileobj
            return
        try:
            self._fd = fileobj.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._file = fileobj

    def size(self):
        if self._fd is not None:
            return os.fstat(self._fd).st_size
        return self._file.seek(0, io.SEEK_END)

    def pread(self, length, offset):
        """Up to `length` bytes at `offset`; fewer only at end of file."""
        if length <= 0:
            return b''
        if self._fd is not None:
            data = os.pread(self._fd, length, offset)
            if len(data) < length and data:
                parts = [data]
                got = len(data)
                while got < length:
                    more = os.pread(self._fd, length - got, offset + got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                data = b''.join(parts)
            return data
        self._file.seek(offset)
        return self._file.read(length)


def open_for_read(path_or_fileobj):
    """(source, fd to close or None)."""
    if isinstance(path_or_fileobj, (str, bytes, os.PathLike)):
        try:
            fd = os.open(path_or_fileobj, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SaveImageError('cannot open save image %s: %s'
                                 % (os.fsdecode(path_or_fileobj), exc.strerror)) from exc
        return PositionalReader(fd), fd
    return PositionalReader(path_or_fileobj), None


def read_save_image(path_or_fileobj, *, max_data_len=MAX_DATA_LEN):
    """Read and validate the libvirt header and data area of a save image.

    `path_or_fileobj` is a path, an open fd, or a binary file object (read
    positionally; a file object without a fileno is seeked).  Returns a
    `SaveImageHeader`; raises `SaveImageError` naming the problem.
    """
    source, fd = open_for_read(path_or_fileobj)
    try:
        return _read_header(source, max_data_len)
    except OSError as exc:
        raise SaveImageError('cannot read save image: %s' % exc) from exc
    finally:
        if fd is not None:
            os.close(fd)


def _read_header(source, max_data_len):
    file_size = source.size()
    raw = source.pread(HEADER_SIZE, 0)
    if len(raw) < HEADER_SIZE:
        raise SaveImageError('save image is truncated: %d bytes, shorter than the %d-byte header'
                             % (len(raw), HEADER_SIZE))
    fields = struct.unpack(HEADER_FORMAT, raw)
    magic, version, data_len, was_running, compressed, cookie_offset = fields[:6]
    unused = tuple(fields[6:])
    if magic == MAGIC_PARTIAL:
        raise SaveImageError('save image is incomplete (magic %s): libvirt did not finish writing it'
                             % MAGIC_PARTIAL.decode())
    if magic != MAGIC_SAVE:
        raise SaveImageError('not a libvirt QEMU save image: magic %r, expected %r'
                             % (magic, MAGIC_SAVE))
    if version != SUPPORTED_VERSION:
        raise SaveImageError('unsupported save image version %d (this engine reads version %d)'
                             % (version, SUPPORTED_VERSION))
    if compressed != 0:
        name = FORMAT_NAMES.get(compressed, 'unknown format %d' % compressed)
        raise SaveImageError('compressed save images (xz, gzip...) are not supported: this one is %s;'
                             ' set save_image_format = raw' % name)
    if data_len > max_data_len:
        raise SaveImageError('save image data area of %d bytes exceeds the limit of %d bytes'
                             % (data_len, max_data_len))
    if HEADER_SIZE + data_len > file_size:
        raise SaveImageError('save image data area (%d bytes) extends past the end of the file (%d bytes)'
                             % (data_len, file_size))
    data = source.pread(data_len, HEADER_SIZE)
    if len(data) < data_len:
        raise SaveImageError('save image is truncated inside its data area')
    xml_end = data.find(b'\0')
    if xml_end < 0:
        raise SaveImageError('domain XML in the save image is not NUL-terminated within data_len (%d bytes)'
                             % data_len)
    if xml_end == 0:
        raise SaveImageError('save image holds no domain XML')
    try:
        xml = data[:xml_end].decode('utf-8')
    except UnicodeDecodeError as exc:
        raise SaveImageError('domain XML in the save image is not valid UTF-8 (byte %d)'
                             % exc.start) from exc
    cookie = b''
    if cookie_offset:
        if cookie_offset >= data_len:
            raise SaveImageError('save image cookie offset %d is out of range: the data area is %d bytes'
                                 % (cookie_offset, data_len))
        if cookie_offset <= xml_end:
            raise SaveImageError('save image cookie offset %d is out of range: it points inside the'
                                 ' domain XML (%d bytes + NUL)' % (cookie_offset, xml_end))
        cookie_end = data.find(b'\0', cookie_offset)
        if cookie_end < 0:
            raise SaveImageError('save image cookie at offset %d is not NUL-terminated within data_len'
                                 % cookie_offset)
        cookie = data[cookie_offset:cookie_end]
    return SaveImageHeader(
        magic=magic, version=version, data_len=data_len, was_running=was_running,
        compressed=compressed, cookie_offset=cookie_offset, unused=unused, xml=xml,
        cookie=cookie, stream_offset=HEADER_SIZE + data_len, file_size=file_size)


# --- building and rewriting the data area -------------------------------------

def _xml_bytes(xml):
    if isinstance(xml, str):
        data = xml.encode('utf-8')
    else:
        data = bytes(xml)
        try:
            data.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise SaveImageError('new domain XML is not valid UTF-8 (byte %d)' % exc.start) from exc
    if not data:
        raise SaveImageError('new domain XML is empty')
    if b'\0' in data:
        raise SaveImageError('new domain XML contains a NUL character')
    return data


def _layout_data_area(xml, cookie, data_len):
    """(data area bytes, cookie_offset)."""
    xml_data = _xml_bytes(xml)
    cookie = bytes(cookie or b'')
    if b'\0' in cookie:
        raise SaveImageError('save image cookie contains a NUL character')
    parts = [xml_data, b'\0']
    cookie_offset = 0
    if cookie:
        cookie_offset = len(xml_data) + 1
        parts += [cookie, b'\0']
    used = sum(len(p) for p in parts)
    if used > data_len:
        raise SaveImageError('new domain XML (%d bytes) and cookie (%d bytes) do not fit in the save'
                             ' image data area of %d bytes' % (len(xml_data), len(cookie), data_len))
    parts.append(bytes(data_len - used))
    return b''.join(parts), cookie_offset


_KEEP = object()


def with_xml(header, new_xml, cookie=_KEEP):
    """The header and data area (`header.stream_offset` bytes) of `header`'s
    image with `new_xml` in place of its XML and the magic `MAGIC_SAVE`; the
    cookie kept unless `cookie` is given. What `rewrite_xml` leaves in place,
    for an image written front to back (into a pipe) instead of rewritten.
    """
    if cookie is _KEEP:
        cookie = header.cookie
    data, cookie_offset = _layout_data_area(new_xml, cookie, header.data_len)
    return header.pack_header(magic=MAGIC_SAVE, cookie_offset=cookie_offset) + data


def _pwrite_all(fd, data, offset):
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def rewrite_xml(path, new_xml, *, cookie=_KEEP, fsync=True):
    """Replace the domain XML stored in a save image, in place.

    data_len, version, was_running, compressed and the magic stay; the cookie
    (kept unless `cookie` is given) moves to just after the new XML and the
    rest of the data area is zero-filled, so the QEMU stream does not move.
    Raises `SaveImageError` if the image is unusable or the XML does not fit.

    Like libvirt while saving, the file carries the ``LibvirtQemudPart`` magic
    while its data area is being rewritten, so an interrupted rewrite leaves
    an image that is refused as incomplete rather than one that is silently
    inconsistent.  With ``fsync=False`` the three writes are not synced.
    Returns the new `SaveImageHeader`.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise SaveImageError('cannot open save image %s for writing: %s'
                             % (os.fsdecode(path), exc.strerror)) from exc
    try:
        header = _read_header(PositionalReader(fd), MAX_DATA_LEN)
        if cookie is _KEEP:
            cookie = header.cookie
        data, cookie_offset = _layout_data_area(new_xml, cookie, header.data_len)
        sync = os.fdatasync if fsync else (lambda _fd: None)
        _pwrite_all(fd, MAGIC_PARTIAL, 0)
        sync(fd)
        _pwrite_all(fd, header.pack_header(magic=MAGIC_PARTIAL, cookie_offset=cookie_offset) + data, 0)
        sync(fd)
        _pwrite_all(fd, MAGIC_SAVE, 0)
        sync(fd)
        return _read_header(PositionalReader(fd), MAX_DATA_LEN)
    except OSError as exc:
        raise SaveImageError('cannot rewrite save image %s: %s' % (os.fsdecode(path), exc)) from exc
    finally:
        os.close(fd)
