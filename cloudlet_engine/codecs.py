"""Segment codecs (xz, zstd) and the per-segment delta against base chunks.

A segment's data area holds the chunks the base could not supply. Each such
chunk has a *counterpart*: the base chunk at the same disk offset, or the base
page at the same guest address. Encoding a segment against its counterparts is
where a small in-place change (a few bytes of a page) becomes a few bytes of
overlay:

* zstd: the counterparts, concatenated, are a raw-content dictionary
  (zstd's equivalent of `--patch-from`, one segment at a time);
* xz: the data is first encoded with the xdelta3 program against the
  counterparts, and the VCDIFF is kept only where it is smaller than the data.

Every decoder is bounded: it never produces more than the length the segment
header declared, so a hostile segment cannot exhaust memory.
"""

import lzma
import os
import subprocess
import tempfile

import zstandard

from cloudlet_engine import errors
from cloudlet_engine import format as fmt

DEFAULT_LEVELS = {fmt.CODEC_ZSTD: 3, fmt.CODEC_XZ: 1, fmt.CODEC_NONE: 0}
CODEC_BY_NAME = {name: code for code, name in fmt.CODEC_NAMES.items()}
XDELTA3 = os.environ.get('CLOUDLET_XDELTA3', 'xdelta3')
_XDELTA_TIMEOUT = 120
# xdelta3 reads extra arguments from $XDELTA: never inherit them.
_XDELTA_ENV = {k: v for k, v in os.environ.items() if k != 'XDELTA'}


def codec_by_name(name):
    try:
        return CODEC_BY_NAME[name]
    except KeyError:
        raise ValueError('unknown codec %r (choose from %s)' % (name, ', '.join(sorted(CODEC_BY_NAME))))


def compress(codec, data, level=None):
    level = DEFAULT_LEVELS[codec] if level is None else level
    if codec == fmt.CODEC_ZSTD:
        return zstandard.ZstdCompressor(level=level).compress(data)
    if codec == fmt.CODEC_XZ:
        return lzma.compress(data, format=lzma.FORMAT_XZ, preset=level)
    return bytes(data)


def decompress(codec, stored, raw_len, what, dictionary=None):
    """Decode `stored` to exactly `raw_len` bytes, or raise CorruptOverlay."""
    try:
        if codec == fmt.CODEC_ZSTD:
            out = _zstd_decompress(stored, raw_len, what, dictionary)
        elif codec == fmt.CODEC_XZ:
            dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            out = dec.decompress(stored, max_length=raw_len + 1)
            if not dec.eof and len(out) <= raw_len:
                raise errors.CorruptOverlay('%s: xz stream is incomplete' % what)
            _no_trailing_bytes(dec, what, 'xz stream')
        else:
            out = stored
    except (lzma.LZMAError, zstandard.ZstdError) as exc:
        raise errors.CorruptOverlay('%s does not decompress: %s' % (what, exc))
    if len(out) != raw_len:
        raise errors.CorruptOverlay('%s decompresses to %s bytes, %d were declared'
                                    % (what, len(out) if len(out) <= raw_len else 'more than %d' % raw_len,
                                       raw_len))
    return out


def _zstd_decompress(stored, raw_len, what, dictionary):
    # python-zstandard trusts the frame's content size over max_output_size,
    # so check the declared size before letting it allocate anything.
    size = zstandard.frame_content_size(stored)
    if size != raw_len:
        raise errors.CorruptOverlay('%s: zstd frame declares %d bytes, the segment %d'
                                    % (what, size, raw_len))
    dict_data = _raw_dict(dictionary) if dictionary else None
    dec = zstandard.ZstdDecompressor(dict_data=dict_data).decompressobj(write_size=max(raw_len, 1))
    out = dec.decompress(stored)
    if not dec.eof:
        raise errors.CorruptOverlay('%s: zstd frame is incomplete' % what)
    _no_trailing_bytes(dec, what, 'zstd frame')
    return out


def _no_trailing_bytes(decoder, what, unit):
    # One frame (stream) per payload: bytes after it would be covered by no check.
    if decoder.unused_data:
        raise errors.CorruptOverlay('%s: %d bytes follow the %s' % (what, len(decoder.unused_data), unit))


