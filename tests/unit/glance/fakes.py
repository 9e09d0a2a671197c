"""A fake image service for the Glance model's unit tests.

`FakeImageService` keeps image records in a dict and image data in files
under a directory, and behaves like Glance v2 where the model depends on it:
ids are UUIDs, a new image is `queued` and becomes `active` on upload (which
is refused for an image that is not queued), Glance computes size, checksum
and the sha512 os_hash_value, extra properties must be strings, hidden images
are listed only with `os_hidden=True`, updates never purge properties.
"""

import hashlib
import itertools
import os
import uuid

from cloudlet_engine import progress as progress_mod
from cloudlet_glance import errors
from cloudlet_glance import images

VISIBILITIES = ('public', 'private', 'shared', 'community')
READ_CHUNK = 64 * 1024


class FakeImageService(images.ImageService):

    def __init__(self, data_dir, owner='fake-project'):
        self.data_dir = str(data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        self.owner = owner
        self.images = {}
        self.calls = []                 # (method, image id or name), in order
        self.before_upload = None       # hook(image dict): raise to make an upload fail
        self._clock = itertools.count(1)

    def _record(self, image_id):
        try:
            return self.images[image_id]
        except KeyError:
            raise errors.ImageNotFound('image %s not found' % image_id)

    def _data_path(self, image_id):
        return os.path.join(self.data_dir, image_id)

    def _set_properties(self, record, properties):
        for key, value in properties.items():
            if key in images.INTEGER_ATTRIBUTES:
                value = int(value)
            elif not isinstance(value, str):
                # Glance v2's schema: extra properties are strings.
                raise errors.ImageServiceError('property %s: %r is not a string' % (key, value))
            record[key] = value

    def create(self, name, properties, visibility='private', hidden=False, disk_format='raw',
               container_format='bare'):
        if visibility not in VISIBILITIES:
            raise errors.ImageServiceError('bad visibility %r' % visibility)
        image_id = str(uuid.uuid4())
        record = {'id': image_id, 'name': name, 'status': 'queued', 'size': None,
                  'visibility': visibility, 'os_hidden': bool(hidden), 'disk_format': disk_format,
                  'container_format': container_format, 'owner': self.owner, 'checksum': None,
                  'os_hash_algo': None, 'os_hash_value': None, 'min_ram': 0, 'min_disk': 0,
                  'created_at': '2026-01-01T00:00:%02dZ' % next(self._clock), 'protected': False}
        self._set_properties(record, properties)
        self.images[image_id] = record
        self.calls.append(('create', name))
        return image_id

    def upload(self, image_id, fileobj, size=None):
        record = self._record(image_id)
        self.calls.append(('upload', image_id))
        if record['status'] != 'queued':
            raise errors.ImageServiceError('image %s is %s, not queued' % (image_id, record['status']))
        if self.before_upload:
            self.before_upload(record)
        md5, sha512, done = hashlib.md5(), hashlib.sha512(), 0
        with open(self._data_path(image_id), 'wb') as out:
            while True:
                block = fileobj.read(READ_CHUNK)
                if not block:
                    break
                md5.update(block)
                sha512.update(block)
                out.write(block)
                done += len(block)
        if size is not None and size != done:
            os.unlink(self._data_path(image_id))
            raise errors.ImageServiceError('image %s: %d bytes sent, %d announced' % (image_id, done, size))
        record.update(status='active', size=done, checksum=md5.hexdigest(), os_hash_algo='sha512',
                      os_hash_value=sha512.hexdigest())

    def get(self, image_id):
        self.calls.append(('get', image_id))
        return dict(self._record(image_id))

    def list(self, filters=None):
        self.calls.append(('list', dict(filters or {})))
        return iter([dict(r) for r in self.images.values() if images.matches_filters(r, filters)])

    def update(self, image_id, properties):
        self.calls.append(('update', image_id))
        self._set_properties(self._record(image_id), properties)

    def delete(self, image_id):
        self.calls.append(('delete', image_id))
        self._record(image_id)
        if self.images[image_id]['protected']:
            raise errors.ImageServiceError('image %s is protected' % image_id)
        del self.images[image_id]
        if os.path.exists(self._data_path(image_id)):
            os.unlink(self._data_path(image_id))

    def download(self, image_id, fileobj):
        self.calls.append(('download', image_id))
        record = self._record(image_id)
        if record['status'] != 'active':
            raise errors.ImageServiceError('image %s has no data' % image_id)
        written = 0
        with open(self._data_path(image_id), 'rb') as f:
            while True:
                block = f.read(READ_CHUNK)
                if not block:
                    return written
                fileobj.write(block)
                written += len(block)

    # Test helpers, not part of the interface.

    def replace_data(self, image_id, data):
        """Change an image's bytes behind the model's back (metadata updated like Glance would)."""
        with open(self._data_path(image_id), 'wb') as f:
            f.write(data)
        self.images[image_id].update(size=len(data), checksum=hashlib.md5(data).hexdigest(),
                                     os_hash_value=hashlib.sha512(data).hexdigest())

    def read_data(self, image_id):
        with open(self._data_path(image_id), 'rb') as f:
            return f.read()

    def count(self, method):
        return sum(1 for call in self.calls if call[0] == method)


class RecordingProgress(progress_mod.Progress):
    """Engine progress kept per stage: {stage: (done, total)} of its last update."""

    def __init__(self):
        self.stages = {}

    def update(self, stage, done, total=None):
        self.stages[stage] = (done, total)


def read_file(path):
    with open(path, 'rb') as f:
        return f.read()
