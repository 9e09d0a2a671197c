"""api_extensions.negotiation: the schema, the decision (fake Glance, flavors, capacity),
the estimate, Placement's question, and the overlay header read from a local HTTP server."""

import io
import os
import socket
import types
import urllib.parse

from nova.api.validation import Schemas
from nova.api.validation import validators
from nova import exception
from nova import test
import pytest
from webob import exc

from cloudlet_engine import format as overlay_format
from cloudlet_glance import properties as props
from tests.fixtures import http_server
from tests.unit.glance import fakes

from api_extensions import negotiation
from api_extensions import router
from api_extensions import schemas

BASE_ID = 'ab' * 32
OTHER_BASE_ID = 'cd' * 32

router.register_opts()


def _valid(body, schema=schemas.negotiate):
    try:
        validators._SchemaValidator(schema).validate(body)
    except exception.ValidationError:
        return False
    return True


def _overlay(**fields):
    overlay = {'base_id': BASE_ID, 'format_version': 1, 'codec': 'zstd'}
    overlay.update(fields)
    return {k: v for k, v in overlay.items() if v is not None}


# --- schemas ----------------------------------------------------------------------


@pytest.mark.parametrize('schema', [schemas.negotiate, schemas.negotiate_response])
def test_nova_accepts_the_schemas(schema):
    Schemas._validate_schema(schema)


@pytest.mark.parametrize('body', [
    {'overlay': _overlay()},
    {'overlay': _overlay(base_id='AB' * 32, memory_mb=256, vcpus=1, size_bytes=0)},
    {'overlay': _overlay(format_version=2, codec='lz4')},     # answered, not refused
    {'overlay_url': 'https://h/o.clovl'},
    {'overlay_url': 'file:///etc/passwd'},                    # the URL rules answer (400)
])
def test_negotiate_valid(body):
    assert _valid(body)


@pytest.mark.parametrize('body', [
    {},
    {'overlay': _overlay(), 'overlay_url': 'https://h/o.clovl'},
    {'overlay': _overlay(base_id='ab' * 31)},
    {'overlay': _overlay(base_id='zz' * 32)},
    {'overlay': _overlay(base_id=None)},
    {'overlay': _overlay(format_version=None)},
    {'overlay': _overlay(format_version='1')},
    {'overlay': _overlay(format_version=0)},
    {'overlay': _overlay(codec=None)},
    {'overlay': _overlay(codec='')},
    {'overlay': _overlay(memory_mb=0)},
    {'overlay': _overlay(vcpus='1')},
    {'overlay': _overlay(size_bytes=-1)},
    {'overlay': _overlay(disk_size=4096)},
    {'overlay': None},
    {'overlay_url': ''},
    {'overlay_url': 'h' * 2049},
    {'url': 'https://h/o.clovl'},
])
def test_negotiate_invalid(body):
    assert not _valid(body)


# --- the decision -----------------------------------------------------------------


def flavor(flavorid, memory_mb=256, vcpus=1, root_gb=1, ephemeral_gb=0, swap=0, extra_specs=None):
    return types.SimpleNamespace(flavorid=flavorid, name='name-' + flavorid, memory_mb=memory_mb,
                                 vcpus=vcpus, root_gb=root_gb, ephemeral_gb=ephemeral_gb,
                                 swap=swap, extra_specs=extra_specs or {})


def add_base(images, base_id=BASE_ID, memory_mb='256', vcpus='1', name='test-base',
             companion_status='active'):
    """A base as the Glance model stores it: three hidden companions, then the disk image."""
    ids = {}
    for kind in props.COMPANION_TYPES:
        ids[kind] = images.create('%s-%s' % (name, kind), {props.CLOUDLET_TYPE: kind,
                                                           props.BASE_ID: base_id}, hidden=True)
        if companion_status == 'active':
            images.upload(ids[kind], io.BytesIO(b'x'))
    disk_props = dict(ids, **{props.CLOUDLET_TYPE: props.BASE_DISK, props.BASE_ID: base_id,
                              props.BASE_NAME: name, props.TRAIT_PROPERTY: 'required',
                              props.MIN_DISK: 1})
    if memory_mb:
        disk_props[props.MEMORY_MB] = memory_mb
    if vcpus:
        disk_props[props.VCPUS] = vcpus
    disk_id = images.create(name, disk_props)
    images.upload(disk_id, io.BytesIO(b'd' * 4096))
    return disk_id


