"""cloudlet_engine.outbound: the outbound policy, and the connections it guards.

Nothing here connects anywhere but 127.0.0.1: a refused address is refused
before any connection (socket.connect is replaced where that is the point),
and names resolve through a replaced resolver.
"""

import ipaddress
import socket
import urllib.error

import pytest
import requests

from cloudlet_engine import errors
from cloudlet_engine import outbound
from cloudlet_engine import source
from cloudlet_engine import urls
from tests.fixtures import http_server

LOCAL = outbound.Policy(allowed_networks=['127.0.0.1/32'])

REFUSED = [
    '127.0.0.1', '127.255.255.254',                      # loopback
    '169.254.169.254', '169.254.0.1',                    # link-local, the metadata service
    '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.1.1',      # private
    '100.64.0.1', '100.127.255.254',                     # shared (carrier-grade NAT)
    '224.0.0.1', '239.255.255.250',                      # multicast
    '240.0.0.1', '255.255.255.255',                      # reserved, broadcast
    '0.0.0.0', '0.1.2.3',                                # unspecified, "this network"
    '192.0.2.1', '198.51.100.1', '203.0.113.1',          # documentation
    '198.18.0.1', '198.19.255.1',                        # benchmarking
    '192.0.0.1', '192.88.99.1',                          # IETF assignments, 6to4 relay anycast
    '::1', '::',                                         # loopback, unspecified
    'fe80::1', 'febf::1',                                # link-local
    'fc00::1', 'fd12:3456::1',                           # unique local
    'fec0::1', 'ff02::1', 'ff0e::1',                     # site-local, multicast
    '2001:db8::1', '100::1', '64:ff9b:1::1',             # documentation, discard, local NAT64
    '::ffff:127.0.0.1', '::ffff:169.254.169.254', '::ffff:10.0.0.1',   # IPv4-mapped
    '::127.0.0.1', '::169.254.169.254',                  # IPv4-compatible
    '2002:7f00:1::1', '2002:a9fe:a9fe::', '2002:c0a8:101::1',          # 6to4
    '64:ff9b::7f00:1', '64:ff9b::a9fe:a9fe',             # NAT64
    '2001:0:4136:e378:8000:63bf:3f57:fdf2',              # Teredo, client 192.168.2.13
    '2001:0:a00:1:8000:63bf:3fff:fdd2',                  # Teredo, server 10.0.0.1
]

PUBLIC = ['8.8.8.8', '1.1.1.1', '193.0.14.129', '2606:4700:4700::1111', '2a00:1450:4001::200e',
          '::ffff:8.8.8.8', '2002:808:808::1', '64:ff9b::808:808']


@pytest.mark.parametrize('address', REFUSED)
def test_the_default_policy_refuses(address):
    assert not outbound.is_public(ipaddress.ip_address(address))
    assert not outbound.Policy().allows_address(address)
    with pytest.raises(outbound.Refused, match='refused by policy: host %s is not a public address'
                       % address.replace('.', r'\.')):
        outbound.Policy().check_host(address)


@pytest.mark.parametrize('address', PUBLIC)
def test_the_default_policy_allows_public_addresses(address):
    assert outbound.Policy().allows_address(address)
    outbound.Policy().check_host(address)


def test_mapped_addresses_are_unwrapped_where_ipaddress_does_not():
    # Python 3.11's ipaddress calls ::ffff:127.0.0.1 neither loopback nor private.
    assert outbound.embedded_ipv4(ipaddress.ip_address('::ffff:127.0.0.1')) == (
        ipaddress.ip_address('127.0.0.1'),)
    assert outbound.embedded_ipv4(ipaddress.ip_address('2002:7f00:1::1')) == (ipaddress.ip_address('127.0.0.1'),)
    assert outbound.embedded_ipv4(ipaddress.ip_address('64:ff9b::a9fe:a9fe')) == (
        ipaddress.ip_address('169.254.169.254'),)
    assert outbound.embedded_ipv4(ipaddress.ip_address('2606:4700::1')) == ()


