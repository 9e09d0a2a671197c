"""api_extensions.records: JSON records shared by nova-api workers."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from api_extensions import records


def _record(**fields):
    now = records.utcnow()
    record = {'id': str(uuid.uuid4()), 'status': 'queued', 'error': None, 'created_at': now,
              'updated_at': now, 'progress': {'stage': 'queued', 'bytes_done': 0,
                                              'bytes_total': None},
              'worker': records.this_worker()}
    record.update(fields)
    return record


@pytest.fixture
def store(tmp_path):
    return records.RecordStore(str(tmp_path))


def _dead_worker():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    worker = records.this_worker()
    worker.update(pid=proc.pid, start=records._process_start(proc.pid))
    return worker


def test_create_get_update_list_delete(store):
    a, b = store.create(_record()), store.create(_record())
    assert store.get(a['id'])['status'] == 'queued'
    updated = store.update(a['id'], status='downloading', progress={'bytes_done': 5})
    assert updated['progress'] == {'stage': 'queued', 'bytes_done': 5, 'bytes_total': None}
    assert updated['updated_at'] >= a['updated_at']
    assert [r['id'] for r in store.list()] == [a['id'], b['id']]
    store.delete(a['id'])
    with pytest.raises(records.RecordNotFound):
        store.get(a['id'])
    assert [r['id'] for r in store.list()] == [b['id']]


def test_files_are_whole_json_and_private(store):
    record = store.create(_record())
    assert os.stat(store.dir).st_mode & 0o777 == 0o700
    with open(store.path(record['id'])) as f:
        assert json.load(f)['id'] == record['id']
    assert [n for n in os.listdir(store.dir) if n.endswith('.tmp')] == []


@pytest.mark.parametrize('bad', ['x', '../../etc/passwd', 'DAD7EB34-FF68-4A0F-B433-B4CCA2FAC80E', ''])
def test_invalid_ids_not_found(store, bad):
    with pytest.raises(records.RecordNotFound):
        store.get(bad)


def test_damaged_file_is_invisible(store):
    store.create(_record())
    bad_id = str(uuid.uuid4())
    with open(store.path(bad_id), 'w') as f:
        f.write('{not json')
    assert len(store.list()) == 1
    with pytest.raises(records.RecordNotFound):
        store.get(bad_id)


def test_worker_alive():
    assert records.worker_alive(records.this_worker())
    assert not records.worker_alive(_dead_worker())
    assert records.worker_alive(dict(records.this_worker(), host='another-host', pid=1))
    # a reused pid: same pid, another start time
    assert not records.worker_alive(dict(records.this_worker(), start=1))


def test_running_record_of_dead_worker_becomes_error(store):
    record = store.create(_record(status='uploading', worker=_dead_worker()))
    with open(store.download_path(record['id']), 'wb') as f:
        f.write(b'partial')
    os.makedirs(os.path.join(store.work_path(record['id']), 'cloudlet-import-x'))
    shown = store.get(record['id'])
    assert shown['status'] == 'error'
    assert shown['error'] == records.INTERRUPTED
    assert not os.path.exists(store.download_path(record['id']))
    assert not os.path.exists(store.work_path(record['id']))


def test_sweep(store):
    dead = store.create(_record(status='downloading', worker=_dead_worker()))
    alive = store.create(_record(status='downloading'))
    finished = store.create(_record(status='active', worker=_dead_worker()))
    assert store.sweep() == 1
    assert store.get(dead['id'])['status'] == 'error'
    assert store.get(alive['id'])['status'] == 'downloading'
    assert store.get(finished['id'])['status'] == 'active'
    assert store.sweep() == 0


def test_sweep_without_directory(tmp_path):
    assert records.RecordStore(str(tmp_path / 'absent')).sweep() == 0