class Capacity:
    """has_capacity(resources, traits) with the answers given, recording the questions."""

    def __init__(self, answer=True):
        self.answer, self.asked = answer, []

    def __call__(self, resources, traits):
        self.asked.append((resources, traits))
        return self.answer(resources) if callable(self.answer) else self.answer


@pytest.fixture
def images(tmp_path):
    return fakes.FakeImageService(tmp_path / 'glance')


def test_acceptable(images):
    disk_id = add_base(images)
    capacity = Capacity()
    answer = negotiation.decide(
        _overlay(size_bytes=20949368), images,
        [flavor('small', memory_mb=512), flavor('big', root_gb=20), flavor('fit', root_gb=2),
         flavor('two', vcpus=2)], capacity)
    assert answer == {'acceptable': True, 'reason': None, 'base_id': BASE_ID,
                      'base_image_id': disk_id, 'flavor_id': 'fit', 'estimated_seconds': 7.7,
                      'format_version': 1, 'codec': 'zstd'}
    assert capacity.asked == [({'VCPU': 1, 'MEMORY_MB': 256, 'DISK_GB': 2}, {'CUSTOM_CLOUDLET_V1'})]
    assert _valid({'negotiation': answer}, schemas.negotiate_response)


def test_an_encrypted_overlay_is_acceptable(images):
    add_base(images)
    answer = negotiation.decide(_overlay(format_version=2), images, [flavor('fit')], Capacity())
    assert (answer['acceptable'], answer['format_version']) == (True, 2)


def test_no_size_no_estimate(images):
    add_base(images)
    answer = negotiation.decide(_overlay(), images, [flavor('fit')], Capacity())
    assert answer['acceptable'] is True
    assert answer['estimated_seconds'] is None


@pytest.mark.parametrize('overlay, words', [
    (_overlay(format_version=3), 'format version 3 is not supported: this cloud reads versions 1, 2'),
    (_overlay(codec='lz4'), "codec 'lz4' is not supported"),
    (_overlay(size_bytes=(16 << 30) + 1), 'larger than the limit'),
    (_overlay(base_id=OTHER_BASE_ID), 'unknown base %s' % OTHER_BASE_ID),
    (_overlay(base_id='not-hex'), 'unknown base not-hex'),
    (_overlay(memory_mb=512), 'the overlay says memory_mb 512, but base test-base was captured '
                              'with 256'),
    (_overlay(vcpus=2), 'the overlay says vcpus 2'),
])
def test_not_acceptable_before_flavors(images, overlay, words):
    add_base(images)
    capacity = Capacity()
    answer = negotiation.decide(overlay, images, [flavor('fit')], capacity)
    assert answer['acceptable'] is False
    assert words in answer['reason']
    assert answer['reason'].endswith('.')
    assert (answer['flavor_id'], answer['estimated_seconds']) == (None, None)
    assert capacity.asked == []
    assert _valid({'negotiation': answer}, schemas.negotiate_response)


def test_incomplete_base_is_unknown(images):
    add_base(images, companion_status='queued')
    answer = negotiation.decide(_overlay(), images, [flavor('fit')], Capacity())
    assert 'unknown base' in answer['reason']
    assert answer['base_image_id'] is None


