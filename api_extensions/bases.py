"""Base VM package import through the API: /os-cloudlet/bases.

    POST   /os-cloudlet/bases        {"base": {"url": ..., "name": ..., "visibility": ...}}
                                     -> 202 {"base": {"id": ..., "status": "queued", ...}}
    GET    /os-cloudlet/bases        the caller's project's records (admin: all)
    GET    /os-cloudlet/bases/{id}   status, progress, error; base_id and image_id when active
    DELETE /os-cloudlet/bases/{id}   204; an active base's Glance images go too; 409 while running

The work (download, validation, four Glance uploads) runs outside the request
in a bounded pool of native threads (`[cloudlet] base_import_workers` per
nova-api process; nova 34's API runs without eventlet). Records are JSON files
(`api_extensions.records`), so any worker answers GET and they survive restarts.
"""

import concurrent.futures
import copy
import os
import threading
import time
import uuid
import weakref

from oslo_log import log as logging
from webob import exc

from nova.api.openstack import common
from nova.api.openstack import wsgi
from nova.api import validation
import nova.conf

from api_extensions import policies
from api_extensions import policy
from api_extensions import records as records_mod
from api_extensions import schemas
from cloudlet_engine import outbound as engine_outbound
from cloudlet_engine import urls
from cloudlet_nova import outbound

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

COPY_BLOCK = 1 << 20
PROGRESS_INTERVAL = 0.5     # seconds between record writes for progress alone
_PUBLIC_FIELDS = ('id', 'name', 'url', 'visibility', 'status', 'progress', 'error', 'base_id',
                  'image_id', 'companion_image_ids', 'project_id', 'user_id', 'created_at',
                  'updated_at')


def glance_model():
    """(cloudlet_glance.model, cloudlet_glance.images), imported when first needed.

    A seam for tests, and it keeps nova-api loading even if the Glance model
    is broken: only imports fail then, each with the import error as its message.
    """
    from cloudlet_glance import images
    from cloudlet_glance import model
    return model, images


def source():
    from cloudlet_engine import source as engine_source
    return engine_source


class _RecordProgress:
    """The engine/model progress protocol (`update(stage, done, total)`) -> the record.

    Writes at most every PROGRESS_INTERVAL seconds, and at every stage change.
    """

    def __init__(self, store, record_id, status):
        self.store, self.record_id, self.status = store, record_id, status
        self._stage, self._last = None, 0.0

    def update(self, stage, done, total=None):
        status = self.status
        if self.status != 'downloading':
            status = 'uploading' if 'upload' in (stage or '').lower() else 'validating'
        now = time.monotonic()
        if stage == self._stage and now - self._last < PROGRESS_INTERVAL:
            return
        self._stage, self._last = stage, now
        self.store.update(self.record_id, status=status,
                          progress={'stage': stage, 'bytes_done': int(done or 0),
                                    'bytes_total': int(total) if total is not None else None})


_IMPORTERS = weakref.WeakSet()    # every BaseImporter of this process: tests wait for their imports


