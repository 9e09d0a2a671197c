"""api_extensions.bases pieces that need no nova services."""

from unittest import mock

from cloudlet_engine import errors as engine_errors

from api_extensions import bases
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