def test_no_fitting_flavor(images):
    disk_id = add_base(images)
    answer = negotiation.decide(
        _overlay(), images,
        [flavor('more-ram', memory_mb=512), flavor('more-cpu', vcpus=2),
         flavor('no-disk', root_gb=0)],      # zero-disk flavors: nova's policy says no
        Capacity())
    assert answer['acceptable'] is False
    assert answer['reason'] == ('no flavor has exactly 256 MB and 1 vCPUs with a root disk for '
                                'the base image, as base test-base needs.')
    assert (answer['base_image_id'], answer['flavor_id']) == (disk_id, None)


def test_zero_disk_flavor_when_policy_allows(images):
    add_base(images)
    answer = negotiation.decide(_overlay(), images, [flavor('no-disk', root_gb=0)], Capacity(),
                                zero_disk_allowed=True)
    assert answer['flavor_id'] == 'no-disk'


def test_memory_and_vcpus_from_the_request_when_the_base_has_none(images):
    add_base(images, memory_mb=None, vcpus=None)
    flavors = [flavor('fit', memory_mb=1024, vcpus=2)]
    answer = negotiation.decide(_overlay(), images, flavors, Capacity())
    assert 'does not record its memory and vCPUs' in answer['reason']
    answer = negotiation.decide(_overlay(memory_mb=1024, vcpus=2), images, flavors, Capacity())
    assert (answer['acceptable'], answer['flavor_id']) == (True, 'fit')


def test_no_capacity(images):
    add_base(images)
    capacity = Capacity(False)
    answer = negotiation.decide(_overlay(size_bytes=100), images,
                                [flavor('b', root_gb=5), flavor('a', root_gb=5)], capacity)
    assert answer['acceptable'] is False
    assert answer['reason'] == ('no capacity: no compute host for base test-base has 256 MB of '
                                'RAM and 1 vCPUs free for flavor name-a.')
    assert answer['flavor_id'] == 'a'
    assert answer['estimated_seconds'] is None
    assert len(capacity.asked) == 2     # every fitting flavor was asked for


def test_capacity_for_a_later_flavor_and_its_traits(images):
    add_base(images)
    capacity = Capacity(lambda resources: resources['DISK_GB'] >= 10)
    answer = negotiation.decide(
        _overlay(), images,
        [flavor('small'), flavor('large', root_gb=8, ephemeral_gb=1, swap=512,
                                  extra_specs={'trait:HW_CPU_X86_AVX2': 'required',
                                               'trait:CUSTOM_GPU': 'forbidden'})], capacity)
    assert answer['flavor_id'] == 'large'
    assert capacity.asked[-1] == ({'VCPU': 1, 'MEMORY_MB': 256, 'DISK_GB': 10},
                                  {'CUSTOM_CLOUDLET_V1', 'HW_CPU_X86_AVX2'})


def test_estimate():
    assert negotiation.estimate_seconds(None, 'zstd', 25) is None
    assert negotiation.estimate_seconds(0, 'zstd', 25) == round(negotiation.RESTORE_SECONDS, 1)
    # The bench's 20.95 MB zstd overlay over 25 Mbit/s: 8.01 s measured (doc/benchmarks.md).
    assert negotiation.estimate_seconds(20949368, 'zstd', 25) == 7.7
    assert negotiation.estimate_seconds(20949368, 'xz', 25) > 7.7
    assert negotiation.estimate_seconds(20949368, 'zstd', 100) < 3


# --- Placement --------------------------------------------------------------------


class FakeResponse:
    def __init__(self, status_code, body=None, text=''):
        self.status_code, self._body, self.text = status_code, body, text

    def json(self):
        return self._body


class FakePlacement:
    def __init__(self, response):
        self.response, self.calls = response, []

    def get(self, url, version=None, global_request_id=None):
        self.calls.append((url, version))
        if isinstance(self.response, Exception):
            raise self.response
        return self.response


CONTEXT = types.SimpleNamespace(global_id='req-1')