def test_allowed_networks_and_hosts():
    policy = outbound.Policy(allowed_hosts=['Overlays.Example.', '10.9.9.9'],
                             allowed_networks=['10.20.0.0/16', 'fd00:1::/64'])
    assert policy.allows_address('10.20.3.4') and policy.allows_address('::ffff:10.20.3.4')
    assert policy.allows_address('fd00:1::5') and policy.allows_address('10.9.9.9')
    assert not policy.allows_address('10.21.0.1') and not policy.allows_address('fd00:2::5')
    assert not policy.allows_address('169.254.169.254')
    assert policy.allows_address('8.8.8.8')                     # public stays allowed
    assert policy.allows_name('overlays.example') and policy.allows_name('OVERLAYS.EXAMPLE.')
    assert not policy.allows_name('evil-overlays.example')


@pytest.mark.parametrize('value', ['10.0.0.5/8', 'nonsense', '10.0.0.0/33', ''])
def test_a_bad_network_is_a_clear_error(value):
    with pytest.raises(ValueError, match='is not a network in CIDR notation'):
        outbound.Policy(allowed_networks=[value])


def test_the_message_names_the_host_and_the_options_never_the_address(monkeypatch):
    _resolving(monkeypatch, {'inside.example': ['10.1.2.3']})
    with pytest.raises(outbound.Refused) as caught:
        outbound.Policy().check_url('http://inside.example:8080/x', what='overlay URL')
    message = str(caught.value)
    assert message == ('overlay URL refused by policy: host inside.example resolves to an address that '
                       'is not public; an operator allows it with [cloudlet] outbound_allowed_hosts or '
                       'outbound_allowed_networks')
    assert isinstance(caught.value, urls.URLNotAllowed) and caught.value.host == 'inside.example'


def test_check_without_resolving_judges_literals_only(monkeypatch):
    monkeypatch.setattr(outbound, 'getaddrinfo', _no_dns)
    policy = outbound.Policy()
    policy.check_url('http://inside.example/x', resolve=False)
    policy.check_url('file:///etc/passwd')                          # not an http(s) URL: not judged here
    with pytest.raises(outbound.Refused):
        policy.check_url('http://[::ffff:169.254.169.254]/latest', resolve=False)
    with pytest.raises(outbound.Refused):
        policy.check_url('http://127.0.0.1:5000/v3')                # a literal: no DNS either way


def test_a_name_that_does_not_resolve_is_left_to_the_connection(monkeypatch):
    _resolving(monkeypatch, {})
    outbound.Policy().check_host('nowhere.invalid')


def test_allow_listed_name_is_allowed_whatever_it_resolves_to(monkeypatch):
    _resolving(monkeypatch, {'overlays.internal': ['10.0.0.7', '127.0.0.1']})
    with pytest.raises(outbound.Refused):
        outbound.Policy().check_host('overlays.internal')
    outbound.Policy(allowed_hosts=['overlays.internal']).check_host('overlays.internal')


# ---------------------------------------------------------------- connecting: resolved once, checked, used


def _no_dns(*args, **kwargs):
    raise AssertionError('a DNS lookup was made')


def _resolving(monkeypatch, answers, calls=None):
    """outbound's resolver answers {name: [address, ...]} (or a list per call); other names fail."""
    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, 'Name or service not known')
        found = answers[host]
        if found and isinstance(found[0], list):      # one answer per call
            found = found.pop(0)
        return [(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_STREAM, 6, '',
                 (a, port or 0) if ':' not in a else (a, port or 0, 0, 0)) for a in found]
    monkeypatch.setattr(outbound, 'getaddrinfo', getaddrinfo)


@pytest.fixture
def connects(monkeypatch):
    """socket.connect replaced: records the addresses connected to (nothing leaves the host)."""
    made = []
    monkeypatch.setattr(socket.socket, 'connect', lambda sock, address: made.append(address))
    return made


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected_to(monkeypatch, connects):
    calls = []
    # DNS rebinding: public for the first lookup, private for the next ones.
    _resolving(monkeypatch, {'rebind.example': [['8.8.8.8'], ['127.0.0.1'], ['127.0.0.1']]}, calls)
    policy = outbound.Policy()
    sock = policy.create_connection(('rebind.example', 80), timeout=1)
    sock.close()
    assert calls == ['rebind.example'] and connects == [('8.8.8.8', 80)]
    with pytest.raises(outbound.Refused):
        policy.create_connection(('rebind.example', 80), timeout=1)
    assert connects == [('8.8.8.8', 80)]


