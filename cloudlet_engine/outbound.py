"""Where a cloudlet service may connect on a user's behalf: the outbound policy.

A user names URLs that a compute host or nova-api then fetches (overlay_url,
base package URLs, the negotiation's overlay URL) or connects to (a handoff's
destination cloud and every endpoint its catalog names). Without a policy a
user could make the cloud's own hosts fetch its metadata service
(169.254.169.254), its loopback services or its management network.
doc/outbound-policy.md is the operator's view.

`Policy` refuses every address that is not public (`is_public`): loopback,
link-local, private, shared (100.64/10), multicast, reserved, unspecified,
broadcast, documentation and benchmarking ranges (REFUSED_NETWORKS), and
judges an IPv6 address that embeds an IPv4 one (IPv4-mapped,
IPv4-compatible, 6to4, NAT64, Teredo) by the IPv4 address. An operator
widens it by host name (`allowed_hosts`: exact, case-insensitive, a trailing
dot ignored) and by network (`allowed_networks`, CIDR).

A name is resolved once (`getaddrinfo`, a module attribute so that tests can
replace it); every address it resolves to is checked and the connection goes
to one of those very addresses, so a name cannot resolve to a public address
for the check and a private one for the connection. The guarded connections:
`Policy.create_connection` (socket.create_connection's signature),
`HTTPConnection` / `HTTPSConnection` and `Policy.opener()` (urllib), and
`HTTPAdapter` / `Policy.session()` (requests, keystoneauth). None of them uses
a proxy from the environment. A refusal is `Refused`, raised before any
connection; its message names the host and the options that widen the policy,
never the address a name resolved to.
"""

import http.client
import ipaddress
import socket
import sys
import urllib.parse
import urllib.request

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions

from cloudlet_engine import urls

# Tests replace it: the one resolver of every guarded connection.
getaddrinfo = socket.getaddrinfo

WIDEN = ('an operator allows it with [cloudlet] outbound_allowed_hosts or '
         'outbound_allowed_networks')

# Refused unless allow-listed, on top of whatever Python's ipaddress does not
# call global (its list differs between Python releases; this one does not).
REFUSED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    '0.0.0.0/8',            # "this network", 0.0.0.0 (unspecified) included
    '10.0.0.0/8',           # private
    '100.64.0.0/10',        # shared address space (carrier-grade NAT)
    '127.0.0.0/8',          # loopback
    '169.254.0.0/16',       # link-local, the metadata service 169.254.169.254 included
    '172.16.0.0/12',        # private
    '192.0.0.0/24',         # IETF protocol assignments
    '192.0.2.0/24',         # documentation (TEST-NET-1)
    '192.88.99.0/24',       # 6to4 relay anycast (deprecated)
    '192.168.0.0/16',       # private
    '198.18.0.0/15',        # benchmarking
    '198.51.100.0/24',      # documentation (TEST-NET-2)
    '203.0.113.0/24',       # documentation (TEST-NET-3)
    '224.0.0.0/4',          # multicast
    '240.0.0.0/4',          # reserved, 255.255.255.255 (broadcast) included
    '::/8',                 # unspecified, loopback, reserved (IPv4-mapped/-compatible: see is_public)
    '64:ff9b:1::/48',       # local-use NAT64
    '100::/64',             # discard-only
    '2001::/23',            # IETF protocol assignments (Teredo: see is_public)
    '2001:db8::/32',        # documentation
    'fc00::/7',             # unique local
    'fe80::/10',            # link-local
    'fec0::/10',            # site-local (deprecated)
    'ff00::/8',             # multicast
))

_NAT64 = ipaddress.ip_network('64:ff9b::/96')
_IPV4_COMPATIBLE = ipaddress.ip_network('::/96')


class Refused(urls.URLNotAllowed):
    """The policy refuses a host: raised before any connection to it.

    The message says "refused by policy", names the host and the options
    that widen the policy; it never names the address a name resolved to.
    """

    def __init__(self, host, why, what=None):
        self.host = host
        super().__init__('%srefused by policy: host %s %s; %s'
                         % ('%s ' % what if what else '', host, why, WIDEN))