def _raw_dict(content):
    return zstandard.ZstdCompressionDict(bytes(content), dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def encode_data(codec, data, counterparts, level=None, workdir=None):
    """Encode a segment's data area; return (delta mode, stored bytes)."""
    level = DEFAULT_LEVELS[codec] if level is None else level
    if codec == fmt.CODEC_ZSTD and counterparts:
        cctx = zstandard.ZstdCompressor(level=level, dict_data=_raw_dict(counterparts))
        return fmt.DELTA_ZSTD_DICT, cctx.compress(data)
    if codec == fmt.CODEC_XZ and counterparts:
        vcdiff = xdelta3_encode(counterparts, data, workdir)
        if len(vcdiff) < len(data):
            return fmt.DELTA_XDELTA3, compress(codec, vcdiff, level)
    return fmt.DELTA_NONE, compress(codec, data, level)


def decode_data(segment, counterparts, what, workdir=None):
    """The raw data area of `segment`, given its counterparts."""
    codec, delta, raw_len = segment.codec, segment.delta, segment.data_raw_len
    if delta == fmt.DELTA_ZSTD_DICT:
        if codec != fmt.CODEC_ZSTD:
            raise errors.CorruptOverlay('%s: zstd dictionary delta with codec %s'
                                        % (what, fmt.CODEC_NAMES[codec]))
        return decompress(codec, segment.data_stored, raw_len, what, dictionary=counterparts)
    if delta == fmt.DELTA_XDELTA3:
        # The VCDIFF itself is bounded by the data limit before decoding it.
        vcdiff = _decompress_unknown_size(codec, segment.data_stored, raw_len + (1 << 20), what)
        return xdelta3_decode(counterparts, vcdiff, raw_len, what, workdir)
    return decompress(codec, segment.data_stored, raw_len, what)


def _decompress_unknown_size(codec, stored, limit, what):
    try:
        if codec == fmt.CODEC_XZ:
            dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            out = dec.decompress(stored, max_length=limit + 1)
            if not dec.eof and len(out) <= limit:
                raise errors.CorruptOverlay('%s: xz stream is incomplete' % what)
            _no_trailing_bytes(dec, what, 'xz stream')
        elif codec == fmt.CODEC_ZSTD:
            # Bounded before it allocates: the frame must declare its size.
            size = zstandard.frame_content_size(stored)
            if size < 0 or size > limit:
                raise errors.LimitExceeded('%s: delta of %s bytes (limit %d)'
                                           % (what, 'undeclared' if size < 0 else size, limit))
            dec = zstandard.ZstdDecompressor().decompressobj(write_size=max(size, 1))
            out = dec.decompress(stored)
            if not dec.eof:
                raise errors.CorruptOverlay('%s: zstd frame is incomplete' % what)
            _no_trailing_bytes(dec, what, 'zstd frame')
        else:
            out = stored
    except (lzma.LZMAError, zstandard.ZstdError) as exc:
        raise errors.CorruptOverlay('%s does not decompress: %s' % (what, exc))
    if len(out) > limit:
        raise errors.LimitExceeded('%s: delta larger than %d bytes' % (what, limit))
    return out


def _run_xdelta3(args, source, stdin_bytes, out_limit, what, workdir):
    with tempfile.NamedTemporaryFile(dir=workdir, prefix='.xdelta-src-') as src, \
            tempfile.TemporaryFile(dir=workdir) as inp:
        src.write(source)
        src.flush()
        inp.write(stdin_bytes)
        inp.seek(0)
        # -B >= source size: the whole source stays in the window; the decoder
        # must get the same -B, else it thrashes (10x slower on a 1 GiB source).
        window = max(len(source), 1 << 20)
        # -D/-R: never let xdelta3 run an external (de)compressor on our bytes.
        cmd = [XDELTA3] + args + ['-D', '-R', '-B', str(window), '-c', '-s', src.name]
        try:
            proc = subprocess.Popen(cmd, stdin=inp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=_XDELTA_ENV)
        except OSError as exc:
            raise errors.CloudletError('cannot run %s: %s' % (XDELTA3, exc))
        try:
            out = proc.stdout.read(out_limit + 1)
            if len(out) > out_limit:
                proc.kill()
                raise errors.CorruptOverlay('%s: xdelta3 output exceeds %d bytes' % (what, out_limit))
            _, err = proc.communicate(timeout=_XDELTA_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise errors.CorruptOverlay('%s: xdelta3 did not finish in %d s' % (what, _XDELTA_TIMEOUT))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise errors.CorruptOverlay('%s: xdelta3 failed: %s'
                                        % (what, err.decode(errors='replace').strip()[:300]))
        return out


def xdelta3_encode(source, target, workdir=None):
    return _run_xdelta3(['-e', '-1', '-S', 'none', '-A'], source, target,
                        len(target) * 2 + (1 << 20), 'xdelta3 encode', workdir)


def xdelta3_decode(source, vcdiff, raw_len, what, workdir=None):
    out = _run_xdelta3(['-d'], source, vcdiff, raw_len, what, workdir)
    if len(out) != raw_len:
        raise errors.CorruptOverlay('%s: xdelta3 produced %d bytes, %d were declared'
                                    % (what, len(out), raw_len))
    return out
