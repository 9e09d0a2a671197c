"""The image service the Glance model talks to: one small interface, two implementations.

* `GlanceClientImages` — python-glanceclient v2 over a keystoneauth session
  (the `openstack cloudlet` CLI, tools).
* `NovaImages` — nova's own `nova.image.glance.API` with a request context
  (nova-api's base import, the compute driver). This is the only place that
  imports nova, and only when a `NovaImages` is built.

Images are handed around as flat dicts, glanceclient style: the Glance
attributes (id, name, status, size, visibility, os_hidden, checksum,
os_hash_algo, os_hash_value, owner, min_ram, min_disk, ...) and every extra
property as top-level keys.
"""

import abc

import glanceclient
from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ksa_exc
import requests

from cloudlet_glance import errors
from cloudlet_glance import properties as props

# Glance attributes that create()/update() accept among `properties`: they are
# integers in Glance's schema, every other value is sent as a string.
INTEGER_ATTRIBUTES = (props.MIN_RAM, props.MIN_DISK)

# What the client libraries raise for a failed request (as opposed to a bug).
_CLIENT_ERRORS = (glance_exc.BaseException, glance_exc.ClientException, glance_exc.EndpointNotFound,
                  ksa_exc.ClientException, requests.exceptions.RequestException)


class ImageService(abc.ABC):
    """What the Glance model needs from an image service.

    Errors: `errors.ImageNotFound` when the image does not exist or is not
    visible to the caller, `errors.ImageServiceError` for any other refusal
    or failure of the service.
    """

    @abc.abstractmethod
    def create(self, name, properties, visibility='private', hidden=False, disk_format='raw',
               container_format='bare'):
        """Create an image record (status `queued`) and return its id.

        `properties` are extra properties (sent as strings), plus `min_ram`
        (MB) and `min_disk` (GiB), which are set as the Glance attributes of
        the same name.
        """

    @abc.abstractmethod
    def upload(self, image_id, fileobj, size=None):
        """Upload the image data, read from `fileobj` chunk by chunk."""

    @abc.abstractmethod
    def get(self, image_id):
        """The image as a flat dict."""

    @abc.abstractmethod
    def list(self, filters=None):
        """Iterate over the images matching `filters` ({name: value}), as flat dicts.

        Like Glance, hidden images are left out unless the filters hold
        `os_hidden=True`, which lists hidden images only.
        """

    @abc.abstractmethod
    def update(self, image_id, properties):
        """Add or replace these properties; every other property is kept."""

    @abc.abstractmethod
    def delete(self, image_id):
        """Delete the image."""

    @abc.abstractmethod
    def download(self, image_id, fileobj):
        """Write the image data to `fileobj` chunk by chunk; return the bytes written."""


def filter_value(value):
    """How a filter value (or an image value compared with one) is spelled: Glance's strings."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return '' if value is None else str(value)


def matches_filters(image, filters):
    """Whether a flat image dict passes `filters`, with Glance's os_hidden rule."""
    filters = dict(filters or {})
    want_hidden = filter_value(filters.pop(props.OS_HIDDEN, False)).lower() == 'true'
    if bool(image.get(props.OS_HIDDEN)) != want_hidden:
        return False
    return all(filter_value(image.get(key)) == filter_value(value) for key, value in filters.items())


def _property_value(key, value):
    return int(value) if key in INTEGER_ATTRIBUTES else str(value)


class _Translating:
    """Context manager: library errors -> errors.ImageNotFound / ImageServiceError."""

    def __init__(self, what, image_id, not_found, service_errors):
        self.what, self.image_id = what, image_id
        self.not_found, self.service_errors = not_found, service_errors

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, errors.ImageServiceError):
            return False
        subject = ' of image %s' % self.image_id if self.image_id else ''
        if isinstance(exc, self.not_found):
            raise errors.ImageNotFound('image %s not found' % self.image_id) from exc
        if isinstance(exc, self.service_errors):
            raise errors.ImageServiceError('image service: %s%s failed: %s'
                                           % (self.what, subject, exc)) from exc
        return False


