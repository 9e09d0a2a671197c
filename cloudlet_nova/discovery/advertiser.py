"""The advertiser: this cloudlet as `<instance>._cloudlet._tcp.local.` by multicast DNS.

    advertiser = Advertiser(reader, 'box', 'RegionOne', ['127.0.0.1'],
                            keystone_url='http://127.0.0.1:5000/v3')
    advertiser.run(stop_event, interval=10)     # until stop_event is set

Every `interval` seconds it reads the free capacity, the base VMs and the API
version (capacity.CloudReader); it registers the advert once every part has
been read, and updates it (a new TXT record, announced at once) only when
the TXT record changed. A part that cannot be read keeps its last value, so
the advert stays as it was; the failure is logged when it starts, when its
reason changes and when it ends. Stopping withdraws the advert (goodbye
packets) and closes the sockets.

Records live ADVERT_TTL seconds in caches: a killed advertiser (no goodbye)
is forgotten by browsers within that time.
"""

import ipaddress
import logging
import signal
import socket
import threading
import urllib.parse

import ifaddr
import zeroconf

from cloudlet_engine import advert
from cloudlet_nova.discovery import capacity

LOG = logging.getLogger(__name__)

ADVERT_TTL = 120                     # seconds, every record (RFC 6762's host record TTL)
MAX_INSTANCE_BYTES = 63              # RFC 6763 4.1.1


class Stopping(BaseException):
    """Raised by the signal handler into a read in progress: stop now, not after a timeout."""


def local_ipv4_addresses():
    """Every IPv4 address of this host (network namespace), loopback last."""
    found = sorted({ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips if ip.is_IPv4})
    return [a for a in found if not a.startswith('127.')] + [a for a in found if a.startswith('127.')]


def make_zeroconf(addresses):
    """A python-zeroconf responder on the interfaces holding `addresses` (IPv4 only)."""
    return zeroconf.Zeroconf(interfaces=list(addresses), ip_version=zeroconf.IPVersion.V4Only)


def port_of(url):
    parsed = urllib.parse.urlsplit(url)
    return parsed.port or (443 if parsed.scheme == 'https' else 80)


def check_instance_name(name):
    """An instance name the link accepts, or ValueError."""
    size = len(name.encode('utf-8'))
    if not 0 < size <= MAX_INSTANCE_BYTES:
        raise ValueError('instance name %r: 1 to %d bytes, not %d' % (name, MAX_INSTANCE_BYTES, size))
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in name):
        raise ValueError('instance name %r holds control characters' % name)
    return name


def check_advertisable(keystone_url, region):
    """ValueError unless an advert with this Keystone URL and region is one clients act on."""
    try:
        advert.decode(advert.encode(advert.Advert(keystone_url, region, '1.0')))
    except advert.BadAdvert as exc:
        raise ValueError('clients would ignore this advert: %s' % exc) from exc