class BaseImporter:
    """Runs imports in a bounded thread pool; one per API router (per process)."""

    def __init__(self):
        _IMPORTERS.add(self)
        self._executor = None
        self._lock = threading.Lock()
        self._futures = set()

    def store(self):
        return records_mod.RecordStore(CONF.cloudlet.api_state_dir)

    def _pool(self):
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=CONF.cloudlet.base_import_workers,
                    thread_name_prefix='cloudlet-base-import')
            return self._executor

    def submit(self, context, record, url):
        # A copy: the request's context object is not ours to keep once it returns.
        future = self._pool().submit(self.run, copy.copy(context), record['id'], url,
                                     record['name'], record['visibility'])
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future):
        with self._lock:
            self._futures.discard(future)

    def wait(self, timeout=None):
        """Wait for the imports submitted so far (tests, shutdown)."""
        with self._lock:
            pending = list(self._futures)
        concurrent.futures.wait(pending, timeout=timeout)

    def shutdown(self, wait=True):
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=not wait)

    def run(self, context, record_id, url, name, visibility):
        """Download, validate and upload one package; every outcome ends in the record.

        `context` is the caller's RequestContext: the Glance images are created
        with the caller's token, so they belong to the caller's project and
        Glance's own policies (e.g. publicize_image) apply to the caller. A
        Keystone token lives one hour by default: an import that outlasts it
        fails in Glance with 401 and the record says so — use a longer token
        lifetime (or service tokens with [service_user]) for very large bases.
        """
        store = self.store()
        download = store.download_path(record_id)
        store.ensure_dir()
        try:
            self._download(store, record_id, url, download)
            store.update(record_id, status='validating',
                         progress={'stage': 'validating', 'bytes_done': 0, 'bytes_total': None})
            model, images = glance_model()
            # The package is unpacked and checked next to the download: the
            # state directory needs room for about twice the package's size.
            workdir = store.work_path(record_id)
            os.makedirs(workdir, mode=0o700, exist_ok=True)
            result = model.import_base_package(
                images.NovaImages(context), download, name=name, visibility=visibility,
                progress=_RecordProgress(store, record_id, 'validating'), workdir=workdir)
            # Keyed by cloudlet_type (the kernel and ramdisk only for a base that boots one).
            store.update(
                record_id, status='active', error=None, base_id=result.base_id,
                image_id=result.disk_id, name=name or result.name,
                companion_image_ids=result.companion_ids(),
                progress={'stage': 'done'})
            LOG.info('Base VM import %s: base %s is active as image %s',
                     record_id, result.base_id, result.disk_id)
        except Exception as error:
            # Engine messages quote the URL: never store or show its credentials.
            message = describe_error(error).replace(url, urls.redact(url))
            LOG.warning('Base VM import %s from %s failed: %s', record_id, urls.redact(url), message,
                        exc_info=not _is_expected(error))
            try:
                store.update(record_id, status='error', error=message)
            except records_mod.RecordNotFound:
                pass
        finally:
            store.remove_files(record_id)

    def _download(self, store, record_id, url, path):
        # Checked again here: the configuration may have changed since the request, and
        # the connection is checked once more (the name may resolve elsewhere by now).
        outbound.check_url(CONF, url, what='base package URL')
        engine_source = source()
        total = None
        store.update(record_id, status='downloading',
                     progress={'stage': 'downloading', 'bytes_done': 0, 'bytes_total': None})
        stream = engine_source.open_overlay(url, max_bytes=CONF.cloudlet.max_overlay_bytes,
                                            timeout=CONF.cloudlet.fetch_timeout,
                                            allow_files=False, prefetch=False,
                                            policy=outbound.policy(CONF))
        try:
            length = getattr(getattr(getattr(stream, 'raw', None), 'headers', None), 'get',
                             lambda _k: None)('Content-Length')
            total = int(length) if length and length.isdigit() else None
            progress = _RecordProgress(store, record_id, 'downloading')
            done = 0
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'wb') as out:
                while True:
                    block = stream.read(COPY_BLOCK)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    progress.update('downloading', done, total)
        finally:
            stream.close()
        store.update(record_id, progress={'stage': 'downloaded', 'bytes_done': done,
                                          'bytes_total': total or done})


def _is_expected(error):
    from cloudlet_engine import errors
    return isinstance(error, (errors.CloudletError, urls.URLNotAllowed))


def describe_error(error):
    """One line for the record: the engine's and the model's messages name the problem."""
    text = str(error).strip() or error.__class__.__name__
    if _is_expected(error):
        return text
    if isinstance(error, ImportError):
        return 'the cloudlet Glance model cannot be loaded: %s' % text
    return '%s: %s' % (error.__class__.__name__, text)


