"""cloudlet_engine.urls: what a cloudlet service agrees to fetch, and what it shows back."""

import pytest

from cloudlet_engine import urls

SCHEMES = ['http', 'https']


@pytest.mark.parametrize('url', [
    'https://bases.example.com/base.zip',
    'http://10.0.0.5:8080/x/base.zip?sig=1',
    'HTTPS://Bases.Example.com/b.zip',
    'http://[2001:db8::1]:80/b.zip',
])
def test_allowed(url):
    assert urls.check_url(url, SCHEMES).hostname


@pytest.mark.parametrize('url, why', [
    ('file:///etc/passwd', "scheme 'file' is not allowed"),
    ('ftp://example.com/b.zip', "scheme 'ftp' is not allowed"),
    ('/var/lib/b.zip', "scheme '' is not allowed"),
    ('https:///b.zip', 'no host'),
    ('http://example.com:99999/b.zip', 'cannot be parsed'),
    ('http://exa mple.com/b.zip', 'spaces or control characters'),
    (' http://example.com/b.zip', 'surrounding spaces'),
    ('', 'non-empty'),
])
def test_refused(url, why):
    with pytest.raises(urls.URLNotAllowed, match=why):
        urls.check_url(url, SCHEMES)


def test_file_never_allowed_even_if_configured():
    with pytest.raises(urls.URLNotAllowed, match="allowed: http"):
        urls.check_url('file:///x', ['file', 'http'])


def test_host_allow_list():
    assert urls.check_url('https://Bases.example.com/b.zip', SCHEMES, ['bases.example.com'])
    with pytest.raises(urls.URLNotAllowed,
                       match='URL host evil.example.com is not allowed: it is not in the allowed hosts'):
        urls.check_url('https://evil.example.com/b.zip', SCHEMES, ['bases.example.com'])
    # userinfo cannot smuggle another host past the list
    with pytest.raises(urls.URLNotAllowed, match='not in the allowed hosts'):
        urls.check_url('https://bases.example.com@evil.example.com/b.zip', SCHEMES,
                       ['bases.example.com'])


@pytest.mark.parametrize('url, shown', [
    ('https://u:p@h.example.com:8443/a/b.zip?X-Sig=s3cr3t', 'https://h.example.com:8443/a/b.zip?...'),
    ('http://h/b.zip', 'http://h/b.zip'),
    ('http://[2001:db8::1]:80/b.zip', 'http://[2001:db8::1]:80/b.zip'),
])
def test_redact(url, shown):
    assert urls.redact(url) == shown