class Advertiser:
    """One cloudlet's advert, kept up to date while `run` runs.

    `reader` has free_capacity(), base_short_ids(), api_version() and
    public_keystone_url() (capacity.CloudReader); `addresses` are the local
    IPv4 addresses to advertise on (empty: all of them); `keystone_url`
    unset: the catalog's public identity endpoint; `zeroconf_factory`
    (addresses -> a zeroconf.Zeroconf) is replaced in tests.
    """

    def __init__(self, reader, instance_name, region, addresses=(), keystone_url=None,
                 zeroconf_factory=make_zeroconf):
        self.reader = reader
        self.instance_name = check_instance_name(instance_name)
        self.region = region
        self.addresses = list(addresses) or local_ipv4_addresses()
        if not self.addresses:
            raise ValueError('this host has no IPv4 address to advertise on')
        for address in self.addresses:
            ipaddress.IPv4Address(address)      # ValueError on anything else
        check_advertisable(keystone_url or 'http://keystone.invalid/v3', region)
        self.keystone_url = keystone_url
        self._zeroconf_factory = zeroconf_factory
        self.zeroconf = None
        self.info = None                  # the registered ServiceInfo
        self.published = None             # its TXT properties
        self.values = {}                  # part -> last value read
        self.failures = {}                # part -> message of the failure going on
        self.reading = False              # a read is in progress (the signal handler looks)

    # What the advert says.

    def _parts(self):
        parts = [('capacity', self.reader.free_capacity), ('bases', self.reader.base_short_ids),
                 ('api', self.reader.api_version)]
        if not self.keystone_url and 'keystone' not in self.values:
            parts.append(('keystone', self.reader.public_keystone_url))
        return parts

    def read(self):
        """Read every part; one that fails keeps its last value."""
        for part, read in self._parts():
            self.reading = True
            try:
                value = read()
            except capacity.ReadError as exc:
                self._failed(part, str(exc))
                continue
            except Exception as exc:   # a bug or a surprise: logged with its traceback, never fatal
                self._failed(part, 'unexpected %s: %s' % (type(exc).__name__, exc), unexpected=True)
                continue
            finally:
                self.reading = False
            if self.failures.pop(part, None) is not None:
                LOG.info('%s read again', part)
            self.values[part] = value

    def _failed(self, part, message, unexpected=False):
        """Log a failure when it starts or its reason changes, not every round."""
        if self.failures.get(part) != message:
            LOG.log(logging.ERROR if unexpected else logging.WARNING,
                    'cannot read %s (%s); the advert keeps %s', part, message,
                    'the last value' if part in self.values else 'waiting for it', exc_info=unexpected)
        self.failures[part] = message

    def current(self):
        """The Advert of the values read so far; None until every part was read once."""
        keystone_url = self.keystone_url or self.values.get('keystone')
        if keystone_url is None or not {'capacity', 'bases', 'api'} <= set(self.values):
            return None
        room = self.values['capacity']
        return advert.Advert(keystone_url, self.region, self.values['api'], tuple(self.values['bases']),
                             free_ram_mb=room.free_ram_mb, free_vcpus=room.free_vcpus)

    # Publishing.

    def start(self):
        """Open the mDNS sockets (OSError if an address is not this host's)."""
        if self.zeroconf is None:
            self.zeroconf = self._zeroconf_factory(self.addresses)

    def _service_info(self, current, txt):
        name = self.info.name if self.info else '%s.%s' % (self.instance_name, advert.SERVICE_TYPE)
        return zeroconf.ServiceInfo(
            advert.SERVICE_TYPE, name, port=port_of(current.keystone_url), properties=txt,
            server=self.info.server if self.info else name,    # the host name: one per advert
            addresses=[socket.inet_aton(a) for a in self.addresses], host_ttl=ADVERT_TTL,
            other_ttl=ADVERT_TTL)

    def publish(self, current):
        """Register `current`, or update the registered advert if its TXT record changed."""
        try:
            txt = advert.encode(current)
            advert.decode(txt)                  # what clients will make of it
        except advert.BadAdvert as exc:
            self._failed('advert', 'clients would ignore %s: %s' % (current, exc))
            return
        self.failures.pop('advert', None)
        if self.info is not None and txt == self.published:
            return
        self.start()
        info = self._service_info(current, txt)
        try:
            if self.info is None:
                self.zeroconf.register_service(info, allow_name_change=True)
            else:
                self.zeroconf.update_service(info)
        except zeroconf.Error as exc:
            LOG.error('%s of %s failed (%s: %s); trying again in the next round',
                      'update' if self.info else 'registration', info.name, type(exc).__name__, exc)
            return
        LOG.info('%s %s on %s: %s', 'updated' if self.info else 'advertising', info.name,
                 ', '.join(self.addresses), ' '.join('%s=%s' % item for item in sorted(txt.items())))
        self.info, self.published = info, txt

    def refresh(self):
        """One round: read, then register or update when there is something new."""
        self.read()
        current = self.current()
        if current is not None:
            self.publish(current)

    def withdraw(self):
        """Unregister the advert (goodbye packets) and close the sockets."""
        if self.zeroconf is None:
            return
        try:
            if self.info is not None:
                self.zeroconf.unregister_service(self.info)
                LOG.info('withdrew %s', self.info.name)
        except zeroconf.Error as exc:
            LOG.error('withdrawing %s failed: %s', self.info.name, exc)
        finally:
            self.info = self.published = None
            self.zeroconf.close()
            self.zeroconf = None

    def run(self, stop, interval):
        """Refresh every `interval` seconds until `stop` (a threading.Event) is set; then withdraw."""
        try:
            self.start()
            while not stop.is_set():
                try:
                    self.refresh()
                except Stopping:
                    break
                stop.wait(interval)
        finally:
            self.withdraw()


def run_until_signalled(advertiser, interval, signals=(signal.SIGTERM, signal.SIGINT)):
    """`advertiser.run` in the main thread until one of `signals`; a read in
    progress is interrupted (Stopping). Returns the signal's number, or None.
    """
    stop = threading.Event()
    received = []

    def handler(signum, frame):
        received.append(signum)
        stop.set()
        if advertiser.reading:
            raise Stopping()
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        advertiser.run(stop, interval)
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    return received[0] if received else None