class CloudletBasesController(wsgi.Controller):

    def __init__(self, importer=None):
        super().__init__()
        self.importer = importer or BaseImporter()
        self._view = common.ViewBuilder()
        try:
            swept = self.importer.store().sweep()
        except OSError as error:       # the directory may not exist yet, or be unreadable
            LOG.warning('Cannot read base import records in %s: %s',
                        CONF.cloudlet.api_state_dir, error)
        else:
            if swept:
                LOG.warning('%d base VM import(s) interrupted by a nova-api restart marked as error',
                            swept)

    # --- views -----------------------------------------------------------

    def _links(self, req, record_id):
        # nova's ViewBuilder builds self/bookmark links only in private helpers (all
        # nova views use them); no public function does it.
        return self._view._get_links(req, record_id, 'os-cloudlet/bases')

    def _show(self, req, record):
        view = {key: record.get(key) for key in _PUBLIC_FIELDS}
        view['progress'] = dict({'stage': None, 'bytes_done': 0, 'bytes_total': None},
                                **(record.get('progress') or {}))
        view['companion_image_ids'] = record.get('companion_image_ids') or {}
        view['links'] = self._links(req, record['id'])
        return view

    # --- helpers ---------------------------------------------------------

    def _get_visible(self, context, record_id, rule):
        """The record if the caller may act on it: 404 for another project's (unless allowed)."""
        try:
            record = self.importer.store().get(record_id)
        except records_mod.RecordNotFound:
            raise exc.HTTPNotFound(explanation='base import %s not found' % record_id)
        if (record.get('project_id') != context.project_id and
                not policy.authorize(context, policies.BASE_LIST_ALL_PROJECTS,
                                     {'project_id': context.project_id}, do_raise=False)):
            raise exc.HTTPNotFound(explanation='base import %s not found' % record_id)
        policy.authorize(context, rule, {'project_id': record.get('project_id')})
        return record

    # --- methods ---------------------------------------------------------

    @wsgi.expected_errors(())
    @validation.query_schema(schemas.base_list_query)
    @validation.response_body_schema(schemas.base_list_response)
    def index(self, req):
        context = req.environ['nova.context']
        policy.authorize(context, policies.BASE_LIST, {'project_id': context.project_id})
        all_projects = policy.authorize(context, policies.BASE_LIST_ALL_PROJECTS,
                                        {'project_id': context.project_id}, do_raise=False)
        found = self.importer.store().list()
        if not all_projects:
            found = [r for r in found if r.get('project_id') == context.project_id]
        return {'bases': [self._show(req, r) for r in found]}

    @wsgi.expected_errors(404)
    @validation.response_body_schema(schemas.base_show_response)
    def show(self, req, id):
        context = req.environ['nova.context']
        return {'base': self._show(req, self._get_visible(context, id, policies.BASE_SHOW))}

    @wsgi.response(202)
    @wsgi.expected_errors((400, 403))
    @validation.schema(schemas.base_import)
    @validation.response_body_schema(schemas.base_import_response)
    def create(self, req, body):
        context = req.environ['nova.context']
        entity = body['base']
        policy.authorize(context, policies.BASE_IMPORT, {'project_id': context.project_id})
        visibility = entity.get('visibility', 'private')
        if visibility == 'public':
            policy.authorize(context, policies.BASE_IMPORT_PUBLIC, {'project_id': context.project_id})
        url = entity['url']
        try:
            outbound.check_url(CONF, url)
        except engine_outbound.Refused as error:
            raise exc.HTTPBadRequest(explanation='base package %s' % error)   # URL refused by policy: ...
        except urls.URLNotAllowed as error:
            raise exc.HTTPBadRequest(explanation='base package URL refused: %s' % error)
        now = records_mod.utcnow()
        name = entity.get('name')
        record = {
            'id': str(uuid.uuid4()),
            'name': common.normalize_name(name) if name else None,
            'url': urls.redact(url), 'visibility': visibility,
            'status': 'queued', 'error': None, 'base_id': None, 'image_id': None,
            'companion_image_ids': {},
            'progress': {'stage': 'queued', 'bytes_done': 0, 'bytes_total': None},
            'project_id': context.project_id, 'user_id': context.user_id,
            'created_at': now, 'updated_at': now,
            'worker': records_mod.this_worker(),
        }
        self.importer.store().create(record)
        self.importer.submit(context, record, url)
        return {'base': self._show(req, record)}

    @wsgi.response(204)
    @wsgi.expected_errors((404, 409))
    @validation.response_body_schema(schemas.base_delete_response)
    def delete(self, req, id):
        context = req.environ['nova.context']
        store = self.importer.store()
        record = self._get_visible(context, id, policies.BASE_DELETE)
        if record['status'] in schemas.RUNNING_STATUSES:
            raise exc.HTTPConflict(
                explanation='base import %s is %s: wait until it is active or in error, then '
                            'delete it' % (id, record['status']))
        if record['status'] == 'active' and record.get('image_id'):
            shared = [r['id'] for r in store.list()
                      if r['id'] != id and r.get('status') == 'active'
                      and r.get('image_id') == record['image_id']]
            if shared:
                LOG.info('Base import %s: images of base %s kept, still imported by %s',
                         id, record.get('base_id'), ', '.join(shared))
            else:
                self._delete_images(context, record)
        store.delete(id)

    @staticmethod
    def _delete_images(context, record):
        model, images = glance_model()
        try:
            model.delete_base(images.NovaImages(context), record['image_id'])
        except Exception as error:
            if _is_image_gone(error):
                LOG.info('Base import %s: image %s already gone', record['id'], record['image_id'])
                return
            LOG.exception('Base import %s: deleting the images of base %s failed',
                          record['id'], record.get('base_id'))
            raise exc.HTTPConflict(explanation='the Glance images of base %s could not be '
                                               'deleted: %s' % (record.get('base_id'),
                                                                describe_error(error)))


def _is_image_gone(error):
    try:
        from cloudlet_glance import errors as glance_errors
    except ImportError:
        return False
    return isinstance(error, glance_errors.ImageNotFound)
