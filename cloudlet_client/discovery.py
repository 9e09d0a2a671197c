"""Find the cloudlets on the local link: DNS-SD browsing of `_cloudlet._tcp` (zeroconf).

Each cloudlet advertises one service instance, `<name>._cloudlet._tcp.local.`:
its port is its Keystone URL's port, its addresses the advertiser's IPs, and
its TXT record (cloudlet_engine.advert) says where its Keystone is, which API
it speaks, which bases it holds and how much room it has.

An mDNS answer comes from anyone on the link. An answer that does not parse
(oversized or malformed TXT record, a TXT format version this client does
not read, a port that is not the Keystone URL's, a name outside the service
type) or that claims a name another advertiser already holds is ignored with
one log line (logger `cloudlet_client.discovery`, WARNING), never raised.
Nothing here sends credentials anywhere: see cloudlet_client.credentials.
"""

import dataclasses
import logging
import threading
import time
import urllib.parse

from cloudlet_engine import advert as advert_mod

LOG = logging.getLogger(__name__)

SERVICE_TYPE = advert_mod.SERVICE_TYPE
MAX_NAME_BYTES = 63            # RFC 6763 4.1.1: the instance name is one DNS label
MAX_CLOUDLETS = 64             # answers kept per browse: a flood of names is cut here
MAX_ADDRESSES = 16
RESOLVE_MS = (100, 1500)       # bounds of one answer's resolution (SRV, TXT, addresses), milliseconds


@dataclasses.dataclass(frozen=True)
class Cloudlet:
    """One cloudlet found on the link."""
    name: str                  # the instance name, without `._cloudlet._tcp.local.`
    addresses: tuple           # the advertiser's IP addresses (strings)
    port: int                  # the Keystone URL's port
    advert: advert_mod.Advert

    @property
    def keystone_url(self):
        return self.advert.keystone_url

    @property
    def region(self):
        return self.advert.region

    def holds(self, base_id):
        return self.advert.holds(base_id)


def _zeroconf():
    """A zeroconf instance on every interface (imported here: the rest of the module needs none).

    unicast: the queries go out from a port of our own and the answers come
    straight back. On port 5353, shared by every mDNS process of the host, the
    first answer can go to another process's socket (an advertiser on this
    host), and the browser waits for the next query, a second later.
    """
    import zeroconf
    return zeroconf.Zeroconf(unicast=True)


def _service_browser(zc, listener):
    import zeroconf
    return zeroconf.ServiceBrowser(zc, SERVICE_TYPE, listener=listener)


# Module attributes, so that tests can browse a fake zeroconf without a network.
zeroconf_factory = _zeroconf
browser_factory = _service_browser
clock = time.monotonic


def url_port(url):
    """The TCP port of an http(s) URL (its explicit port, else 80 or 443)."""
    parts = urllib.parse.urlsplit(url)
    return parts.port or (443 if parts.scheme == 'https' else 80)


def _instance_name(name):
    """`<name>` of `<name>._cloudlet._tcp.local.`; BadAdvert when the name is not one."""
    if not isinstance(name, str):
        raise advert_mod.BadAdvert('service name is not text')
    suffix = '.' + SERVICE_TYPE
    if not name.lower().endswith(suffix.lower()):
        raise advert_mod.BadAdvert('%r is not a %s instance' % (name[:80], SERVICE_TYPE))
    instance = name[:-len(suffix)]
    if not instance or len(instance.encode('utf-8', 'replace')) > MAX_NAME_BYTES:
        raise advert_mod.BadAdvert('instance name of %d bytes' % len(instance.encode('utf-8', 'replace')))
    if not instance.isprintable():
        raise advert_mod.BadAdvert('instance name %r holds control characters' % instance[:80])
    return instance


def cloudlet_from_answer(name, info):
    """The Cloudlet of one resolved answer (a zeroconf ServiceInfo); BadAdvert when it is not one."""
    instance = _instance_name(name)
    if info is None:
        raise advert_mod.BadAdvert('no SRV/TXT answer')
    advert = advert_mod.decode(info.properties)
    port = info.port
    if not isinstance(port, int) or port != url_port(advert.keystone_url):
        raise advert_mod.BadAdvert('port %r is not the port of keystone=%s' % (port, advert.keystone_url))
    addresses = tuple(str(a) for a in info.parsed_addresses())[:MAX_ADDRESSES]
    return Cloudlet(instance, addresses, port, advert)