def test_placement_question():
    client = FakePlacement(FakeResponse(200, {'allocation_requests': [{}],
                                              'provider_summaries': {}}))
    has_capacity = negotiation.placement_capacity(CONTEXT, client)
    assert has_capacity({'VCPU': 1, 'MEMORY_MB': 256, 'DISK_GB': 1}, {'CUSTOM_CLOUDLET_V1'})
    url, version = client.calls[0]
    path, _, query = url.partition('?')
    assert path == '/allocation_candidates'
    assert urllib.parse.parse_qs(query) == {
        'resources': ['DISK_GB:1,MEMORY_MB:256,VCPU:1'],
        'required': ['CUSTOM_CLOUDLET_V1,!COMPUTE_STATUS_DISABLED'], 'limit': ['1']}
    assert version == '1.22'
    client.response = FakeResponse(200, {'allocation_requests': [], 'provider_summaries': {}})
    assert not has_capacity({'VCPU': 1}, set())


def test_placement_unknown_trait_is_no_capacity():
    client = FakePlacement(FakeResponse(400, text='No such trait(s): CUSTOM_CLOUDLET_V1'))
    assert not negotiation.placement_capacity(CONTEXT, client)({'VCPU': 1}, {'CUSTOM_CLOUDLET_V1'})


@pytest.mark.parametrize('response', [FakeResponse(500, text='boom'), None,
                                      ConnectionError('refused')])
def test_placement_failure_is_capacity_unknown(response):
    has_capacity = negotiation.placement_capacity(CONTEXT, FakePlacement(response))
    with pytest.raises(negotiation.CapacityUnknown, match='Placement'):
        has_capacity({'VCPU': 1}, set())


# --- the header, read from a URL --------------------------------------------------


def overlay_bytes(base_id=BASE_ID, codec='zstd', key=None):
    out = io.BytesIO()
    meta = {'base_id': base_id, 'disk_size': 8 * 4096, 'memory_size': 4096, 'base_name': 'b'}
    if codec:
        meta['codec'] = codec
    writer = overlay_format.OverlayWriter(out, meta, key=key)
    writer.add_segment(overlay_format.CODEC_NONE, overlay_format.DELTA_NONE, 0, 0, b'', 0,
                       b'x' * 100000)
    writer.finish()
    return out.getvalue()


