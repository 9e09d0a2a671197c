"""View pieces the panels share: one form template for every modal form, file downloads."""

import os
import shutil
import tempfile

from django import http
from horizon import forms

FORM_TEMPLATE = 'cloudlet/form.html'    # the modal (ajax) one is cloudlet/_form.html


class FormView(forms.ModalFormView):
    """A modal form (a page of its own without JavaScript) with a short description beside it."""
    template_name = FORM_TEMPLATE
    description = None

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context['description'] = self.description
        return context


class _RemovedOnClose:
    """A file whose scratch directory goes once the response has sent it (FileResponse closes it)."""

    def __init__(self, path, scratch):
        self._file = open(path, 'rb')
        self._scratch = scratch

    def read(self, *args):
        return self._file.read(*args)

    def close(self):
        self._file.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


def download(write, filename):
    """A response sending the file `write(path, scratch_dir)` writes; the scratch directory is always removed."""
    scratch = tempfile.mkdtemp(prefix='cloudlet-download-')
    try:
        path = os.path.join(scratch, filename)
        write(path, scratch)
        size = os.path.getsize(path)
        response = http.FileResponse(_RemovedOnClose(path, scratch), as_attachment=True, filename=filename)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    response['Content-Length'] = str(size)
    return response