class GlanceClientImages(ImageService):
    """The image service through python-glanceclient (API v2) and a keystoneauth session."""

    def __init__(self, session, region_name=None, interface='public', endpoint_override=None):
        self._client = glanceclient.Client('2', session=session, region_name=region_name,
                                           interface=interface, endpoint_override=endpoint_override)

    def _translating(self, what, image_id=None, extra_errors=()):
        return _Translating(what, image_id, glance_exc.HTTPNotFound, _CLIENT_ERRORS + extra_errors)

    def create(self, name, properties, visibility='private', hidden=False, disk_format='raw',
               container_format='bare'):
        # glanceclient sends unknown keyword arguments as top-level extra properties.
        fields = {key: _property_value(key, value) for key, value in properties.items()}
        fields.update(name=name, visibility=visibility, os_hidden=bool(hidden),
                      disk_format=disk_format, container_format=container_format)
        # glanceclient reports a value its schema refuses as a TypeError.
        with self._translating('create', extra_errors=(TypeError,)):
            return self._client.images.create(**fields)['id']

    def upload(self, image_id, fileobj, size=None):
        with self._translating('upload', image_id):
            self._client.images.upload(image_id, fileobj, image_size=size)

    def get(self, image_id):
        with self._translating('get', image_id):
            return dict(self._client.images.get(image_id))

    def list(self, filters=None):
        query = {key: filter_value(value) for key, value in (filters or {}).items()}
        images = self._client.images.list(filters=query)
        # glanceclient fetches page after page while we iterate: translate there too.
        while True:
            with self._translating('list'):
                image = next(images, None)
            if image is None:
                return
            yield dict(image)

    def update(self, image_id, properties):
        fields = {key: _property_value(key, value) for key, value in properties.items()}
        # No remove_props: glanceclient then sends only "add"/"replace" operations.
        with self._translating('update', image_id, extra_errors=(TypeError,)):
            self._client.images.update(image_id, **fields)

    def delete(self, image_id):
        with self._translating('delete', image_id):
            self._client.images.delete(image_id)

    def download(self, image_id, fileobj):
        with self._translating('download', image_id):
            body = self._client.images.data(image_id)
        if getattr(body, 'wrapped', body) is None:
            raise errors.ImageServiceError('image %s has no data' % image_id)
        chunks = iter(body)
        written = 0
        while True:
            # glanceclient checks os_hash_value as the last chunk goes by and
            # raises IOError on a mismatch; the writes stay outside (a full
            # local disk is not the image service's fault).
            with self._translating('download', image_id, extra_errors=(OSError,)):
                chunk = next(chunks, None)
            if chunk is None:
                return written
            fileobj.write(chunk)
            written += len(chunk)


class NovaImages(ImageService):
    """The image service through nova's `nova.image.glance.API`, as the user of `context`."""

    def __init__(self, context):
        # Imported here so that nothing else in cloudlet_glance needs nova.
        from nova import exception as nova_exception
        from nova.image import glance as nova_glance
        self._context = context
        self._api = nova_glance.API()
        self._not_found = nova_exception.ImageNotFound
        # nova translates most glanceclient errors; the rest pass through untranslated.
        self._service_errors = (nova_exception.NovaException,) + _CLIENT_ERRORS

    def _translating(self, what, image_id=None):
        return _Translating(what, image_id, self._not_found, self._service_errors)

    @staticmethod
    def _meta(properties):
        """nova's image_meta: attributes top level, extra properties in 'properties'."""
        meta = {'properties': {}}
        for key, value in properties.items():
            if key in INTEGER_ATTRIBUTES:
                meta[key] = int(value)
            else:
                meta['properties'][key] = str(value)
        return meta

    @staticmethod
    def _flatten(image):
        flat = {key: value for key, value in image.items()
                if key not in ('properties', 'is_public', 'deleted', 'deleted_at')}
        flat.update(image.get('properties') or {})
        # nova keeps only is_public of Glance's visibility: private, shared and
        # community all read as not public, so anything else is unknown (None).
        flat.setdefault('visibility', 'public' if image.get('is_public') else None)
        return flat

    def create(self, name, properties, visibility='private', hidden=False, disk_format='raw',
               container_format='bare'):
        meta = self._meta(properties)
        meta.update(name=name, visibility=visibility, os_hidden=bool(hidden),
                    disk_format=disk_format, container_format=container_format)
        with self._translating('create'):
            return self._api.create(self._context, meta)['id']

    def upload(self, image_id, fileobj, size=None):
        # nova's only public upload path is update(data=...); purge_props=False
        # keeps the properties (its GlanceImageServiceV2 default would purge).
        # nova sends no size: glanceclient streams the file chunked.
        with self._translating('upload', image_id):
            self._api.update(self._context, image_id, {}, data=fileobj, purge_props=False)

    def get(self, image_id):
        with self._translating('get', image_id):
            return self._flatten(self._api.get(self._context, image_id))

    def list(self, filters=None):
        query = {key: filter_value(value) for key, value in (filters or {}).items()}
        with self._translating('list'):
            found = self._api.get_all(self._context, filters=dict(query))
        # Glance applied the filters already; applying them again costs little
        # and keeps the os_hidden rule where an image service ignores filters.
        # Not visibility: nova's image dicts lost it (see _flatten).
        local = {key: value for key, value in (filters or {}).items() if key != 'visibility'}
        return iter([image for image in map(self._flatten, found) if matches_filters(image, local)])

    def update(self, image_id, properties):
        with self._translating('update', image_id):
            self._api.update(self._context, image_id, self._meta(properties), purge_props=False)

    def delete(self, image_id):
        with self._translating('delete', image_id):
            self._api.delete(self._context, image_id)

    def download(self, image_id, fileobj):
        counter = _CountingWriter(fileobj)
        with self._translating('download', image_id):
            self._api.download(self._context, image_id, data=counter)
        return counter.written


class _CountingWriter:
    def __init__(self, fileobj):
        self._fileobj = fileobj
        self.written = 0

    def write(self, data):
        self._fileobj.write(data)
        self.written += len(data)