def embedded_ipv4(address):
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo), or ()."""
    if address.version != 6:
        return ()
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo              # (server, client)
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return (ipaddress.IPv4Address(int(address) & 0xffffffff),)
    return ()


def is_public(address):
    """True for an address the default policy allows: global, not multicast, not in REFUSED_NETWORKS."""
    inner = embedded_ipv4(address)
    if inner:
        return all(is_public(each) for each in inner)
    return (address.is_global and not address.is_multicast and
            not any(address in network for network in REFUSED_NETWORKS
                    if network.version == address.version))


def ip_literal(host):
    """The ip_address of a host that is an IP address literal ([...] and %zone allowed), else None."""
    host = (host or '').strip('[]').split('%', 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def parse_network(value):
    """An ip_network from CIDR text (an address alone: that address); ValueError with a clear message."""
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return value
    try:
        return ipaddress.ip_network(str(value).strip(), strict=True)
    except ValueError as exc:
        raise ValueError('%r is not a network in CIDR notation (e.g. 192.0.2.10/32 or '
                         '2001:db8::/64): %s' % (value, exc)) from None


def _host_key(host):
    return host.strip().strip('[]').rstrip('.').lower()


class Policy:
    """The outbound policy: what a cloudlet service may connect to for a user.

    Default: public addresses only (`is_public`). `allowed_hosts`: host
    names allowed whatever they resolve to (an IP address given here is
    allowed as that address); `allowed_networks`: CIDRs allowed.
    """

    def __init__(self, allowed_hosts=(), allowed_networks=()):
        self.allowed_hosts = frozenset(_host_key(h) for h in allowed_hosts or () if h and h.strip())
        networks = [parse_network(n) for n in allowed_networks or ()]
        networks += [ipaddress.ip_network(address) for address in map(ip_literal, self.allowed_hosts)
                     if address is not None]
        self.allowed_networks = tuple(networks)

    def __repr__(self):
        return '<outbound.Policy hosts=%s networks=%s>' % (
            sorted(self.allowed_hosts), [str(n) for n in self.allowed_networks])

    # ------------------------------------------------------------ judging

    def allows_name(self, host):
        return _host_key(host) in self.allowed_hosts

    def allows_address(self, address):
        """True if the policy allows connecting to `address` (an ip_address or its text)."""
        if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            address = ip_literal(str(address))
            if address is None:
                return False
        for candidate in (address,) + tuple(embedded_ipv4(address)):
            if any(candidate in network for network in self.allowed_networks
                   if network.version == candidate.version):
                return True
        return is_public(address)

    def resolve(self, host, port, what=None):
        """getaddrinfo's answers for (host, port), resolved once; Refused unless every address is allowed.

        An IP address literal is not looked up in DNS. A host name the
        policy allows is resolved and allowed whatever it resolves to.
        """
        host = (host or '').strip('[]')
        if not host:
            raise Refused('(none)', 'is empty', what)
        literal = ip_literal(host)
        if literal is not None:
            if not (self.allows_name(host) or self.allows_address(literal)):
                raise Refused(host, 'is not a public address', what)
            return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        answers = getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        if not self.allows_name(host):
            for answer in answers:
                if not self.allows_address(answer[4][0].split('%', 1)[0]):
                    raise Refused(host, 'resolves to an address that is not public', what)
        return answers

    def check_host(self, host, what=None, resolve=True):
        """Refused if connecting to `host` would be refused.

        `resolve=False`: judge IP address literals and allowed names only (no
        DNS); a name that does not resolve is not refused here (connecting
        to it fails on its own).
        """
        if ip_literal(host) is None and (not resolve or self.allows_name(host)):
            return
        try:
            self.resolve(host, None, what)
        except (socket.gaierror, UnicodeError):
            pass

    def check_url(self, url, what=None, resolve=True):
        """check_host for the host of an http(s) URL; other URLs are left to urls.check_url."""
        try:
            parsed = urllib.parse.urlsplit(url)
            host = parsed.hostname
        except (TypeError, ValueError, AttributeError):
            return
        if parsed.scheme.lower() in urls.FETCHABLE_SCHEMES and host:
            self.check_host(host, what, resolve)

    # ------------------------------------------------------------ connecting

    def create_connection(self, address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None,
                          socket_options=None):
        """socket.create_connection, to an address the policy allowed (Refused before connecting)."""
        host, port = address[:2]
        error = None
        for family, socktype, proto, _name, sockaddr in self.resolve(host, port):
            sock = None
            try:
                sock = socket.socket(family, socktype, proto)
                for option in socket_options or ():
                    sock.setsockopt(*option)
                if timeout is None or (isinstance(timeout, (int, float)) and not isinstance(timeout, bool)):
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                error = exc
                if sock is not None:
                    sock.close()
        if error is not None:
            raise error
        raise OSError('getaddrinfo returned no address for %s' % host)

    def opener(self, *handlers):
        """A urllib opener for http and https that connects only where the policy allows.

        No proxy (not even from the environment), no other scheme; `handlers`
        are added (a redirect handler, for instance: without one a redirect
        is an HTTPError). HTTPS verifies the certificate against the URL's
        host name.
        """
        opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.ProxyHandler({}), urllib.request.UnknownHandler(),
                        _HTTPHandler(self), _HTTPSHandler(self), urllib.request.HTTPDefaultErrorHandler(),
                        urllib.request.HTTPErrorProcessor()) + handlers:
            opener.add_handler(handler)
        return opener

    def session(self):
        """A requests.Session whose connections the policy checks, environment ignored (trust_env False).

        keystoneauth: `keystoneauth1.session.Session(session=policy.session(), ...)`.
        Redirects are checked too: each one connects anew.
        """
        session = requests.Session()
        session.trust_env = False
        adapter = HTTPAdapter(self)
        session.mount('http://', adapter)
        session.mount('https://', adapter)
        return session


# Allows every address: for a tool that fetches for the user who runs it (the
# `cloudlet` command, `openstack cloudlet` on a user's machine), never for a service.
OPEN = Policy(allowed_networks=('0.0.0.0/0', '::/0'))


# ---------------------------------------------------------------- urllib (http.client)


class HTTPConnection(http.client.HTTPConnection):
    """http.client.HTTPConnection that connects only where `policy` allows."""

    def __init__(self, *args, policy, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = policy.create_connection


class HTTPSConnection(http.client.HTTPSConnection):
    """http.client.HTTPSConnection that connects only where `policy` allows.

    TLS is unchanged: http.client wraps the socket with server_hostname=self.host.
    """

    def __init__(self, *args, policy, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = policy.create_connection


class _HTTPHandler(urllib.request.HTTPHandler):

    def __init__(self, policy):
        super().__init__()
        self._policy = policy

    def http_open(self, req):
        return self.do_open(self._connection, req)

    def _connection(self, host, **kwargs):
        return HTTPConnection(host, policy=self._policy, **kwargs)


class _HTTPSHandler(urllib.request.HTTPSHandler):

    def __init__(self, policy, context=None):
        super().__init__(context=context)
        self._policy = policy

    def https_open(self, req):
        return self.do_open(self._connection, req, context=self._context)

    def _connection(self, host, **kwargs):
        return HTTPSConnection(host, policy=self._policy, **kwargs)


# ---------------------------------------------------------------- requests (urllib3 2.x)


class _GuardedConnection:
    """urllib3's _new_conn with the policy's create_connection (the rest of urllib3 unchanged)."""

    outbound_policy = None

    def _new_conn(self):
        try:
            sock = self.outbound_policy.create_connection(
                (self._dns_host, self.port), self.timeout, source_address=self.source_address,
                socket_options=self.socket_options)
        except socket.gaierror as exc:
            raise urllib3.exceptions.NameResolutionError(self.host, self, exc) from exc
        except socket.timeout as exc:
            raise urllib3.exceptions.ConnectTimeoutError(
                self, 'Connection to %s timed out. (connect timeout=%s)' % (self.host, self.timeout)) from exc
        except OSError as exc:
            raise urllib3.exceptions.NewConnectionError(
                self, 'Failed to establish a new connection: %s' % exc) from exc
        sys.audit('http.client.connect', self, self.host, self.port)
        return sock


def _pool_classes(policy):
    """{scheme: urllib3 pool class} whose connections are bound to `policy`."""
    classes = {}
    for scheme, pool, connection in (('http', urllib3.HTTPConnectionPool, urllib3.connection.HTTPConnection),
                                     ('https', urllib3.HTTPSConnectionPool, urllib3.connection.HTTPSConnection)):
        guarded = type('Guarded' + connection.__name__, (_GuardedConnection, connection),
                       {'outbound_policy': policy})
        classes[scheme] = type('Guarded' + pool.__name__, (pool,), {'ConnectionCls': guarded})
    return classes


class HTTPAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose connections go only where `policy` allows; no proxies."""

    __attrs__ = requests.adapters.HTTPAdapter.__attrs__ + ['outbound_policy']     # kept when pickled

    def __init__(self, policy, **kwargs):
        self.outbound_policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.outbound_policy)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        # Through a proxy the policy would judge the proxy, not the destination.
        raise requests.exceptions.ProxyError('connections the outbound policy checks use no proxy')
