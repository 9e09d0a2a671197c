"""Where an overlay comes from: a local file or an http(s) URL, read as a stream.

`open_overlay` returns a file-like object with `read(n)` and `close()`. A
background thread reads ahead into a bounded queue (`Prefetcher`), so the
network keeps flowing while a segment is being decompressed and applied.
Every source is bounded in bytes and in time between reads; an http(s) source
connects only where an outbound policy allows (outbound.py), through no proxy.
"""

import queue
import threading
import urllib.error
import urllib.parse
import urllib.request

from cloudlet_engine import errors
from cloudlet_engine import outbound
from cloudlet_engine import urls

DEFAULT_MAX_BYTES = 16 << 30
DEFAULT_TIMEOUT = 30.0
READ_BLOCK = 256 << 10
PREFETCH_BLOCKS = 64          # 16 MiB of read-ahead at most


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a URL that was checked must be the URL fetched."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise errors.SourceError('%s redirects to %s: redirects are not followed' % (req.full_url, newurl))


class Bounded:
    """A raw stream that refuses to deliver more than `max_bytes` (every overlay source is one)."""

    def __init__(self, raw, max_bytes, name):
        self.raw, self.max_bytes, self.name = raw, max_bytes, name
        self.count = 0

    def read(self, size=-1):
        try:
            data = self.raw.read(size)
        except (OSError, urllib.error.URLError) as exc:   # timeouts and resets included
            raise errors.SourceError('reading %s failed after %d bytes: %s' % (self.name, self.count, exc))
        self.count += len(data)
        if self.count > self.max_bytes:
            raise errors.LimitExceeded('%s is larger than the limit of %d bytes' % (self.name, self.max_bytes))
        return data

    def close(self):
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_overlay(location, max_bytes=DEFAULT_MAX_BYTES, timeout=DEFAULT_TIMEOUT,
                 allow_files=True, prefetch=True, policy=None):
    """Open an overlay for streaming. `location`: a path, file://, http:// or https:// URL.

    `policy`: the outbound.Policy an http(s) URL's connection must pass (None:
    the default policy, public addresses only); a refused host is a
    SourceError saying "refused by policy", raised before any connection.
    """
    parsed = urllib.parse.urlsplit(location)
    scheme = parsed.scheme.lower()
    if scheme in urls.FETCHABLE_SCHEMES:
        try:
            urls.check_url(location, what='overlay URL')
        except urls.URLNotAllowed as exc:
            raise errors.SourceError(str(exc))
        raw = _open_http(location, timeout, outbound.Policy() if policy is None else policy)
        length = raw.headers.get('Content-Length')
        if length and length.isdigit() and int(length) > max_bytes:
            raw.close()
            raise errors.LimitExceeded('%s is %s bytes, more than the limit of %d'
                                       % (location, length, max_bytes))
    elif scheme in ('', 'file') and allow_files:
        path = parsed.path if scheme == 'file' else location
        try:
            raw = open(path, 'rb')
        except OSError as exc:
            raise errors.SourceError('cannot open overlay %s: %s' % (path, exc.strerror))
    else:
        raise errors.SourceError('overlay location %r: scheme %r is not allowed (use %s)'
                                 % (location, scheme, 'a path, file://, http:// or https://'
                                    if allow_files else 'http:// or https://'))
    stream = Bounded(raw, max_bytes, location)
    return Prefetcher(stream) if prefetch else stream


def _open_http(url, timeout, policy):
    opener = policy.opener(_NoRedirect())      # no proxy: the connection itself is checked
    request = urllib.request.Request(url, headers={'User-Agent': 'openstack-cloudlet'})
    try:
        response = opener.open(request, timeout=timeout)
    except outbound.Refused as exc:
        raise errors.SourceError(str(exc)) from None
    except urllib.error.HTTPError as exc:
        raise errors.SourceError('fetching %s failed: HTTP %d %s' % (url, exc.code, exc.reason))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, 'reason', exc)
        raise errors.SourceError('cannot reach %s: %s' % (url, reason))
    return response


class Prefetcher:
    """Reads a stream ahead in a thread; `read(n)` serves from what arrived."""

    def __init__(self, stream, block=READ_BLOCK, depth=PREFETCH_BLOCKS):
        self._stream = stream
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pending = b''
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(block,), daemon=True,
                                        name='overlay-prefetch')
        self._thread.start()

    def _run(self, block):
        try:
            while not self._stop.is_set():
                data = self._stream.read(block)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:   # handed to the reader, raised there
            self._put(exc)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def read(self, size=-1):
        parts, have = [], 0
        while size < 0 or have < size:
            if not self._pending:
                if self._done:
                    break
                item = self._queue.get()
                if isinstance(item, BaseException):
                    self._done = True
                    raise item
                if not item:
                    self._done = True
                    break
                self._pending = item
            take = self._pending if size < 0 else self._pending[:size - have]
            self._pending = self._pending[len(take):]
            parts.append(take)
            have += len(take)
        return b''.join(parts)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