class ReadHeaderTest(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.www = self.useFixture(test.fixtures.TempDir()).path
        self.http = self.useFixture(http_server.DirectoryHTTPServer(self.www))
        # The test server listens on 127.0.0.1: allowed here, explicitly (the default refuses it).
        self.flags(fetch_timeout=5, outbound_allowed_networks=['127.0.0.1/32'], group='cloudlet')

    def serve(self, name, data):
        with open(os.path.join(self.www, name), 'wb') as f:
            f.write(data)
        return self.http.url(name)

    def bad_request(self, url):
        error = self.assertRaises(exc.HTTPBadRequest, negotiation.read_header, url)
        return error.explanation

    def test_header_and_size(self):
        data = overlay_bytes()
        header = negotiation.read_header(self.serve('o.clovl', data))
        self.assertEqual({'base_id': BASE_ID, 'format_version': 1, 'codec': 'zstd',
                          'size_bytes': len(data)}, header)

    def test_an_encrypted_overlay_is_read_without_its_key(self):
        header = negotiation.read_header(self.serve('o.clovl', overlay_bytes(key=bytes(32))))
        self.assertEqual((BASE_ID, 2), (header['base_id'], header['format_version']))

    def test_header_without_codec(self):
        header = negotiation.read_header(self.serve('o.clovl', overlay_bytes(codec=None)))
        self.assertEqual('auto', header['codec'])

    def test_reads_the_header_only(self):
        data = overlay_bytes()
        reads = []
        real = negotiation._Deadline.read

        def counting(stream, size=-1):
            block = real(stream, size)
            reads.append(len(block))
            return block

        self.stub_out('api_extensions.negotiation._Deadline.read', counting)
        negotiation.read_header(self.serve('o.clovl', data))
        self.assertLess(sum(reads), 1024)
        self.assertLess(sum(reads), len(data))

    def test_corrupt_header(self):
        data = bytearray(overlay_bytes())
        data[30] ^= 0xff          # inside the metadata: its checksum fails
        message = self.bad_request(self.serve('o.clovl', bytes(data)))
        self.assertIn('overlay metadata checksum mismatch', message)

    def test_truncated_header(self):
        message = self.bad_request(self.serve('o.clovl', overlay_bytes()[:40]))
        self.assertIn('overlay truncated', message)

    def test_not_an_overlay(self):
        message = self.bad_request(self.serve('index.html', b'<html>' + b' ' * 100 + b'</html>'))
        self.assertIn('not an openstack-cloudlet overlay', message)

    def test_unsupported_version(self):
        data = bytearray(overlay_bytes())
        data[8] = 9               # the version field (u16 after the magic)
        message = self.bad_request(self.serve('o.clovl', bytes(data)))
        self.assertIn('overlay format version 9', message)

    def test_not_found(self):
        message = self.bad_request(self.http.url('missing.clovl'))
        self.assertIn('HTTP 404', message)

    def test_unreachable(self):
        import socket
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]       # closed once the with ends: nothing listens
        message = self.bad_request('http://127.0.0.1:%d/o.clovl' % port)
        self.assertIn('cannot reach', message)

    def test_refused_urls(self):
        self.assertIn('overlay URL refused', self.bad_request('file:///etc/passwd'))
        self.flags(overlay_url_allowed_hosts=['overlays.example.com'], group='cloudlet')
        message = self.bad_request(self.serve('o.clovl', overlay_bytes()))
        self.assertIn('overlay URL refused', message)
        self.assertIn('127.0.0.1 is not allowed', message)
        self.flags(overlay_url_allowed_hosts=[], overlay_url_schemes=['https'], group='cloudlet')
        self.assertIn("scheme 'http' is not allowed",
                      self.bad_request(self.serve('o.clovl', overlay_bytes())))

    def test_credentials_are_not_shown(self):
        url = self.http.url('missing.clovl').replace('http://', 'http://user:s3cret@')
        message = self.bad_request(url + '?token=s3cret')
        self.assertNotIn('s3cret', message)

    def test_the_outbound_policy_refuses_before_connecting(self):
        self.flags(outbound_allowed_networks=[], group='cloudlet')       # the default
        connects = []
        self.stub_out('socket.socket.connect', lambda sock, address: connects.append(address))
        for url in (self.serve('o.clovl', overlay_bytes()), 'http://169.254.169.254/latest/meta-data/',
                    'http://[::ffff:169.254.169.254]/latest', 'http://10.1.2.3:8080/o.clovl'):
            message = self.bad_request(url)
            self.assertIn('overlay URL refused by policy: host ', message)
            self.assertIn('outbound_allowed_hosts or outbound_allowed_networks', message)
        self.assertEqual([], connects)

    def test_a_name_resolving_to_a_private_address_is_refused(self):
        self.flags(outbound_allowed_networks=[], group='cloudlet')       # the default
        answers = {'overlays.example.com': ['8.8.8.8', '127.0.0.1'], 'inside.example.com': ['127.0.0.1']}

        def getaddrinfo(host, port, *args):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, '', (a, port or 80)) for a in answers[host]]
        self.stub_out('cloudlet_engine.outbound.getaddrinfo', getaddrinfo)
        url = self.serve('o.clovl', overlay_bytes()).replace('127.0.0.1', 'inside.example.com')
        message = self.bad_request(url)
        self.assertIn('refused by policy: host inside.example.com resolves to an address that is not public',
                      message)
        self.assertNotIn('127.0.0.1', message)
        # Every address counts (refused before any connection) ...
        self.assertIn('refused by policy', self.bad_request(url.replace('inside', 'overlays')))
        # ... and the operator's allow-list by name wins.
        self.flags(outbound_allowed_hosts=['Inside.Example.com.'], group='cloudlet')
        self.assertEqual(BASE_ID, negotiation.read_header(url)['base_id'])
