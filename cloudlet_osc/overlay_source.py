"""What an OVERLAY argument names, and the base it was made against.

`server synthesize` takes an http(s) URL, a local overlay file or an overlay
image (name or id). The base identity of a URL or a file comes from the
overlay's header, read with the engine's own reader (for a URL only the
header is fetched: the compute host streams the rest); an image carries it
as its cloudlet_base_id property.
"""

import dataclasses
import os
import urllib.parse

from osc_lib import exceptions

from cloudlet_engine import format as overlay_format
from cloudlet_engine import outbound
from cloudlet_engine import source
from cloudlet_glance import errors as glance_errors
from cloudlet_glance import model
from cloudlet_glance import properties as props

URL, FILE, IMAGE = 'url', 'file', 'image'


@dataclasses.dataclass(frozen=True)
class Overlay:
    kind: str                 # URL, FILE or IMAGE
    location: str             # the URL, the file's path or the image id
    base_id: str = None       # None only for a URL whose header was not read
    base_name: str = None     # the header's or image's hint, for messages

    def describe(self):
        base = self.base_id[:12] if self.base_id else '?'
        return 'base %s (%s)' % (self.base_name, base) if self.base_name else 'base %s' % base


def resolve(images, ref, read_url=True):
    """The Overlay `ref` names: an http(s) URL, a local file (path or file://), else an image.

    `read_url=False` leaves a URL's header unread (the caller names the base).
    """
    parsed = urllib.parse.urlsplit(ref)
    scheme = parsed.scheme.lower()
    if scheme in ('http', 'https'):
        return _from_header(URL, ref, allow_files=False) if read_url else Overlay(URL, ref)
    if scheme == 'file' or os.path.isfile(ref):
        return _from_header(FILE, parsed.path if scheme == 'file' else ref, allow_files=True)
    try:
        image = model.find_overlay(images, ref)
    except glance_errors.ImageNotFound:
        # Most often a mistyped path: say every reading that was tried.
        raise exceptions.CommandError('%s is neither an http(s) URL, a local file nor an overlay image'
                                      % ref) from None
    return Overlay(IMAGE, image['id'], image.get(props.BASE_ID), image.get(props.BASE_NAME))


def _from_header(kind, location, allow_files):
    # On the user's own machine, for that user: no outbound policy narrows it.
    with source.open_overlay(location, allow_files=allow_files, prefetch=False,
                             policy=outbound.OPEN) as stream:
        meta = overlay_format.OverlayReader(stream).meta
    return Overlay(kind, location, meta['base_id'], meta.get('base_name'))


def base_image(images, overlay, base_ref=None):
    """The base disk image to synthesize `overlay` on: `base_ref`, or the base its header names."""
    if base_ref:
        image = model.find_base(images, base_ref)
        if overlay.base_id and overlay.base_id != image[props.BASE_ID]:
            raise exceptions.CommandError('overlay %s was made against %s, not against base %s'
                                          % (overlay.location, overlay.describe(), base_ref))
        return image
    if not overlay.base_id:
        raise exceptions.CommandError('overlay %s does not name its base: give --base' % overlay.location)
    found = model.find_complete_base(images, overlay.base_id)
    if found is None:
        raise exceptions.CommandError(
            'overlay %s was made against %s, which this cloud does not have (base ID %s): import its '
            'base package first (openstack cloudlet base import)'
            % (overlay.location, overlay.describe(), overlay.base_id))
    return images.get(found.disk_id)
