"""What a cloudlet advertises by DNS-SD: the TXT record of `_cloudlet._tcp`.

A device on the local link learns, without credentials, where the cloud is
(Keystone URL and region), which cloudlet API it speaks, which base VMs it
holds and how much room it has. The advertiser (cloudlet_nova/discovery)
encodes; clients (cloudlet_client) decode, and ignore what does not parse:
an mDNS answer comes from anyone on the link.

TXT keys (DNS-SD, RFC 6763: each `key=value` at most 255 bytes):

    txtvers   format of this record: "1"
    keystone  the Keystone v3 URL (http or https)
    region    the region name
    api       the cloudlet API version, "major.minor"
    bases     the first 12 hex digits of each base VM id, comma-separated
              (as many as fit; `bases_more=1` says some were left out)
    ram_mb    free RAM on the cloudlet's compute hosts, MiB
    vcpus     free vCPUs
"""

import dataclasses
import re
import urllib.parse

SERVICE_TYPE = '_cloudlet._tcp.local.'
TXT_VERSION = '1'
MAX_ENTRY_BYTES = 255          # RFC 6763 6.1: one length byte per key=value
MAX_RECORD_BYTES = 1300        # RFC 6763 6.2: a TXT record that fits one packet
SHORT_ID = 12

_API = re.compile(r'^\d{1,3}\.\d{1,3}$')
_SHORT = re.compile(r'^[0-9a-f]{%d}$' % SHORT_ID)
_REGION = re.compile(r'^[A-Za-z0-9._-]{1,64}$')


class BadAdvert(ValueError):
    """A TXT record this client does not act on; the message says why."""


@dataclasses.dataclass(frozen=True)
class Advert:
    keystone_url: str
    region: str
    api_version: str
    bases: tuple = ()          # short base ids
    bases_more: bool = False
    free_ram_mb: int = 0
    free_vcpus: int = 0

    def holds(self, base_id):
        """Does the cloudlet say it holds this base (a full id or a short one)?"""
        return base_id[:SHORT_ID].lower() in self.bases


def encode(advert):
    """The TXT properties ({str: str}) of `advert`, within DNS-SD's limits."""
    fixed = {'txtvers': TXT_VERSION, 'keystone': advert.keystone_url, 'region': advert.region,
             'api': advert.api_version, 'ram_mb': str(int(advert.free_ram_mb)),
             'vcpus': str(int(advert.free_vcpus))}
    for key, value in fixed.items():
        if len(('%s=%s' % (key, value)).encode()) > MAX_ENTRY_BYTES:
            raise BadAdvert('%s is longer than a TXT entry can hold' % key)
    used = sum(len(('%s=%s' % item).encode()) + 1 for item in fixed.items())
    room = min(MAX_ENTRY_BYTES, MAX_RECORD_BYTES - used - len('bases_more=1') - 2) - len('bases=')
    shown, more = [], bool(advert.bases_more)
    for short in advert.bases:
        short = short[:SHORT_ID].lower()
        if len(','.join(shown + [short])) > room:
            more = True
            break
        shown.append(short)
    txt = dict(fixed, bases=','.join(shown))
    if more:
        txt['bases_more'] = '1'
    return txt


def _text(properties, key, required=True):
    value = properties.get(key, properties.get(key.encode()))
    if isinstance(value, bytes):
        try:
            value = value.decode('utf-8')
        except UnicodeDecodeError:
            raise BadAdvert('%s is not UTF-8' % key)
    if value is None and required:
        raise BadAdvert('no %s' % key)
    return value


def _count(properties, key):
    value = _text(properties, key, required=False)
    if value is None:
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise BadAdvert('%s=%r is not a count' % (key, value[:20]))
    return int(value)


def decode(properties):
    """An Advert from TXT properties ({bytes or str: bytes or str or None}); BadAdvert."""
    if not isinstance(properties, dict):
        raise BadAdvert('no TXT properties')
    size = sum(len(k) + len(v or b'') + 2 for k, v in properties.items()
               if isinstance(k, (bytes, str)) and isinstance(v, (bytes, str, type(None))))
    if size > 8 * MAX_RECORD_BYTES:
        raise BadAdvert('TXT record of %d bytes' % size)
    version = _text(properties, 'txtvers')
    if version != TXT_VERSION:
        raise BadAdvert('TXT format version %r; this client reads %r' % (version[:8], TXT_VERSION))
    keystone = _text(properties, 'keystone')
    try:
        parsed = urllib.parse.urlsplit(keystone)
    except ValueError:          # e.g. 'http://[::1'
        parsed = None
    if (parsed is None or parsed.scheme not in ('http', 'https') or not parsed.hostname or len(keystone) > 200
            or not keystone.isprintable() or ' ' in keystone):
        raise BadAdvert('keystone=%r is not an http(s) URL' % keystone[:60])
    region = _text(properties, 'region')
    if not _REGION.fullmatch(region):
        raise BadAdvert('region=%r is not a region name' % region[:60])
    api = _text(properties, 'api')
    if not _API.fullmatch(api):
        raise BadAdvert('api=%r is not a version' % api[:20])
    bases = tuple(b for b in (_text(properties, 'bases', required=False) or '').split(',') if b)
    if not all(_SHORT.fullmatch(b) for b in bases):
        raise BadAdvert('bases holds something other than short base ids')
    return Advert(keystone, region, api, bases, _text(properties, 'bases_more', required=False) == '1',
                  _count(properties, 'ram_mb'), _count(properties, 'vcpus'))
