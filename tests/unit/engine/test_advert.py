"""cloudlet_engine.advert: the DNS-SD TXT record, and what a client refuses in it."""

import pytest

from cloudlet_engine import advert

SAMPLE = advert.Advert('http://10.254.88.2:5100/v3', 'RegionTwo', '1.1', ('0123456789ab', 'fedcba987654'),
                       free_ram_mb=4096, free_vcpus=2)


def wire(txt):
    return {k.encode(): v.encode() for k, v in txt.items()}


def test_round_trip_through_the_wire_form():
    txt = advert.encode(SAMPLE)
    assert txt['bases'] == '0123456789ab,fedcba987654' and 'bases_more' not in txt
    assert advert.decode(wire(txt)) == SAMPLE
    assert advert.decode(wire(txt)).holds('0123456789ab' + '0' * 52)


def test_every_entry_and_the_record_fit_dns_sd():
    many = advert.Advert('https://keystone.example:5000/v3', 'R', '1.1',
                         tuple('%012x' % i for i in range(500)))
    txt = advert.encode(many)
    assert all(len(('%s=%s' % item).encode()) <= advert.MAX_ENTRY_BYTES for item in txt.items())
    assert sum(len(('%s=%s' % item).encode()) + 1 for item in txt.items()) <= advert.MAX_RECORD_BYTES
    decoded = advert.decode(wire(txt))
    assert decoded.bases_more and 0 < len(decoded.bases) < 500
    assert decoded.bases == many.bases[:len(decoded.bases)]


@pytest.mark.parametrize('change, why', [
    ({'txtvers': '2'}, 'format version'),
    ({'txtvers': None}, 'no txtvers'),
    ({'keystone': 'file:///etc/passwd'}, 'not an http'),
    ({'keystone': 'http://' + 'a' * 300}, 'not an http'),
    ({'region': 'a b'}, 'not a region'),
    ({'api': 'one'}, 'not a version'),
    ({'bases': 'zzzz'}, 'short base ids'),
    ({'ram_mb': '-5'}, 'not a count'),
    ({'vcpus': '9' * 40}, 'not a count'),
    ({'region': b'\xff\xfe'}, 'not UTF-8'),
    ({'junk': 'x' * 20000}, 'TXT record of'),
    # Each of these escaped as a plain ValueError, or was accepted (a trailing newline matched `$`).
    ({'keystone': 'http://[::1'}, 'not an http'),
    ({'keystone': 'http://k.test:5000/v3\n'}, 'not an http'),
    ({'ram_mb': '\u00b2'}, 'not a count'),
    ({'vcpus': '\u0663'}, 'not a count'),
    ({'region': 'RegionOne\n'}, 'not a region'),
    ({'api': '1.2\n'}, 'not a version'),
    ({'bases': 'abababababab\n'}, 'short base ids'),
])
def test_hostile_or_unknown_records_are_refused_with_a_reason(change, why):
    txt = wire(advert.encode(SAMPLE))
    for key, value in change.items():
        if value is None:
            txt.pop(key.encode())
        else:
            txt[key.encode()] = value if isinstance(value, bytes) else value.encode()
    with pytest.raises(advert.BadAdvert, match=why):
        advert.decode(txt)


def test_an_entry_too_long_to_advertise_is_refused_before_it_is_sent():
    with pytest.raises(advert.BadAdvert, match='keystone'):
        advert.encode(advert.Advert('http://k/' + 'x' * 300, 'R', '1.1'))
