"""DNS-SD browsing on a fake zeroconf: good answers become Cloudlets, hostile ones a log line each."""

import logging

import pytest

from cloudlet_client import discovery
from tests.unit.client.conftest import BASE_ID
from tests.unit.client.conftest import txt

TYPE = discovery.SERVICE_TYPE


class FakeInfo:
    def __init__(self, properties, port=80, addresses=('192.0.2.10',)):
        self.properties, self.port, self._addresses = properties, port, list(addresses)

    def parsed_addresses(self):
        return list(self._addresses)


class FakeZeroconf:
    """Answers in order: (name, FakeInfo or None or an exception to raise); `closed` once closed."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked, self.closed = [], False

    def get_service_info(self, type_, name, timeout=3000):
        self.asked.append((type_, name, timeout))
        info = dict(self.answers)[name] if name in dict(self.answers) else None
        if isinstance(info, Exception):
            raise info
        return info

    def close(self):
        self.closed = True


@pytest.fixture
def browse(monkeypatch):
    """browse() over a FakeZeroconf made of `answers`; returns (cloudlets, fake zeroconf)."""
    def run(answers, **kwargs):
        zc = FakeZeroconf(answers)
        monkeypatch.setattr(discovery, 'zeroconf_factory', lambda: zc)
        monkeypatch.setattr(discovery, 'browser_factory', _browser_in_order(answers))
        return discovery.browse(timeout=0.01, **kwargs), zc
    return run


def _browser_in_order(answers):
    """A browser that delivers `answers` one by one; a name's later answers come as updates."""
    class Browser:
        def __init__(self, zc, listener):
            seen = set()
            for name, info in answers:
                zc.answers = [(name, info)]        # what resolving this name now gives
                (listener.update_service if name in seen else listener.add_service)(zc, TYPE, name)
                seen.add(name)
            self.cancelled = False

        def cancel(self):
            self.cancelled = True
    return Browser


def test_a_good_answer_is_a_cloudlet(browse):
    [cloudlet], zc = browse([('edge-1.' + TYPE, FakeInfo(txt(), 80, ['192.0.2.10', '2001:db8::1']))])
    assert (cloudlet.name, cloudlet.addresses, cloudlet.port) == ('edge-1', ('192.0.2.10', '2001:db8::1'), 80)
    assert (cloudlet.keystone_url, cloudlet.region, cloudlet.advert.api_version) == \
        ('http://keystone.test/v3', 'RegionOne', '1.1')
    assert cloudlet.holds(BASE_ID) and (cloudlet.advert.free_ram_mb, cloudlet.advert.free_vcpus) == (4096, 4)
    assert zc.closed                            # browse made it, browse closed it
    assert all(100 <= timeout <= 1500 for _, _, timeout in zc.asked)


def test_hostile_answers_are_logged_and_ignored(browse, caplog):
    caplog.set_level(logging.WARNING, logger='cloudlet_client.discovery')
    answers = [
        ('big.' + TYPE, FakeInfo({**txt(), **{b'pad%d' % i: b'x' * 250 for i in range(60)}})),
        ('future.' + TYPE, FakeInfo(txt(txtvers='2'))),
        ('noversion.' + TYPE, FakeInfo(txt(txtvers=None))),
        ('badurl.' + TYPE, FakeInfo(txt(keystone='file:///etc/passwd'))),
        ('binary.' + TYPE, FakeInfo(dict(txt(), region=b'\xff\xfe'))),
        ('wrongport.' + TYPE, FakeInfo(txt(), port=5353)),
        ('other._http._tcp.local.', FakeInfo(txt())),
        ('x' * 64 + '.' + TYPE, FakeInfo(txt())),
        ('vanished.' + TYPE, None),
        ('crash.' + TYPE, RuntimeError('zeroconf choked')),
        ('good.' + TYPE, FakeInfo(txt())),
    ]
    cloudlets, _ = browse(answers)
    assert [c.name for c in cloudlets] == ['good']
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 10
    for fragment in ('TXT record of', "TXT format version '2'", 'no txtvers', 'not an http(s) URL',
                     'region is not UTF-8', 'port 5353 is not the port of keystone=http://keystone.test/v3',
                     'is not a _cloudlet._tcp.local. instance', 'instance name of 64 bytes', 'no SRV/TXT answer',
                     'unreadable answer: RuntimeError: zeroconf choked'):
        assert any(fragment in w for w in warnings), fragment


