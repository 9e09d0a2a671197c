"""/os-cloudlet/bases: base VM package import through nova-api, into nova's Glance fixture.

The package is a real one (engine `basevm.build_base` + `export_package` on a
synthetic base: fake save image, small disk), served by a local HTTP server;
the import runs the real `cloudlet_glance.model.import_base_package` through
`cloudlet_glance.images.NovaImages` against the Glance fixture.
"""

import json
import os
import random
import threading
import time
from unittest import mock
import uuid

from cloudlet_engine import basevm
from cloudlet_glance import properties

from api_extensions import bases
from api_extensions import records
from tests.fixtures import fake_savefile
from tests.functional.api import base

PAGE = 4096


def build_package(directory, name='api-test-base', seed=7):
    """A small, valid base VM package; returns (path, base_id)."""
    rng = random.Random(seed)
    work = os.path.join(directory, 'work-%s' % name)
    os.makedirs(work)
    disk = bytearray(32 * PAGE)
    for i in range(0, 32, 3):
        disk[i * PAGE:(i + 1) * PAGE] = rng.randbytes(PAGE)
    with open(os.path.join(work, 'disk.in'), 'wb') as f:
        f.write(disk)
    pages = [('pc.ram', i * PAGE, rng.randbytes(PAGE) if i % 4 else None) for i in range(24)]
    fake_savefile.build_fake_save_image(os.path.join(work, 'memory.in'), fake_savefile.SAMPLE_XML,
                                        pages)
    base_vm = basevm.build_base(work, os.path.join(work, 'disk.in'),
                                os.path.join(work, 'memory.in'), name)
    package = os.path.join(directory, '%s.zip' % name)
    basevm.export_package(base_vm, package)
    return package, base_vm.base_id


