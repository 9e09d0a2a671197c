"""cloudlet_nova.discovery.advertiser with a fake reader and a fake zeroconf (no network)."""

import logging
import signal
import threading
import time

import pytest
import zeroconf

from cloudlet_engine import advert
from cloudlet_nova.discovery import advertiser
from cloudlet_nova.discovery import capacity

KEYSTONE = 'http://10.254.88.2:5100/v3'
BASE_A, BASE_B = 'ab' * 32, '01' * 32


class FakeReader:
    """Answers what it is told; a part set to an exception raises it."""

    def __init__(self):
        self.capacity = capacity.Capacity(4096, 8)
        self.bases = (BASE_A[:12],)
        self.api = '1.2'
        self.keystone = 'http://catalog.test:5000/v3'
        self.calls = []

    def _answer(self, part):
        self.calls.append(part)
        value = getattr(self, part)
        if isinstance(value, BaseException):
            raise value
        return value() if callable(value) else value

    def free_capacity(self):
        return self._answer('capacity')

    def base_short_ids(self):
        return self._answer('bases')

    def api_version(self):
        return self._answer('api')

    def public_keystone_url(self):
        return self._answer('keystone')


class FakeZeroconf:
    def __init__(self, addresses, rename=None, fail=None):
        self.addresses = addresses
        self.calls = []
        self.rename, self.fail = rename, fail
        self.closed = False

    def _call(self, what, info):
        self.calls.append((what, info.name, dict(info.decoded_properties)))
        if self.fail and self.fail[0] == what:
            error = self.fail[1]
            self.fail = None
            raise error

    def register_service(self, info, allow_name_change=False):
        assert allow_name_change
        if self.rename:
            info.name = self.rename
        self._call('register', info)

    def update_service(self, info):
        self._call('update', info)

    def unregister_service(self, info):
        self._call('unregister', info)

    def close(self):
        self.closed = True


@pytest.fixture
def reader():
    return FakeReader()


@pytest.fixture
def zc():
    made = []

    def factory(addresses, **kwargs):
        made.append(FakeZeroconf(addresses, **kwargs))
        return made[-1]
    factory.made = made
    return factory


def make(reader, zc, keystone_url=KEYSTONE, **kwargs):
    return advertiser.Advertiser(reader, kwargs.pop('name', 'box2'), 'RegionOne',
                                 kwargs.pop('addresses', ['10.254.88.2']), keystone_url=keystone_url,
                                 zeroconf_factory=zc, **kwargs)


def calls(zc):
    return [(what, name) for what, name, _ in zc.made[0].calls]


def test_registers_the_advert_with_the_keystone_port(reader, zc):
    adv = make(reader, zc)
    adv.refresh()
    [(what, name, txt)] = zc.made[0].calls
    assert (what, name) == ('register', 'box2._cloudlet._tcp.local.')
    assert zc.made[0].addresses == ['10.254.88.2']
    assert advert.decode(txt) == advert.Advert(KEYSTONE, 'RegionOne', '1.2', (BASE_A[:12],),
                                               free_ram_mb=4096, free_vcpus=8)
    info = adv.info
    assert info.port == 5100 and info.parsed_addresses() == ['10.254.88.2']
    assert info.type == advert.SERVICE_TYPE == '_cloudlet._tcp.local.'
    assert info.host_ttl == info.other_ttl == advertiser.ADVERT_TTL


def test_updates_only_when_the_txt_record_changes(reader, zc):
    adv = make(reader, zc)
    for _ in range(3):
        adv.refresh()
    assert calls(zc) == [('register', 'box2._cloudlet._tcp.local.')]
    reader.capacity = capacity.Capacity(2048, 6)            # a server started
    adv.refresh()
    adv.refresh()
    reader.bases = (BASE_A[:12], BASE_B[:12])               # a base imported
    adv.refresh()
    assert [what for what, _ in calls(zc)] == ['register', 'update', 'update']
    updated = [advert.decode(txt) for what, _, txt in zc.made[0].calls if what == 'update']
    assert (updated[0].free_ram_mb, updated[0].free_vcpus, updated[0].bases) == (2048, 6, (BASE_A[:12],))
    assert updated[1].bases == (BASE_A[:12], BASE_B[:12])
    # Updates keep the registered name, host name, addresses and port.
    assert adv.info.name == 'box2._cloudlet._tcp.local.' and adv.info.server == 'box2._cloudlet._tcp.local.'


def test_a_renamed_registration_keeps_its_new_name(reader, zc):
    # Another responder on the link holds 'box2': zeroconf picks box2-2.
    def factory(addresses):
        return zc(addresses, rename='box2-2._cloudlet._tcp.local.')
    adv = make(reader, factory)
    adv.refresh()
    reader.capacity = capacity.Capacity(1, 1)
    adv.refresh()
    assert calls(zc) == [('register', 'box2-2._cloudlet._tcp.local.'), ('update', 'box2-2._cloudlet._tcp.local.')]


def test_survives_placement_and_glance_errors_keeping_the_last_advert(reader, zc, caplog):
    caplog.set_level(logging.INFO)
    adv = make(reader, zc)
    adv.refresh()
    first = zc.made[0].calls[0][2]
    reader.capacity = capacity.ReadError('Placement resource providers: Service Unavailable (HTTP 503)')
    reader.bases = RuntimeError('a bug in a library')       # not even a ReadError
    for _ in range(3):
        adv.refresh()
    assert calls(zc) == [('register', 'box2._cloudlet._tcp.local.')] and adv.published == first
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if 'HTTP 503' in w]) == 1            # once, not every round
    assert 'keeps the last value' in warnings[0]
    [bug] = [r for r in caplog.records if r.levelno == logging.ERROR]        # once, with its traceback
    assert 'cannot read bases (unexpected RuntimeError: a bug in a library)' in bug.getMessage() and bug.exc_info
    # Placement answers again, with new numbers: updated.
    reader.capacity = capacity.Capacity(1024, 2)
    adv.refresh()
    assert [what for what, _ in calls(zc)] == ['register', 'update']
    assert 'capacity read again' in caplog.text