class Collector:
    """A zeroconf ServiceListener that resolves each answer and keeps the good ones.

    The first good answer for a name wins; a later one for the same name is
    taken as that advertiser's update only when it comes from the same
    addresses with the same Keystone URL, and is ignored otherwise.
    """

    def __init__(self, deadline, enough=None):
        self.deadline = deadline
        self.enough = enough
        self.found = {}                 # lower-cased name -> Cloudlet, in order of arrival
        self.ignored = []               # (name, why): what the log said
        self.done = threading.Event()
        self._lock = threading.Lock()

    # zeroconf's ServiceListener interface (called on the browser's thread).

    def add_service(self, zc, type_, name):
        self._answer(zc, type_, name)

    def update_service(self, zc, type_, name):
        self._answer(zc, type_, name)

    def remove_service(self, zc, type_, name):
        pass            # a cloudlet that leaves during a browse stays in this browse's answer

    def _resolve(self, zc, type_, name):
        remaining_ms = int((self.deadline - clock()) * 1000)
        return zc.get_service_info(type_, name, timeout=max(RESOLVE_MS[0], min(RESOLVE_MS[1], remaining_ms)))

    def _ignore(self, name, why):
        shown = name[:100] if isinstance(name, str) else repr(name)[:100]
        LOG.warning('ignoring DNS-SD answer %r: %s', shown, why)
        with self._lock:
            if len(self.ignored) < 4 * MAX_CLOUDLETS:
                self.ignored.append((shown, why))

    def _answer(self, zc, type_, name):
        try:
            cloudlet = cloudlet_from_answer(name, self._resolve(zc, type_, name))
        except advert_mod.BadAdvert as exc:
            self._ignore(name, str(exc))
            return
        except Exception as exc:        # whatever a hostile packet makes zeroconf raise
            self._ignore(name, 'unreadable answer: %s: %s' % (exc.__class__.__name__, exc))
            return
        key = cloudlet.name.lower()
        with self._lock:
            known = self.found.get(key)
            if known is None and len(self.found) >= MAX_CLOUDLETS:
                why = 'more than %d cloudlets answered' % MAX_CLOUDLETS
            elif known is not None and (known.keystone_url != cloudlet.keystone_url
                                        or not set(known.addresses) & set(cloudlet.addresses)
                                        and (known.addresses or cloudlet.addresses)):
                why = 'duplicate name: %s already answered from %s (keystone %s)' % (
                    known.name, ', '.join(known.addresses) or 'no address', known.keystone_url)
            else:
                why = None
                self.found[key] = cloudlet
                if self.enough and len(self.found) >= self.enough:
                    self.done.set()
        if why:
            self._ignore(name, why)
        elif known is None:
            LOG.info('cloudlet %s: keystone %s, region %s, API %s, %d bases', cloudlet.name,
                     cloudlet.keystone_url, cloudlet.region, cloudlet.advert.api_version,
                     len(cloudlet.advert.bases))

    def cloudlets(self):
        with self._lock:
            return list(self.found.values())


def browse(timeout=2.0, enough=None, zeroconf=None):
    """The cloudlets that answered within `timeout` seconds, in order of arrival.

    A link where mDNS cannot work (no multicast) is logged and answers [].
    `enough`: return as soon as that many have answered. `zeroconf`: a
    zeroconf.Zeroconf to browse with (default: a new one on every interface,
    closed before returning).
    """
    started = clock()
    collector = Collector(started + timeout, enough)
    try:
        zc = zeroconf if zeroconf is not None else zeroconf_factory()
        try:
            browser = browser_factory(zc, collector)
            try:
                collector.done.wait(max(0.0, started + timeout - clock()))
            finally:
                browser.cancel()
        finally:
            if zeroconf is None:
                zc.close()
    except OSError as exc:
        # No multicast here (no interface, no route): as if no cloudlet answered, so that the caller
        # falls back to its cloud.
        LOG.warning('cannot browse for cloudlets: %s', exc)
    found = collector.cloudlets()
    LOG.debug('browse: %d cloudlets, %d answers ignored, %.2f s', len(found), len(collector.ignored),
              clock() - started)
    return found