class BasesTest(base.CloudletAPITestBase):

    def setUp(self):
        super().setUp()
        self.www = self.useFixture(base.fixtures.TempDir()).path
        self.http = self.useFixture(base.PackageServer(self.www))
        # The package server listens on 127.0.0.1, which the outbound policy refuses by default.
        self.flags(outbound_allowed_networks=['127.0.0.1/32'], group='cloudlet')

    # --- helpers -----------------------------------------------------------

    def post(self, body, api=None):
        api = api or self.api
        resp = api.api_request('/os-cloudlet/bases', method='POST', body=json.dumps(body))
        return resp.status_code, (resp.json() if resp.content else None)

    def get(self, path, api=None):
        resp = (api or self.api).api_request(path)
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text

    def delete(self, record_id, api=None):
        resp = (api or self.api).api_request('/os-cloudlet/bases/%s' % record_id, method='DELETE')
        return resp.status_code, (resp.json() if resp.content else None)

    def wait_for(self, record_id, statuses=('active', 'error'), api=None, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.get('/os-cloudlet/bases/%s' % record_id, api=api)
            self.assertEqual(200, status, body)
            if body['base']['status'] in statuses:
                return body['base']
            if time.monotonic() > deadline:
                self.fail('import %s still %s' % (record_id, body['base']))
            time.sleep(0.1)

    def import_package(self, name='api-test-base', **extra):
        package, base_id = build_package(self.www, name=name)
        status, body = self.post({'base': dict({'url': '%s/%s' % (self.http.base_url,
                                                                 os.path.basename(package))},
                                               **extra)})
        self.assertEqual(202, status, body)
        return body['base'], base_id

    # --- POST: 202, then active ---------------------------------------------

    def test_import_becomes_active_with_linked_images(self):
        record, base_id = self.import_package(visibility='shared')
        self.assertEqual('queued', record['status'])
        self.assertIsNone(record['image_id'])
        self.assertTrue(uuid.UUID(record['id']))
        self.assertTrue(record['links'][0]['href'].endswith('/os-cloudlet/bases/%s' % record['id']))

        done = self.wait_for(record['id'])
        self.assertEqual('active', done['status'], done)
        self.assertIsNone(done['error'])
        self.assertEqual(base_id, done['base_id'])
        self.assertEqual('api-test-base', done['name'])   # from the manifest
        self.assertEqual(self.api.project_id, done['project_id'])

        disk = self.glance.show(None, done['image_id'])
        props = disk['properties']
        self.assertEqual(properties.BASE_DISK, props[properties.CLOUDLET_TYPE])
        self.assertEqual(base_id, props[properties.BASE_ID])
        self.assertEqual('shared', disk['visibility'])
        companions = done['companion_image_ids']
        for kind in properties.COMPANION_TYPES:
            self.assertEqual(companions[kind], props[kind])
            companion = self.glance.show(None, props[kind])
            self.assertEqual(kind, companion['properties'][properties.CLOUDLET_TYPE])
            self.assertTrue(companion['os_hidden'])
        # The download is gone; only the record stays.
        self.assertEqual(['%s.json' % record['id']],
                         sorted(os.listdir(os.path.join(self.state_dir, 'bases'))))

    def test_import_named_and_listed(self):
        record, _ = self.import_package(name='pkg', visibility='private')
        status, body = self.post({'base': {'url': 'https://example.invalid/x.zip', 'name': 'n2'}})
        self.assertEqual(202, status)
        self.wait_for(record['id'])
        self.wait_for(body['base']['id'])
        status, listing = self.get('/os-cloudlet/bases')
        self.assertEqual(200, status)
        self.assertEqual([record['id'], body['base']['id']], [r['id'] for r in listing['bases']])

    def test_record_visible_from_another_worker(self):
        # Another nova-api worker = another router over the same state dir.
        record, _ = self.import_package()
        done = self.wait_for(record['id'])
        other_worker = records.RecordStore(self.state_dir)
        self.assertEqual(done['image_id'], other_worker.get(record['id'])['image_id'])

    # --- POST: refused at once (400/403) ------------------------------------

    def test_bad_url_scheme(self):
        for url in ('file:///etc/passwd', 'ftp://example.com/base.zip', '/tmp/base.zip',
                    'https:///no-host', 'http://exa mple.com/x'):
            status, body = self.post({'base': {'url': url}})
            self.assertEqual(400, status, (url, body))
            self.assertIn('base package URL refused', body['badRequest']['message'])
        self.assertFalse(os.path.exists(os.path.join(self.state_dir, 'bases')) and
                         os.listdir(os.path.join(self.state_dir, 'bases')))

    def test_outbound_policy(self):
        self.flags(outbound_allowed_networks=[], group='cloudlet')       # the default
        for url in (self.http.url('x.zip'), 'http://169.254.169.254/latest/meta-data/',
                    'https://[::ffff:10.0.0.1]/x.zip'):
            status, body = self.post({'base': {'url': url}})
            self.assertEqual(400, status, (url, body))
            self.assertIn('base package URL refused by policy: host ', body['badRequest']['message'])
        self.assertFalse(os.path.exists(os.path.join(self.state_dir, 'bases')) and
                         os.listdir(os.path.join(self.state_dir, 'bases')))

    def test_outbound_policy_again_at_the_download(self):
        # Allowed when the request came, refused by the time the import runs.
        path, _ = build_package(self.www)
        submitted = []
        with mock.patch.object(bases.BaseImporter, 'submit',
                               lambda importer, *args: submitted.append((importer,) + args)):
            status, body = self.post({'base': {'url': self.http.url(os.path.basename(path))}})
        self.assertEqual(202, status, body)
        self.flags(outbound_allowed_networks=[], group='cloudlet')
        [(importer, context, record, url)] = submitted
        importer.run(context, record['id'], url, record['name'], record['visibility'])
        done = self.wait_for(body['base']['id'])
        self.assertEqual('error', done['status'])
        self.assertIn('refused by policy: host 127.0.0.1', done['error'])

    def test_host_allow_list(self):
        self.flags(overlay_url_allowed_hosts=['bases.example.com'], group='cloudlet')
        status, body = self.post({'base': {'url': self.http.url('x.zip')}})
        self.assertEqual(400, status, body)
        self.assertIn('not in the allowed hosts', body['badRequest']['message'])

    def test_bad_bodies(self):
        for body in ({}, {'base': {}}, {'base': {'url': ''}},
                     {'base': {'url': 'https://h/x.zip', 'visibility': 'everyone'}},
                     {'base': {'url': 'https://h/x.zip', 'checksum': 'x'}},
                     {'base': {'url': 'https://h/x.zip'}, 'extra': 1},
                     {'base': {'url': 'https://h/x.zip', 'name': ''}}):
            status, resp = self.post(body)
            self.assertEqual(400, status, (body, resp))

    def test_public_needs_admin(self):
        status, body = self.post({'base': {'url': 'https://h/x.zip', 'visibility': 'public'}})
        self.assertEqual(403, status, body)
        status, body = self.post({'base': {'url': 'https://example.invalid/x.zip',
                                           'visibility': 'public'}}, api=self.admin_api)
        self.assertEqual(202, status, body)
        self.wait_for(body['base']['id'])

    def test_reader_cannot_import_but_can_read(self):
        status, body = self.post({'base': {'url': 'https://h/x.zip'}},
                                 api=self.api_fixture.reader_api)
        self.assertEqual(403, status, body)
        record, _ = self.import_package()
        status, body = self.get('/os-cloudlet/bases/%s' % record['id'],
                                api=self.api_fixture.reader_api)
        self.assertEqual(200, status, body)

    def test_policy_override_forbids(self):
        self.cloudlet_policy.set_rules({'cloudlet:base:import': '!', 'cloudlet:base:list': '!'})
        status, _ = self.post({'base': {'url': 'https://h/x.zip'}})
        self.assertEqual(403, status)
        status, _ = self.get('/os-cloudlet/bases')
        self.assertEqual(403, status)

    # --- POST: 202, then error ---------------------------------------------

    def test_unreachable_url(self):
        status, body = self.post({'base': {'url': 'http://127.0.0.1:9/base.zip'}})
        self.assertEqual(202, status, body)
        done = self.wait_for(body['base']['id'])
        self.assertEqual('error', done['status'])
        self.assertIn('cannot reach http://127.0.0.1:9/base.zip', done['error'])
        self.assertIn('refused', done['error'].lower())

    def test_missing_file(self):
        status, body = self.post({'base': {'url': self.http.url('nothing.zip')}})
        self.assertEqual(202, status, body)
        done = self.wait_for(body['base']['id'])
        self.assertEqual('error', done['status'])
        self.assertIn('HTTP 404', done['error'])

    def test_too_large(self):
        package, _ = build_package(self.www)
        self.flags(max_overlay_bytes=1000, group='cloudlet')
        status, body = self.post({'base': {'url': '%s/%s' % (self.http.base_url,
                                                            os.path.basename(package))}})
        self.assertEqual(202, status, body)
        done = self.wait_for(body['base']['id'])
        self.assertEqual('error', done['status'])
        self.assertIn('more than the limit of 1000', done['error'])

    def test_not_a_package(self):
        with open(os.path.join(self.www, 'junk.zip'), 'wb') as f:
            f.write(b'this is not a zip file')
        status, body = self.post({'base': {'url': self.http.url('junk.zip')}})
        done = self.wait_for(body['base']['id'])
        self.assertEqual('error', done['status'])
        self.assertIn('not a base VM package', done['error'])
        self.assertEqual([], [i for i in self.glance.images.values()
                              if i['properties'].get(properties.CLOUDLET_TYPE)
                              and i['id'] != base.BASE_DISK_IMAGE['id']])

    def test_credentials_not_stored(self):
        status, body = self.post({'base': {'url': 'http://user:secret@127.0.0.1:9/b.zip?sig=abc'}})
        self.assertEqual(202, status, body)
        self.assertEqual('http://127.0.0.1:9/b.zip?...', body['base']['url'])
        self.wait_for(body['base']['id'])
        with open(os.path.join(self.state_dir, 'bases', body['base']['id'] + '.json')) as f:
            stored = f.read()
        self.assertNotIn('secret', stored)
        self.assertNotIn('sig=abc', stored)

    # --- GET / DELETE -------------------------------------------------------

    def test_show_unknown(self):
        for record_id in (str(uuid.uuid4()), 'not-a-uuid', '..%2F..%2Fetc'):
            status, _ = self.get('/os-cloudlet/bases/%s' % record_id)
            self.assertEqual(404, status, record_id)

    def test_other_project_sees_nothing(self):
        record, _ = self.import_package()
        self.wait_for(record['id'])
        other = self.other_project_api()
        status, body = self.get('/os-cloudlet/bases/%s' % record['id'], api=other)
        self.assertEqual(404, status, body)
        status, body = self.delete(record['id'], api=other)
        self.assertEqual(404, status, body)
        status, body = self.get('/os-cloudlet/bases', api=other)
        self.assertEqual(200, status)
        self.assertEqual([], body['bases'])
        # An admin sees every project's records.
        status, body = self.get('/os-cloudlet/bases', api=self.admin_api)
        self.assertEqual([record['id']], [r['id'] for r in body['bases']])

    def test_delete_active_removes_images(self):
        record, _ = self.import_package()
        done = self.wait_for(record['id'])
        image_ids = [done['image_id']] + list(done['companion_image_ids'].values())
        status, _ = self.delete(record['id'])
        self.assertEqual(204, status)
        for image_id in image_ids:
            self.assertNotIn(image_id, self.glance.images)
        status, _ = self.get('/os-cloudlet/bases/%s' % record['id'])
        self.assertEqual(404, status)
        self.assertIn(base.BASE_DISK_IMAGE['id'], self.glance.images)   # not ours: untouched

    def test_delete_error_record(self):
        status, body = self.post({'base': {'url': 'http://127.0.0.1:9/base.zip'}})
        self.wait_for(body['base']['id'])
        status, _ = self.delete(body['base']['id'])
        self.assertEqual(204, status)
        status, _ = self.get('/os-cloudlet/bases/%s' % body['base']['id'])
        self.assertEqual(404, status)

    def test_reimport_is_idempotent_and_delete_keeps_shared_images(self):
        first, _ = self.import_package()
        first = self.wait_for(first['id'])
        status, body = self.post({'base': {'url': self.http.url('api-test-base.zip')}})
        second = self.wait_for(body['base']['id'])
        self.assertEqual(first['image_id'], second['image_id'])
        self.assertEqual(204, self.delete(first['id'])[0])
        self.assertIn(second['image_id'], self.glance.images)   # still imported by `second`
        self.assertEqual(204, self.delete(second['id'])[0])
        self.assertNotIn(second['image_id'], self.glance.images)

    def test_delete_while_running(self):
        release = threading.Event()
        started = threading.Event()
        real_import = bases.glance_model()[0].import_base_package

        def slow_import(*args, **kwargs):
            started.set()
            release.wait(30)
            return real_import(*args, **kwargs)

        self.addCleanup(release.set)
        with mock.patch('cloudlet_glance.model.import_base_package', slow_import):
            record, _ = self.import_package()
            self.assertTrue(started.wait(30))
            running = self.wait_for(record['id'], statuses=('validating',))
            self.assertEqual('validating', running['progress']['stage'])
            status, body = self.delete(record['id'])
            self.assertEqual(409, status, body)
            self.assertIn('validating', body['conflictingRequest']['message'])
            release.set()
            self.assertEqual('active', self.wait_for(record['id'])['status'])

    # --- restarts -------------------------------------------------------------

    def test_interrupted_by_restart(self):
        # A record left running by a process that is gone (a dead pid on this host).
        store = records.RecordStore(self.state_dir)
        record_id = str(uuid.uuid4())
        now = records.utcnow()
        store.create({'id': record_id, 'name': None, 'url': 'https://h/x.zip',
                      'visibility': 'private', 'status': 'downloading', 'error': None,
                      'base_id': None, 'image_id': None, 'companion_image_ids': {},
                      'progress': {'stage': 'downloading', 'bytes_done': 10, 'bytes_total': None},
                      'project_id': self.api.project_id, 'user_id': 'fake',
                      'created_at': now, 'updated_at': now,
                      'worker': dict(records.this_worker(), pid=2 ** 22 + 1, start=1)})
        status, body = self.get('/os-cloudlet/bases/%s' % record_id)
        self.assertEqual(200, status, body)
        self.assertEqual('error', body['base']['status'])
        self.assertIn('interrupted by a nova-api restart', body['base']['error'])
        # And a new router (a restarted worker) sweeps such records at load time.
        store.update(record_id, status='uploading', error=None)
        self.assertEqual(1, store.sweep())
        self.assertEqual('error', store.get(record_id)['status'])