def test_nothing_is_advertised_until_every_part_was_read(reader, zc):
    reader.api = capacity.ReadError('the cloudlet API (GET /os-cloudlet): Not Found (HTTP 404)')
    adv = make(reader, zc)
    adv.refresh()
    adv.refresh()
    assert zc.made == []                          # no sockets opened either
    assert adv.current() is None and adv.info is None
    reader.api = '1.2'
    adv.refresh()
    assert calls(zc) == [('register', 'box2._cloudlet._tcp.local.')]


def test_keystone_url_from_the_catalog_when_unset(reader, zc):
    adv = make(reader, zc, keystone_url=None)
    adv.refresh()
    adv.refresh()
    assert advert.decode(zc.made[0].calls[0][2]).keystone_url == 'http://catalog.test:5000/v3'
    assert adv.info.port == 5000
    assert reader.calls.count('keystone') == 1          # read once


def test_a_catalog_keystone_url_clients_would_refuse_is_not_advertised(reader, zc, caplog):
    reader.keystone = 'ftp://catalog.test/v3'
    adv = make(reader, zc, keystone_url=None)
    adv.refresh()
    adv.refresh()
    assert adv.info is None and zc.made == []
    assert len([r for r in caplog.records if 'clients would ignore' in r.getMessage()]) == 1


def test_a_failed_registration_is_tried_again(reader, zc):
    def factory(addresses):
        return zc(addresses, fail=('register', zeroconf.EventLoopBlocked()))
    adv = make(reader, factory)
    adv.refresh()
    assert adv.info is None
    adv.refresh()
    assert calls(zc) == [('register', 'box2._cloudlet._tcp.local.')] * 2 and adv.info is not None


def test_stop_withdraws_the_advert_and_closes(reader, zc):
    adv = make(reader, zc)
    stop = threading.Event()
    stop.set()                                    # stopped before the first round
    adv.run(stop, interval=60)
    assert zc.made[0].calls == [] and zc.made[0].closed
    stop = threading.Event()
    rounds = []
    reader.api = lambda: (rounds.append(1), len(rounds) >= 2 and stop.set(), '1.2')[2]
    adv.run(stop, interval=0.01)
    fake = zc.made[1]
    assert [what for what, _, _ in fake.calls] == ['register', 'unregister'] and fake.closed
    assert adv.info is None and adv.zeroconf is None


def test_run_until_signalled_interrupts_a_hung_read_and_withdraws(reader, zc):
    adv = make(reader, zc)
    adv.refresh()                                 # registered
    started = threading.Event()

    def hung():
        started.set()
        time.sleep(30)                            # e.g. Placement not answering
    reader.capacity = hung
    sent = []

    def kill():
        # Only once the read hangs (a loaded machine may take seconds to get there: a
        # signal before it is the between-rounds case below). At the main thread, as the
        # kernel gives a kill(2) of the process to it first: a signal a thread of the test
        # process took instead would leave the main thread's sleep running.
        assert started.wait(60)
        sent.append(time.monotonic())
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
    killer = threading.Thread(target=kill)
    killer.start()
    signum = advertiser.run_until_signalled(adv, interval=60)
    ended = time.monotonic()
    killer.join()
    assert signum == signal.SIGTERM and ended - sent[0] < 5      # not the 30 s of the hung read
    assert [what for what, _ in calls(zc)] == ['register', 'unregister']


def test_run_until_signalled_between_rounds(reader, zc):
    adv = make(reader, zc)
    threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    began = time.monotonic()
    assert advertiser.run_until_signalled(adv, interval=60) == signal.SIGINT
    assert time.monotonic() - began < 5
    assert [what for what, _ in calls(zc)] == ['register', 'unregister']


@pytest.mark.parametrize('kwargs, message', [
    (dict(name=''), '1 to 63 bytes'),
    (dict(name='x' * 64), '1 to 63 bytes'),
    (dict(name='bad\nname'), 'control characters'),
    (dict(keystone_url='ftp://keystone.test/v3'), 'not an http(s) URL'),
    (dict(keystone_url='http://k.test/' + 'v' * 300), 'longer than a TXT entry'),
])
def test_bad_settings_are_refused_at_start(reader, zc, kwargs, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        make(reader, zc, **kwargs)


def test_a_region_clients_would_refuse_is_refused(reader, zc):
    with pytest.raises(ValueError, match='region'):
        advertiser.Advertiser(reader, 'x', 'Region One', ['127.0.0.1'], keystone_url=KEYSTONE,
                              zeroconf_factory=zc)


def test_addresses_default_to_every_ipv4_address(reader, zc):
    adv = advertiser.Advertiser(reader, 'x', 'RegionOne', [], keystone_url=KEYSTONE, zeroconf_factory=zc)
    assert adv.addresses == advertiser.local_ipv4_addresses()
    assert '127.0.0.1' in adv.addresses and adv.addresses[-1].startswith('127.')
    for bad in ('not-an-address', '127.1', '::1'):
        with pytest.raises(ValueError):
            advertiser.Advertiser(reader, 'x', 'RegionOne', [bad], keystone_url=KEYSTONE, zeroconf_factory=zc)


@pytest.mark.parametrize('url, port', [('http://k.test/identity/v3', 80), ('https://k.test/v3', 443),
                                       ('http://k.test:5000/v3', 5000)])
def test_port_of(url, port):
    assert advertiser.port_of(url) == port