def test_a_duplicate_name_from_another_advertiser_is_ignored(browse, caplog):
    caplog.set_level(logging.WARNING, logger='cloudlet_client.discovery')
    first = FakeInfo(txt(), addresses=['192.0.2.10'])
    impostor = FakeInfo(txt(keystone='http://evil.test/v3'), addresses=['192.0.2.66'])
    same_name_other_host = FakeInfo(txt(), addresses=['192.0.2.67'])
    cloudlets, _ = browse([('edge-1.' + TYPE, first), ('EDGE-1.' + TYPE, impostor),
                           ('edge-1.' + TYPE, same_name_other_host)])
    assert [(c.name, c.keystone_url, c.addresses) for c in cloudlets] == \
        [('edge-1', 'http://keystone.test/v3', ('192.0.2.10',))]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all('duplicate name: edge-1 already answered from 192.0.2.10' in w
                                      for w in warnings)


def test_an_update_from_the_same_advertiser_replaces_the_advert(browse, caplog):
    caplog.set_level(logging.WARNING, logger='cloudlet_client.discovery')
    cloudlets, _ = browse([('edge-1.' + TYPE, FakeInfo(txt())),
                           ('edge-1.' + TYPE, FakeInfo(txt(ram_mb='512')))])
    assert [c.advert.free_ram_mb for c in cloudlets] == [512]
    assert caplog.records == []


def test_a_flood_of_names_is_cut(browse, caplog, monkeypatch):
    monkeypatch.setattr(discovery, 'MAX_CLOUDLETS', 3)
    caplog.set_level(logging.WARNING, logger='cloudlet_client.discovery')
    cloudlets, _ = browse([('edge-%d.%s' % (i, TYPE), FakeInfo(txt())) for i in range(5)])
    assert [c.name for c in cloudlets] == ['edge-0', 'edge-1', 'edge-2']
    assert sum('more than 3 cloudlets answered' in r.getMessage() for r in caplog.records) == 2


def test_enough_ends_the_browse_early(monkeypatch):
    zc = FakeZeroconf([])
    monkeypatch.setattr(discovery, 'browser_factory', _browser_in_order([('edge-1.' + TYPE, FakeInfo(txt()))]))
    # A timeout of an hour: only `enough` can end this browse.
    [cloudlet] = discovery.browse(timeout=3600, enough=1, zeroconf=zc)
    assert cloudlet.name == 'edge-1' and not zc.closed      # the caller's zeroconf stays open


def test_url_port():
    assert [discovery.url_port(u) for u in ('http://h/v3', 'https://h/v3', 'https://h:5000/v3')] == [80, 443, 5000]


def test_a_real_zeroconf_on_loopback_finds_an_advertised_cloudlet():
    """The real library end to end: ServiceInfo registered with the engine's TXT record, browsed back."""
    import os
    import socket

    import zeroconf

    from cloudlet_engine import advert
    name = 'unit-test-%d' % os.getpid()
    record = advert.encode(advert.Advert('http://127.0.0.1:5999/v3', 'RegionOne', '1.1', (BASE_ID[:12],),
                                         free_ram_mb=100, free_vcpus=2))
    info = zeroconf.ServiceInfo(TYPE, '%s.%s' % (name, TYPE), port=5999, properties=record,
                                addresses=[socket.inet_aton('127.0.0.1')], server='%s.local.' % name)
    advertiser = zeroconf.Zeroconf(interfaces=['127.0.0.1'])
    browser = zeroconf.Zeroconf(interfaces=['127.0.0.1'])
    try:
        try:
            advertiser.register_service(info)
        except (OSError, zeroconf.Error) as exc:
            pytest.skip('no multicast on loopback here: %s' % exc)
        found = {c.name: c for c in discovery.browse(timeout=3.0, zeroconf=browser)}
    finally:
        browser.close()
        advertiser.unregister_all_services()
        advertiser.close()
    assert found[name].addresses == ('127.0.0.1',) and found[name].port == 5999
    assert found[name].holds(BASE_ID) and found[name].advert.free_vcpus == 2


def test_a_link_without_multicast_answers_nothing(monkeypatch, caplog):
    def no_network():
        raise OSError(19, 'No such device')
    monkeypatch.setattr(discovery, 'zeroconf_factory', no_network)
    assert discovery.browse(timeout=0.01) == []
    assert 'cannot browse for cloudlets: [Errno 19] No such device' in caplog.text
