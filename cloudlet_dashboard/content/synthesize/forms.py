"""Synthesize a server: an overlay (image, URL or file) on its base, or a base alone, resumed from memory.

The choices are the CLI's (`openstack cloudlet server synthesize | resume-base`):
the base is the one the overlay names (a URL's is given: the dashboard does not
fetch user URLs), the flavor the smallest that fits the base unless one is
chosen, the network the project's unless one is chosen. What nova would refuse
is checked here first; what it refuses anyway shows with nova's message.
"""

from django.utils.translation import gettext_lazy as _
from horizon import exceptions
from horizon import forms
from horizon import messages

from cloudlet_dashboard import api
from cloudlet_dashboard.content.common import fields
from cloudlet_glance import properties as props

SOURCES = (('image', _('Overlay Image')), ('url', _('Overlay URL')), ('file', _('Overlay File')),
           ('base', _('Base VM Only (Resume)')))
AUTO_NETWORK = 'auto'
NO_NETWORK = 'none'


class SynthesizeForm(forms.SelfHandlingForm):
    name = forms.CharField(max_length=255, label=_('Server Name'))
    source = forms.ThemableChoiceField(
        label=_('Source'), choices=SOURCES,
        widget=forms.ThemableSelectWidget(attrs={'class': 'switchable', 'data-slug': 'source'}))
    overlay = forms.ThemableChoiceField(label=_('Overlay Image'), required=False,
                                        widget=fields.switched(forms.ThemableSelectWidget(), 'source', 'image',
                                                               _('Overlay Image')))
    overlay_url = fields.http_url_field(
        _('Overlay URL'), 'source', 'url',
        _('The compute host downloads it (http or https). Choose its base below.'))
    overlay_file = forms.FileField(label=_('Overlay File'), required=False,
                                   widget=fields.switched(forms.FileInput(), 'source', 'file', _('Overlay File')))
    base = forms.ThemableChoiceField(label=_('Base VM'), required=False,
                                     help_text=_('Default: the base the overlay was made against.'))
    flavor = forms.ThemableChoiceField(label=_('Flavor'), required=False,
                                       help_text=_("Default: the smallest flavor with the base's RAM and vCPUs."))
    network = forms.ThemableChoiceField(label=_('Network'), required=False)
    lease_seconds = forms.IntegerField(required=False)     # replaced with the cloud's bounds, or removed

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.server_id = None
        self.fields['overlay'].choices = self._choices(
            request, api.overlay_list, lambda o: '%s (%s)' % (api.image_label(o), o.get(props.BASE_NAME) or '?'),
            _('overlay images'))
        self.fields['base'].choices = [('', _('Base of the overlay'))] + self._choices(
            request, api.base_list, api.image_label, _('base VMs'))
        self.fields['flavor'].choices = [('', _('Chosen for the base'))] + self._choices(
            request, api.flavor_list, lambda f: '%s (%d MB, %d vCPUs, %d GB)' % (
                f['name'], f['ram'], f['vcpus'], f['disk']), _('flavors'))
        self.fields['network'].choices = (
            [(AUTO_NETWORK, _('Network of the project (auto)'))]
            + self._choices(request, api.network_list, lambda n: n.name_or_id, _('networks'),
                            key=lambda n: n.id)
            + [(NO_NETWORK, _('No network'))])
        lease = self._lease_bounds(request)
        if lease:
            # The cloud's bounds (a value outside them is nova's 400).
            self.fields['lease_seconds'] = forms.IntegerField(
                label=_('Lease (seconds)'), required=False, min_value=lease['min_seconds'],
                max_value=lease['max_seconds'],
                help_text=_('Optional: the server lives while its device renews the lease '
                            '(%(min)d to %(max)d s).') % {'min': lease['min_seconds'],
                                                           'max': lease['max_seconds']})
        else:
            del self.fields['lease_seconds']

    @staticmethod
    def _choices(request, list_call, label, what, key=lambda item: item['id']):
        try:
            return [(key(item), label(item)) for item in list_call(request)]
        except Exception as exc:
            exceptions.handle(request, _('Unable to list %(what)s: %(error)s') % {'what': what, 'error': exc})
            return []

    @staticmethod
    def _lease_bounds(request):
        try:
            return api.discovery(request).get('lease')
        except Exception:
            return None     # an older cloudlet API: no leases

    def clean(self):
        data = super().clean()
        source = data.get('source')
        required = {'image': 'overlay', 'url': 'overlay_url', 'file': 'overlay_file', 'base': 'base'}.get(source)
        if required and not data.get(required):
            self.add_error(required, _('This source needs this field.'))
        if source == 'url' and not data.get('base'):
            self.add_error('base', _("Choose the overlay's base: the dashboard does not read URLs."))
        if self.errors or source == 'file':
            return data     # a file's base is known once it is read (handle)
        try:
            if source == 'base':
                data['base_image'] = api.base_get(self.request, data['base'])
            else:
                overlay = data['overlay'] if source == 'image' else data['overlay_url']
                data['base_image'], _overlay = api.synthesis_base(self.request, overlay, data.get('base') or None)
            data['flavor_record'] = api.flavor_for(self.request, data['base_image'], data.get('flavor') or None)
        except api.CloudletError as exc:
            raise forms.ValidationError(str(exc))
        return data

    def _metadata(self, data):
        metadata = {}
        if data['source'] == 'image':
            metadata[props.META_OVERLAY_ID] = data['overlay']
        elif data['source'] == 'url':
            metadata[props.META_OVERLAY_URL] = data['overlay_url']
        if data.get('lease_seconds'):
            metadata[props.META_LEASE_SECONDS] = str(data['lease_seconds'])
        return metadata

    @staticmethod
    def _networks(data):
        network = data.get('network') or AUTO_NETWORK
        return network if network in (AUTO_NETWORK, NO_NETWORK) else [{'uuid': network}]

    def handle(self, request, data):
        try:
            if data['source'] == 'file':
                self.server_id = self._from_file(request, data)
            else:
                self.server_id = api.server_create(request, data['name'], data['base_image']['id'],
                                                   data['flavor_record']['id'], self._networks(data),
                                                   self._metadata(data))
        except Exception as exc:
            exceptions.handle(request, _('Unable to synthesize server %(name)s: %(error)s')
                              % {'name': data['name'], 'error': exc})
            return False
        messages.info(request, _('Server %s is being synthesized.') % data['name'])
        return True

    def _from_file(self, request, data):
        """Upload the overlay (a hidden image, as the CLI does), then create; the image goes if nova refuses."""
        uploaded = data['overlay_file']
        with fields.on_disk(uploaded) as path:
            base_image, overlay = api.synthesis_base(request, path, data.get('base') or None)
            flavor = api.flavor_for(request, base_image, data.get('flavor') or None)
            image_id = api.overlay_upload(request, path, uploaded.name, base_image[props.BASE_ID])
        metadata = dict(self._metadata(data), **{props.META_OVERLAY_ID: image_id})
        try:
            return api.server_create(request, data['name'], base_image['id'], flavor['id'],
                                     self._networks(data), metadata)
        except Exception:
            api.image_delete_quietly(request, [image_id])
            raise
