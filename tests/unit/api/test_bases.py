"""api_extensions.bases pieces that need no nova services."""

import socket
from unittest import mock

from nova import test
from nova.tests.unit.api.openstack import fakes
from webob import exc

from cloudlet_engine import errors as engine_errors

from api_extensions import bases
from api_extensions import router
from cloudlet_engine import urls


class FakeStore:
    def __init__(self):
        self.updates = []

    def update(self, record_id, **fields):
        self.updates.append(fields)


def test_progress_maps_stages_to_statuses():
    store = FakeStore()
    progress = bases._RecordProgress(store, 'id', 'validating')
    progress.update('importing disk.raw', 10, 100)
    progress.update('uploading memory', 5, 50)
    assert [u['status'] for u in store.updates] == ['validating', 'uploading']
    assert store.updates[1]['progress'] == {'stage': 'uploading memory', 'bytes_done': 5,
                                            'bytes_total': 50}


def test_progress_is_throttled_within_a_stage():
    store = FakeStore()
    progress = bases._RecordProgress(store, 'id', 'downloading')
    with mock.patch.object(bases.time, 'monotonic', side_effect=[100.0, 100.1, 100.2, 101.0]):
        for done in (1, 2, 3, 4):
            progress.update('downloading', done, None)
    assert [u['progress']['bytes_done'] for u in store.updates] == [1, 4]
    assert {u['status'] for u in store.updates} == {'downloading'}


def test_describe_error():
    assert bases.describe_error(engine_errors.SourceError('cannot reach x')) == 'cannot reach x'
    assert bases.describe_error(urls.URLNotAllowed('no host')) == 'no host'
    assert bases.describe_error(ValueError('boom')) == 'ValueError: boom'
    assert 'Glance model cannot be loaded' in bases.describe_error(ImportError('nope'))


class FakeImporter:
    """Nothing may be recorded or submitted: the request is refused before."""

    class Store:
        def sweep(self):
            return 0

        def create(self, record):
            raise AssertionError('a record was created')

    def store(self):
        return self.Store()

    def submit(self, *args):
        raise AssertionError('an import was submitted')


class OutboundPolicyTest(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        router.register_opts()
        self.stub_out('api_extensions.policy.authorize', lambda *args, **kwargs: True)
        self.controller = bases.CloudletBasesController(importer=FakeImporter())
        self.connects = []
        self.stub_out('socket.socket.connect', lambda sock, address: self.connects.append(address))

    def create(self, url):
        request = fakes.HTTPRequest.blank('/os-cloudlet/bases')
        return self.assertRaises(exc.HTTPBadRequest, self.controller.create, request,
                                 body={'base': {'url': url}}).explanation

    def test_refused_by_default_without_a_connection(self):
        for url in ('http://127.0.0.1:8774/base.zip', 'http://169.254.169.254/latest/meta-data/',
                    'http://[::ffff:169.254.169.254]/x.zip', 'https://172.16.5.4/base.zip',
                    'http://0.0.0.0:80/x.zip'):
            message = self.create(url)
            self.assertIn('base package URL refused by policy: host ', message)
            self.assertIn('outbound_allowed_hosts or outbound_allowed_networks', message)
        self.assertEqual([], self.connects)

    def test_a_name_is_judged_by_what_it_resolves_to(self):
        self.stub_out('cloudlet_engine.outbound.getaddrinfo', lambda host, port, *args: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, '', ('169.254.169.254', port or 80))])
        message = self.create('http://metadata.example/latest')
        self.assertIn('host metadata.example resolves to an address that is not public', message)
        self.assertNotIn('169.254', message)

    def test_the_allow_list_still_applies(self):
        self.flags(overlay_url_allowed_hosts=['bases.example.com'], group='cloudlet')
        self.assertIn('not in the allowed hosts', self.create('https://8.8.8.8/base.zip'))
