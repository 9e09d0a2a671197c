"""The rules for URLs a cloudlet service fetches (overlays, base packages),
and how URLs are shown back.

One home for both callers: the API checks base package URLs before it
accepts a request, the driver checks a server's overlay_url before it
fetches, `source.open_overlay` checks what it is given. The deployment's
rules are the [cloudlet] options `overlay_url_schemes` and
`overlay_url_allowed_hosts`; the engine fetches only http and https, so no
configuration can allow `file` (or anything else). Which addresses a service
may connect to at all is the outbound policy's (outbound.py).
"""

import urllib.parse

FETCHABLE_SCHEMES = ('http', 'https')


class URLNotAllowed(ValueError):
    """The URL is malformed or outside the configured allow-lists."""


def check_url(url, schemes=FETCHABLE_SCHEMES, allowed_hosts=(), what='URL'):
    """Return `url` parsed (urllib.parse.SplitResult) if it may be fetched.

    `schemes`: allowed schemes (case-insensitive; only FETCHABLE_SCHEMES
    count); `allowed_hosts`: if not empty, the exact host names or IP
    addresses allowed (case-insensitive). Raises URLNotAllowed with a message
    that names the problem; `what` names the URL in it.
    """
    if not isinstance(url, str) or not url or url != url.strip():
        raise URLNotAllowed('the URL must be a non-empty string without surrounding spaces')
    if any(ord(c) < 0x21 or ord(c) == 0x7f for c in url):
        raise URLNotAllowed('the URL contains spaces or control characters')
    try:
        parsed = urllib.parse.urlsplit(url)
        host = parsed.hostname
        parsed.port   # raises ValueError on a bad port
    except ValueError as exc:
        raise URLNotAllowed('the URL cannot be parsed: %s' % exc)
    scheme = parsed.scheme.lower()
    allowed_schemes = sorted({s.lower() for s in schemes}.intersection(FETCHABLE_SCHEMES))
    if scheme not in allowed_schemes:
        raise URLNotAllowed('%s scheme %r is not allowed (allowed: %s)'
                            % (what, scheme, ', '.join(allowed_schemes) or 'none'))
    if not host:
        raise URLNotAllowed('%s has no host' % what)
    hosts = {h.lower() for h in allowed_hosts if h}
    if hosts and host.lower() not in hosts:
        raise URLNotAllowed('%s host %s is not allowed: it is not in the allowed hosts of this cloud '
                            '([cloudlet] overlay_url_allowed_hosts)' % (what, host))
    return parsed


def redact(url):
    """The URL without credentials (user:password@) and without the query string.

    Used for what is stored and shown back: pre-signed URLs carry their
    credentials in the query string.
    """
    try:
        parsed = urllib.parse.urlsplit(url)
        netloc = parsed.hostname or ''
        if ':' in netloc:                      # IPv6 literal
            netloc = '[%s]' % netloc
        if parsed.port:
            netloc += ':%d' % parsed.port
    except ValueError:
        return '<unparsable URL>'
    query = '?...' if parsed.query else ''
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, '', '')) + query


def redact_credentials(text):
    """Drop user:password@ from any URL in `text` (error messages shown to users)."""
    words = []
    for word in text.split(' '):
        if '://' in word and '@' in word:
            head, sep, tail = word.partition('://')
            parts = urllib.parse.urlsplit(sep.join(('x', tail)))
            if parts.username or parts.password:
                host = parts.hostname or ''
                if parts.port:
                    host = '%s:%d' % (host, parts.port)
                word = head + '://***@' + host + tail[tail.index(parts.netloc) + len(parts.netloc):]
        words.append(word)
    return ' '.join(words)
