"""Import a base VM package: from a URL (nova-api downloads it) or a file the browser uploads."""

from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from horizon import exceptions
from horizon import forms
from horizon import messages

from cloudlet_dashboard import api
from cloudlet_dashboard.content.common import fields
from openstack_dashboard import policy

SOURCES = (('url', _('Package URL')), ('file', _('Package File')))


class ImportBaseForm(forms.SelfHandlingForm):
    source = forms.ThemableChoiceField(
        label=_('Package Source'), choices=SOURCES,
        widget=forms.ThemableSelectWidget(attrs={'class': 'switchable', 'data-slug': 'source'}))
    url = fields.http_url_field(
        _('Package URL'), 'source', 'url',
        _('An http(s) URL of a base package (openstack cloudlet base export). The cloud downloads it.'))
    package = forms.FileField(label=_('Package File'), required=False,
                              widget=fields.switched(forms.FileInput(), 'source', 'file', _('Package File')))
    name = forms.CharField(max_length=255, label=_('Name'), required=False,
                           help_text=_('Default: the name recorded in the package.'))
    visibility = forms.ThemableChoiceField(label=_('Visibility'),
                                           choices=(('private', _('Private')), ('public', _('Public'))))

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        if not policy.check((('compute', 'cloudlet:base:import:public'),), request):
            self.fields['visibility'].choices = (('private', _('Private')),)

    def clean(self):
        data = super().clean()
        if data.get('source') == 'url' and not data.get('url'):
            self.add_error('url', _('Give the package\'s URL.'))
        if data.get('source') == 'file' and not data.get('package'):
            self.add_error('package', _('Choose a package file.'))
        return data

    def handle(self, request, data):
        try:
            if data['source'] == 'url':
                record = api.base_import_from_url(request, data['url'], data['name'], data['visibility'])
                messages.info(request, _('Importing base VM package %s: see its progress below.')
                              % (record.get('name') or data['url']))
                return True
            uploaded = data['package']
            with fields.on_disk(uploaded) as path:
                api.base_import_from_file(request, path, data['name'], data['visibility'])
            messages.success(request, _('Imported base VM package %s.') % uploaded.name)
            return True
        except Exception as exc:
            exceptions.handle(request, _('Unable to import the base VM package: %s') % exc,
                              redirect=reverse('horizon:project:cloudlet_bases:index'))
