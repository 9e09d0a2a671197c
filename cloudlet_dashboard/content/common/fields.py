"""Form pieces the panels share: http(s) URL fields, uploaded files on disk."""

import contextlib
import os
import tempfile

from django.core import validators
from horizon import forms


def http_url_field(label, switch, value, help_text, required=False):
    """A URL field shown when the `switch` field is `value`; http and https only (what nova fetches)."""
    return forms.URLField(
        label=label, required=required, help_text=help_text, max_length=2048, assume_scheme='https',
        validators=[validators.URLValidator(schemes=['http', 'https'])],
        widget=forms.TextInput(attrs={'class': 'switched', 'data-switch-on': switch,
                                      'data-%s-%s' % (switch, value): label}))


def switched(widget, switch, value, label):
    """`widget` shown only when the `switch` field is `value` (Horizon's switchable fields)."""
    widget.attrs.update({'class': 'switched', 'data-switch-on': switch, 'data-%s-%s' % (switch, value): label})
    return widget


@contextlib.contextmanager
def on_disk(uploaded):
    """The path of an uploaded file's content while the block runs (the Glance model reads paths).

    Django keeps a large upload in a temporary file it deletes itself; a small
    one stays in memory and is written to a file of ours, deleted afterwards.
    """
    path = getattr(uploaded, 'temporary_file_path', None)
    if path:
        yield path()
        return
    handle, path = tempfile.mkstemp(prefix='cloudlet-upload-', suffix=os.path.splitext(uploaded.name)[1])
    try:
        with os.fdopen(handle, 'wb') as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
        yield path
    finally:
        os.unlink(path)
