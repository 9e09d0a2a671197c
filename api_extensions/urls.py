"""Checks on URLs that a cloudlet service will fetch (base packages, overlays).

No nova and no engine imports: the same rules serve the API (base package
URLs, checked before a request is accepted) and can serve the driver
(overlay_url). The rules come from the [cloudlet] options
`overlay_url_schemes` and `overlay_url_allowed_hosts`; `file` is never
allowed, whatever the configuration says.
"""

import urllib.parse

NEVER_ALLOWED_SCHEMES = frozenset({'file'})


class URLNotAllowed(ValueError):
    """The URL is malformed or outside the configured allow-lists."""


def check_url(url, schemes, allowed_hosts=()):
    """Return `url` parsed (urllib.parse.SplitResult) if it may be fetched.

    `schemes`: allowed schemes (case-insensitive); `allowed_hosts`: if not
    empty, the exact host names or IP addresses allowed (case-insensitive).
    Raises URLNotAllowed with a message that names the problem.
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
    allowed_schemes = sorted({s.lower() for s in schemes} - NEVER_ALLOWED_SCHEMES)
    if scheme not in allowed_schemes:
        raise URLNotAllowed('URL scheme %r is not allowed (allowed: %s)'
                            % (scheme or '', ', '.join(allowed_schemes) or 'none'))
    if not host:
        raise URLNotAllowed('the URL has no host')
    hosts = {h.lower() for h in allowed_hosts if h}
    if hosts and host.lower() not in hosts:
        raise URLNotAllowed('host %r is not in the allowed hosts for cloudlet URLs' % host)
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
