"""Ranking: answered first, then base present, then capacity, then round-trip time."""

import socket

from cloudlet_client import discovery
from cloudlet_client import ranking
from cloudlet_engine import advert
from tests.unit.client.conftest import BASE_ID


def cloudlet(name, bases=(), more=False, ram=4096, vcpus=4, keystone=None):
    return discovery.Cloudlet(name, ('192.0.2.1',), 80, advert.Advert(
        keystone or 'http://%s.test/v3' % name, 'RegionOne', '1.1', tuple(b[:12] for b in bases), more, ram,
        vcpus))


def probe(rtts):
    return lambda url: rtts[url.split('//')[1].split('.')[0]]


def test_base_then_capacity_then_rtt():
    cloudlets = [cloudlet('far-with-base', [BASE_ID]), cloudlet('near-without', ['cd' * 6]),
                 cloudlet('maybe', ['cd' * 6], more=True), cloudlet('near-with-base', [BASE_ID]),
                 cloudlet('small-with-base', [BASE_ID], ram=128), cloudlet('silent', [BASE_ID])]
    rtts = {'far-with-base': 0.050, 'near-without': 0.001, 'maybe': 0.002, 'near-with-base': 0.004,
            'small-with-base': 0.001, 'silent': None}
    ranked = ranking.rank(cloudlets, base_id=BASE_ID, memory_mb=1024, vcpus=2, probe=probe(rtts))
    assert [r.cloudlet.name for r in ranked] == ['near-with-base', 'far-with-base', 'small-with-base', 'maybe',
                                                 'near-without', 'silent']
    first = ranked[0]
    assert (first.rtt, first.has_base, first.fits) == (0.004, True, True)
    assert (ranked[2].fits, ranked[3].has_base, ranked[4].has_base) == (False, None, False)


def test_without_a_base_or_size_only_rtt_counts():
    ranked = ranking.rank([cloudlet('b'), cloudlet('a')], probe=probe({'a': 0.02, 'b': 0.01}))
    assert [(r.cloudlet.name, r.has_base, r.fits) for r in ranked] == [('b', None, None), ('a', None, None)]
    assert ranking.rank([], probe=None) == []


def test_measure_rtt_connects_to_the_keystone_port():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)
    try:
        port = listener.getsockname()[1]
        rtt = ranking.measure_rtt('http://127.0.0.1:%d/v3' % port, samples=2)
        assert rtt is not None and 0 <= rtt < 1
    finally:
        listener.close()
    # Nothing listens there any more.
    assert ranking.measure_rtt('http://127.0.0.1:%d/v3' % port, samples=1, timeout=0.2) is None
    assert ranking.measure_rtt('not a url') is None
