"""Capture a running cloudlet server: as an overlay of its base, or as a new base VM."""

from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from horizon import exceptions
from horizon import forms
from horizon import messages

from cloudlet_dashboard import api

INSTANCES = 'horizon:project:instances:index'


class _CaptureForm(forms.SelfHandlingForm):
    instance_id = forms.CharField(widget=forms.HiddenInput())
    name = forms.CharField(max_length=255, label=_('Name'))

    def capture(self, request, data):
        raise NotImplementedError

    def handle(self, request, data):
        try:
            image_id = self.capture(request, data)
        except Exception as exc:
            exceptions.handle(request, self.failure % {'name': data['name'], 'error': exc},
                              redirect=reverse(INSTANCES))
            return False
        messages.info(request, self.started % {'name': data['name'], 'image': image_id})
        return True


class CreateOverlayForm(_CaptureForm):
    codec = forms.ThemableChoiceField(label=_('Compression'), required=False,
                                      help_text=_('Default: the cloud\'s (zstd is fast, xz small).'))
    failure = _('Unable to create overlay %(name)s: %(error)s')
    started = _('Creating overlay %(name)s (image %(image)s): the server shows the task until it is saved.')

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        try:
            codecs = api.discovery(request).get('codecs') or []
        except Exception:
            codecs = []
        self.fields['codec'].choices = [('', _('Default'))] + [(codec, codec) for codec in codecs]

    def capture(self, request, data):
        return api.create_overlay(request, data['instance_id'], data['name'], codec=data.get('codec') or None)


class CreateBaseForm(_CaptureForm):
    failure = _('Unable to create base VM %(name)s: %(error)s')
    started = _('Creating base VM %(name)s (image %(image)s): the server shows the task until it is saved.')

    def capture(self, request, data):
        return api.create_base(request, data['instance_id'], data['name'])
