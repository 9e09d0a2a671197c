"""Per-instance cloudlet state on disk: `<instance dir>/cloudlet.json`.

Written at spawn, before the domain is restored, so that a nova-compute
restart finds every cloudlet instance as it left it: the domain itself is an
ordinary persistent libvirt domain (init_host, list_instances and get_info
need nothing from us), and this file says which base it was resumed from and
from what overlay. The file lives in the instance directory, so nova's own
cleanup (delete, failed build) removes it with the directory.

The same directory holds, only while an operation runs, the launch files of a
spawn (LAUNCH_DIR) and the work files of a capture (CAPTURE_PREFIX*); a
restart in the middle of either leaves them behind, and `sweep()` (called
from init_host) reports them. No nova imports: paths in, dicts out.
"""

import json
import logging
import os
import shutil
import time

from cloudlet_engine import atomic

LOG = logging.getLogger(__name__)

FILE_NAME = 'cloudlet.json'
VERSION = 1
LAUNCH_DIR = 'cloudlet-launch'
CAPTURE_PREFIX = 'cloudlet-capture-'
MAX_BYTES = 64 * 1024


def path(instance_dir):
    return os.path.join(instance_dir, FILE_NAME)


def launch_dir(instance_dir):
    return os.path.join(instance_dir, LAUNCH_DIR)


def new_record(instance_uuid, base, base_image_id, source):
    """The record of one cloudlet spawn. `source`: {'kind': 'base'|'url'|'glance', 'ref': str|None}."""
    return {
        'version': VERSION,
        'instance_uuid': instance_uuid,
        'base_id': base.base_id,
        'base_name': base.name,
        'base_image_id': base_image_id,
        'source': dict(source),
        'created_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }


def save(instance_dir, record):
    """Write the record atomically (write to a temporary file, fsync, rename)."""
    os.makedirs(instance_dir, exist_ok=True)
    target = path(instance_dir)
    atomic.write_json(target, record)
    return target


def load(instance_dir):
    """The record, or None when there is none or it cannot be read (logged)."""
    target = path(instance_dir)
    try:
        with open(target, 'rb') as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        LOG.warning('cannot read %s: %s', target, exc)
        return None
    try:
        if len(raw) > MAX_BYTES:
            raise ValueError('larger than %d bytes' % MAX_BYTES)
        record = json.loads(raw.decode('utf-8'))
        if not isinstance(record, dict) or record.get('version') != VERSION or not record.get('base_id'):
            raise ValueError('not a version %d cloudlet record' % VERSION)
    except (UnicodeDecodeError, ValueError) as exc:
        LOG.warning('ignoring %s: %s', target, exc)
        return None
    return record


def remove(instance_dir):
    try:
        os.unlink(path(instance_dir))
    except FileNotFoundError:
        pass


def remove_launch_dir(instance_dir):
    shutil.rmtree(launch_dir(instance_dir), ignore_errors=True)


def instance_dirs(instances_path):
    """(instance directory, its entry names) for each instance directory under instances_path
    (not nova's `_base`, not our `_cloudlet`, nothing hidden).
    """
    try:
        entries = os.listdir(instances_path)
    except FileNotFoundError:
        return
    for entry in entries:
        instance_dir = os.path.join(instances_path, entry)
        if entry.startswith(('_', '.')) or not os.path.isdir(instance_dir):
            continue
        try:
            yield instance_dir, os.listdir(instance_dir)
        except OSError:
            continue


def sweep(instances_path):
    """Find what an interrupted spawn or capture left behind; remove the launch dirs.

    Call only when no spawn or capture runs (init_host). Returns
    (removed launch dirs, capture dirs). Capture dirs are left alone: one may
    hold the only copy of a stopped VM's memory (a crash between the save and
    the restore); the caller decides, knowing whether the domain runs.
    """
    removed, captures = [], []
    for instance_dir, names in instance_dirs(instances_path):
        for name in names:
            leftover = os.path.join(instance_dir, name)
            if name == LAUNCH_DIR:
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
            elif name.startswith(CAPTURE_PREFIX):
                captures.append(leftover)
    return removed, captures
