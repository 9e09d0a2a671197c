"""Base VM import records: one JSON file each, shared by every nova-api worker.

`<CONF.cloudlet.api_state_dir>/bases/<id>.json`, written atomically (temporary
file in the same directory, fsync, rename), so a reader in another worker
process never sees half a record. Only the worker that runs an import writes
its record while it runs; DELETE is refused until the record is finished, so
two writers never race on one record.

Which worker owns a running record is written in it (host, pid, process start
time). A running record whose owner process is gone — nova-api restarted, or
uwsgi recycled the worker — can never finish: it is turned into `error`
("interrupted by a nova-api restart") when any worker reads it, and by a
sweep when the API loads. We do not resume interrupted imports: the caller's
token may have expired and the partial download is not trusted; importing
again is cheap to ask for and idempotent (by base identity) in Glance.
Records owned by another host (a shared state directory) are never judged.
"""

import datetime
import json
import os
import shutil
import socket
import threading
import uuid

from cloudlet_engine import atomic

RUNNING = ('queued', 'downloading', 'validating', 'uploading')
_LOCK = threading.Lock()   # read-modify-write of records inside this process
INTERRUPTED = 'interrupted by a nova-api restart before it finished; import the package again'


def utcnow():
    """RFC 3339 UTC with microseconds: records are listed in creation order."""
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _process_start(pid):
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22; the command name (field 2) may contain spaces and parentheses.
    return int(stat.rsplit(')', 1)[1].split()[19])


def this_worker():
    pid = os.getpid()
    return {'host': socket.gethostname(), 'pid': pid, 'start': _process_start(pid)}


def worker_alive(worker):
    """Is the process that owns a running record still there? True when unknowable."""
    if not worker or worker.get('host') != socket.gethostname():
        return True
    pid = worker.get('pid')
    if not isinstance(pid, int):
        return False
    start = _process_start(pid)
    if start is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return worker.get('start') is None
    return worker.get('start') in (None, start)


class RecordNotFound(KeyError):
    pass


class RecordStore:
    """The records directory. Every method reads or writes the files: no cache."""

    def __init__(self, state_dir):
        self.dir = os.path.join(state_dir, 'bases')

    def ensure_dir(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def path(self, record_id):
        return os.path.join(self.dir, '%s.json' % record_id)

    def download_path(self, record_id):
        """Where the package is downloaded."""
        return os.path.join(self.dir, '%s.download' % record_id)

    def work_path(self, record_id):
        """Where the Glance model unpacks and checks the package."""
        return os.path.join(self.dir, '%s.work' % record_id)

    def remove_files(self, record_id):
        """The download and the work directory of an import (not its record)."""
        try:
            os.unlink(self.download_path(record_id))
        except FileNotFoundError:
            pass
        shutil.rmtree(self.work_path(record_id), ignore_errors=True)

    @staticmethod
    def valid_id(record_id):
        try:
            return str(uuid.UUID(record_id)) == record_id
        except (TypeError, ValueError, AttributeError):
            return False

    def create(self, record):
        self.ensure_dir()
        self._write(record)
        return record

    def get(self, record_id):
        if not self.valid_id(record_id):
            raise RecordNotFound(record_id)
        record = self._read(self.path(record_id))
        if record is None:
            raise RecordNotFound(record_id)
        return self._judge(record)

    def list(self):
        records = []
        for record in self._read_all():
            try:
                records.append(self._judge(record))
            except RecordNotFound:      # deleted by another worker meanwhile
                continue
        return records

    def _read_all(self):
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        records = []
        for name in names:
            if name.endswith('.json') and self.valid_id(name[:-5]):
                record = self._read(os.path.join(self.dir, name))
                if record is not None:
                    records.append(record)
        records.sort(key=lambda r: (r.get('created_at', ''), r['id']))
        return records

    def update(self, record_id, **fields):
        with _LOCK:
            record = self._read(self.path(record_id))
            if record is None:
                raise RecordNotFound(record_id)
            progress = fields.pop('progress', None)
            record.update(fields)
            if progress:
                record['progress'] = dict(record.get('progress') or {}, **progress)
            record['updated_at'] = utcnow()
            self._write(record)
            return record

    def delete(self, record_id):
        self.remove_files(record_id)
        try:
            os.unlink(self.path(record_id))
        except FileNotFoundError:
            pass

    def sweep(self):
        """Turn the running records of dead workers into errors; return how many."""
        swept = 0
        for record in self._read_all():
            if self._interrupted(record):
                self._mark_interrupted(record['id'])
                swept += 1
        return swept

    @staticmethod
    def _interrupted(record):
        return record.get('status') in RUNNING and not worker_alive(record.get('worker'))

    def _mark_interrupted(self, record_id):
        record = self.update(record_id, status='error', error=INTERRUPTED)
        self.remove_files(record_id)
        return record

    def _judge(self, record):
        if self._interrupted(record):
            return self._mark_interrupted(record['id'])
        return record

    @staticmethod
    def _read(path):
        try:
            with open(path, encoding='utf-8') as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except ValueError:
            return None      # not ours, or damaged: invisible rather than fatal

    def _write(self, record):
        atomic.write_json(self.path(record['id']), record, indent=1, mode=0o600)
