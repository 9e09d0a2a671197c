"""The record of one handoff: `<[cloudlet] state_dir>/handoffs/<handoff id>.json`.

Written at every phase change, atomically (temporary file, fsync, rename),
so it can be read at any time and survives a restart. It holds what an
operator needs to see how a handoff went: its phases with times, the bytes
sent, the codecs used, the downtime (the VM paused at the source until the
destination server is ACTIVE), the result and the destination server, and
never a secret: the destination is named by its Keystone URL without user
information, query or fragment; the credential is not given to this module,
and any string registered with `forbid()` is masked in the file should it
reach a message. No nova imports.
"""

import contextlib
import json
import os
import threading
import time
import urllib.parse

from cloudlet_engine import atomic

VERSION = 1
DIR_NAME = 'handoffs'
RUNNING, OK, ERROR, INTERRUPTED = 'running', 'ok', 'error', 'interrupted'
MASK = '***'


def directory(state_dir):
    return os.path.join(state_dir, DIR_NAME)


def path(state_dir, handoff_id):
    if not handoff_id or '/' in handoff_id or handoff_id.startswith('.'):
        raise ValueError('bad handoff id %r' % handoff_id)
    return os.path.join(directory(state_dir), '%s.json' % handoff_id)


def public_url(url):
    """`url` without user information, query and fragment (None stays None)."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ''
    if ':' in host:
        host = '[%s]' % host
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = '%s:%d' % (host, port) if port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, '', ''))


def _now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


class HandoffRecord:
    """One handoff's record, saved after every change."""

    def __init__(self, state_dir, handoff_id, instance_uuid, server_name=None):
        self.path = path(state_dir, handoff_id)
        self._forbidden = []
        self._phase_started = {}
        self._lock = threading.RLock()     # the handoff's threads update it at once
        self.data = {
            'version': VERSION,
            'handoff_id': handoff_id,
            'instance_uuid': instance_uuid,
            'result': RUNNING,
            'error': None,
            'started_at': _now(),
            'ended_at': None,
            'destination': {},
            'destination_server_name': server_name,
            'destination_server_id': None,
            'destination_floating_ip': None,
            # What the handoff made at the destination besides the server (deleted by a roll back).
            'destination_port_ids': [],
            'destination_floating_ip_id': None,
            # What a roll back could not delete there (the link down): retried, then named here.
            'destination_leftovers': [],
            # 'carried' (the VM's NICs went along), 'replaced: <why>' or 'none'.
            'nics': None,
            'residue_encrypted': None,
            # A roll back after the whole residue was sent that could not confirm the
            # destination server gone: the VM was left paused at the source...
            'in_doubt': False,
            # ... until the destination answered: 'destination' (its server ran the VM: the
            # source server was deleted), 'source' (it was gone: the VM resumed at the
            # source) or 'owner' (the source server changed first: left as it was).
            'settled': None,
            'phases': [],
            'bytes_sent': None,
            'codecs': {},
            'downtime_seconds': None,
            'residue': {},
        }

    def forbid(self, *secrets):
        """Strings that must never reach the file (masked if they do)."""
        self._forbidden.extend(s for s in secrets if isinstance(s, str) and s)

    # -- changes -------------------------------------------------------------------

    def set_destination(self, auth_url=None, cloud=None, region_name=None, interface=None,
                        flavor_id=None):
        destination = {'auth_url': public_url(auth_url), 'cloud': cloud,
                       'region_name': region_name, 'interface': interface, 'flavor_id': flavor_id}
        with self._lock:
            self.data['destination'] = {k: v for k, v in destination.items() if v is not None}
            self.save()

    def update(self, **fields):
        """Set top-level fields of the record (only the ones it has)."""
        unknown = sorted(set(fields) - set(self.data))
        if unknown:
            raise KeyError('not a handoff record field: %s' % ', '.join(unknown))
        with self._lock:
            self.data.update(fields)
            self.save()

    @contextlib.contextmanager
    def phase(self, name):
        """Time one phase; it ends 'ok', or 'error' when the block raises."""
        entry = {'name': name, 'started_at': _now(), 'ended_at': None, 'seconds': None,
                 'result': RUNNING}
        self.data['phases'].append(entry)
        started = time.monotonic()
        self.save()
        try:
            yield entry
        except BaseException:
            self._end_phase(entry, started, ERROR)
            raise
        self._end_phase(entry, started, OK)

    def _end_phase(self, entry, started, result):
        entry.update(ended_at=_now(), seconds=round(time.monotonic() - started, 3), result=result)
        self.save()

    def finish(self, result, error=None):
        self.data.update(result=result, error=error, ended_at=_now())
        self.save()

    # -- the file ------------------------------------------------------------------

    def text(self):
        text = json.dumps(self.data, indent=2, sort_keys=True) + '\n'
        for secret in self._forbidden:
            text = text.replace(json.dumps(secret)[1:-1], MASK)
        return text

    def save(self):
        """Write the record atomically."""
        with self._lock:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            atomic.write_text(self.path, self.text())


def load(state_dir, handoff_id):
    """The record as a dict, or None."""
    try:
        with open(path(state_dir, handoff_id)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def mark_interrupted(state_dir):
    """Records still `running` (their nova-compute stopped mid-handoff) -> `interrupted`.

    Returns the records changed. Called at start-up, before any handoff runs.
    """
    changed = []
    root = directory(state_dir)
    if not os.path.isdir(root):
        return changed
    for name in sorted(os.listdir(root)):
        if not name.endswith('.json'):
            continue
        try:
            with open(os.path.join(root, name)) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if data.get('result') != RUNNING:
            continue
        data.update(result=INTERRUPTED, ended_at=_now(),
                    error='nova-compute stopped during the handoff')
        atomic.write_json(os.path.join(root, name), data)
        changed.append(data)
    return changed