def test_every_address_of_a_name_must_be_allowed(monkeypatch, connects):
    _resolving(monkeypatch, {'mixed.example': ['8.8.8.8', '169.254.169.254']})
    with pytest.raises(outbound.Refused, match='host mixed.example resolves to an address that is not public'):
        outbound.Policy().create_connection(('mixed.example', 443))
    assert connects == []


def test_a_literal_address_is_not_looked_up(monkeypatch, connects):
    monkeypatch.setattr(outbound, 'getaddrinfo', _no_dns)
    with pytest.raises(outbound.Refused):
        outbound.Policy().create_connection(('169.254.169.254', 80))
    outbound.Policy().create_connection(('8.8.8.8', 53), timeout=1).close()
    assert connects == [('8.8.8.8', 53)]


# ---------------------------------------------------------------- urllib, requests, source.open_overlay


@pytest.fixture
def server():
    running = http_server.RedirectingHTTPServer('http://169.254.169.254/latest/meta-data/')
    yield running
    running.shutdown()
    running.server_close()


def test_requests_session_refuses_before_connecting(connects):
    session = outbound.Policy().session()
    assert session.trust_env is False
    for url in ('http://127.0.0.1:5000/v3', 'https://169.254.169.254/latest', 'http://[::ffff:10.0.0.1]/'):
        with pytest.raises(outbound.Refused):
            session.get(url, timeout=2)
    assert connects == []


def test_requests_session_checks_redirects(server):
    session = LOCAL.session()
    assert session.get(server.url('/data'), timeout=5).content == b'data'
    with pytest.raises(outbound.Refused, match='host 169.254.169.254'):
        session.get(server.url('/elsewhere'), timeout=5)


def test_no_proxy_from_the_environment(server, monkeypatch):
    for name in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'all_proxy'):
        monkeypatch.setenv(name, 'http://127.0.0.1:9')       # nothing listens: a proxy would fail
    monkeypatch.delenv('no_proxy', raising=False)
    monkeypatch.delenv('NO_PROXY', raising=False)
    assert LOCAL.session().get(server.url('/data'), timeout=5).content == b'data'
    assert LOCAL.opener().open(server.url('/data'), timeout=5).read() == b'data'


def test_urllib_opener_refuses_and_does_not_follow_redirects(server, connects):
    with pytest.raises(outbound.Refused):
        outbound.Policy().opener().open(server.url('/data'), timeout=5)
    assert connects == []


def test_urllib_opener_without_a_redirect_handler_does_not_redirect(server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        LOCAL.opener().open(server.url('/elsewhere'), timeout=5)
    assert caught.value.code == 302


def test_https_connection_keeps_the_host_name_for_tls():
    connection = outbound.HTTPSConnection('overlays.example', 443, policy=LOCAL)
    assert connection.host == 'overlays.example'        # http.client wraps with server_hostname=self.host
    assert connection._create_connection == LOCAL.create_connection


@pytest.mark.parametrize('url', ['http://127.0.0.1:%d/data', 'http://169.254.169.254/latest/meta-data/',
                                 'http://[::ffff:127.0.0.1]:%d/data'])
def test_open_overlay_refuses_by_default_without_connecting(url, server, connects):
    if '%d' in url:
        url = url % server.server_address[1]
    with pytest.raises(errors.SourceError) as caught:
        source.open_overlay(url, prefetch=False)
    message = str(caught.value)
    assert message.startswith('refused by policy: host ') and 'outbound_allowed_networks' in message
    assert 'data' not in message                # neither the URL's path nor anything it would answer
    assert connects == []


def test_open_overlay_with_a_policy_that_allows_the_host(server):
    with source.open_overlay(server.url('/data'), prefetch=False, policy=LOCAL) as stream:
        assert stream.read() == b'data'
    with source.open_overlay(server.url('/data'), prefetch=False, policy=outbound.OPEN) as stream:
        assert stream.read() == b'data'


def test_open_overlay_still_refuses_redirects(server):
    with pytest.raises(errors.SourceError, match='redirects are not followed'):
        source.open_overlay(server.url('/elsewhere'), prefetch=False, policy=LOCAL)


def test_requests_adapter_uses_no_proxy():
    adapter = outbound.HTTPAdapter(LOCAL)
    with pytest.raises(requests.exceptions.ProxyError):
        adapter.proxy_manager_for('http://proxy.example:3128')
