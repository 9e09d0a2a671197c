"""What an overlay is to the library, and how each kind is negotiated and synthesized.

Three kinds:

- ``Overlay.url('https://overlays.example/app.clo')``: the cloudlet's
  compute host streams it (server metadata ``overlay_url``); the negotiation
  sends the URL and the cloud reads the header.
- ``Overlay.image(image_id)``: an overlay image in that cloud's Glance
  (``cloudlet_overlay_id``); the negotiation describes it from the image's
  properties.
- ``Overlay.file('./app.clo')``: a local file, read here with the engine's
  reader; the negotiation describes it from its header, and synthesis uploads
  it to the chosen cloudlet's Glance first (a hidden overlay image).
"""

import dataclasses
import os
import urllib.parse

from cloudlet_engine import errors as engine_errors
from cloudlet_engine import format as overlay_format
from cloudlet_glance import properties as props

from cloudlet_client import errors

URL, IMAGE, FILE = 'url', 'image', 'file'
DEFAULT_CODEC = 'zstd'           # what the cloud's capture uses when none is said


def describe_file(path):
    """The negotiation's `overlay` object of a local overlay file, from its header.

    The codec is the header's; an overlay whose header does not say it is
    described by its first segment's codec.
    """
    try:
        with open(path, 'rb') as f:
            reader = overlay_format.OverlayReader(f)
            meta = reader.meta
            codec = meta.get('codec')
            if not isinstance(codec, str):
                first = next(iter(reader.segments()), None)
                codec = overlay_format.CODEC_NAMES.get(first.codec) if first is not None else DEFAULT_CODEC
        size = os.path.getsize(path)
    except engine_errors.CloudletError as exc:
        raise errors.ClientError('%s: %s' % (path, exc)) from exc
    except OSError as exc:
        raise errors.ClientError('%s: %s' % (path, exc.strerror or exc)) from exc
    overlay = {'base_id': meta['base_id'], 'format_version': int(meta.get('version', overlay_format.VERSION)),
               'codec': codec, 'size_bytes': size}
    return overlay, meta


def encrypt_file(path, target, key):
    """Write `path`'s overlay encrypted with `key` (AES-256-GCM, format version 2) to `target`.

    The device side of an encrypted overlay: the segments are re-sealed as
    they are (no decompression), the plain file stays as it was.
    """
    try:
        with open(path, 'rb') as src, open(target, 'xb') as out:
            overlay_format.encrypt_copy(src, out, key)
    except engine_errors.CloudletError as exc:
        raise errors.ClientError('%s: %s' % (path, exc)) from exc
    except OSError as exc:
        raise errors.ClientError('%s: %s' % (path, exc.strerror or exc)) from exc


@dataclasses.dataclass(frozen=True)
class Overlay:
    kind: str                  # URL, IMAGE or FILE
    location: str              # the URL, the image id, or the file's path

    @classmethod
    def url(cls, url):
        if urllib.parse.urlsplit(url).scheme not in ('http', 'https'):
            raise errors.ClientError('an overlay URL is http(s), not %r' % url)
        return cls(URL, url)

    @classmethod
    def image(cls, image_id):
        return cls(IMAGE, image_id)

    @classmethod
    def file(cls, path):
        return cls(FILE, os.path.abspath(path))

    @classmethod
    def parse(cls, text):
        """An http(s) URL, an existing local file (path or file://), else an image id."""
        parts = urllib.parse.urlsplit(text)
        if parts.scheme in ('http', 'https'):
            return cls.url(text)
        if parts.scheme == 'file':
            return cls.file(parts.path)
        if os.path.isfile(text):
            return cls.file(text)
        return cls.image(text)

    def describe(self):
        return '%s %s' % (self.kind, self.location)

    def base_id(self):
        """The base this overlay names, when known here (a local file's header), else None."""
        if self.kind == FILE:
            return describe_file(self.location)[0]['base_id']
        return None

    def negotiation_request(self, cloud=None):
        """The body of POST /os-cloudlet/negotiate; an image is described from `cloud`'s Glance."""
        if self.kind == URL:
            return {'overlay_url': self.location}
        if self.kind == FILE:
            return {'overlay': describe_file(self.location)[0]}
        image = cloud.get_image(self.location)
        if image.get(props.CLOUDLET_TYPE) != props.OVERLAY or not image.get(props.BASE_ID):
            raise errors.ClientError('image %s is not a cloudlet overlay' % self.location)
        # Not the image's cloudlet_format_version: nova's snapshot copies it from the base
        # disk image (the base package's version). An overlay image in a cloud's Glance was
        # written by that cloud's engine, in the format this client's engine reads too.
        overlay = {'base_id': image[props.BASE_ID], 'codec': image.get(props.CODEC) or DEFAULT_CODEC,
                   'format_version': overlay_format.VERSION}
        if image.get('size'):
            overlay['size_bytes'] = int(image['size'])
        return {'overlay': overlay}
