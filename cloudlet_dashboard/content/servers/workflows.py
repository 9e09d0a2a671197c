"""Hand a server off to another cloud: where to, and with which credential of that cloud.

The credential is an application credential the user made on the destination
(its dashboard: Identity > Application Credentials, or `openstack application
credential create`): the source cloud's compute host uses it to create the
server there, and it is neither stored nor shown again.
"""

from django.utils.translation import gettext_lazy as _
from horizon import exceptions
from horizon import forms
from horizon import workflows

from cloudlet_dashboard import api
from cloudlet_dashboard.content.common import fields

BY_CLOUD, BY_AUTH_URL = 'cloud', 'auth_url'


class DestinationAction(workflows.Action):
    kind = forms.ThemableChoiceField(
        label=_('Destination'),
        widget=forms.ThemableSelectWidget(attrs={'class': 'switchable', 'data-slug': 'kind'}))
    cloud = forms.ThemableChoiceField(label=_('Cloud'), required=False,
                                      widget=fields.switched(forms.ThemableSelectWidget(), 'kind', BY_CLOUD,
                                                             _('Cloud')))
    auth_url = fields.http_url_field(_('Identity (Keystone) URL'), 'kind', BY_AUTH_URL,
                                     _("The destination's Keystone v3 URL, e.g. https://edge-b.example:5000/v3."))
    region_name = forms.CharField(label=_('Region'), required=False, max_length=255)
    server_name = forms.CharField(label=_('Name There'), max_length=255)
    codec = forms.ThemableChoiceField(label=_('Compression'), required=False)

    class Meta:
        name = _('Destination')
        help_text = _('The server keeps running here while its state streams to the destination; it is '
                      'deleted here once it runs there. On any failure it keeps running here, and its '
                      'action log says why.')

    def __init__(self, request, context, *args, **kwargs):
        super().__init__(request, context, *args, **kwargs)
        try:
            handoff = api.discovery(request).get('handoff') or {}
        except Exception as exc:
            exceptions.handle(request, _('Unable to read the cloudlet API: %s') % exc)
            handoff = {}
        clouds = handoff.get('destinations') or []
        kinds = ([(BY_CLOUD, _('A cloud this cloud knows'))] if clouds else []) + [
            (BY_AUTH_URL, _('A cloud by its Keystone URL'))]
        self.fields['kind'].choices = kinds
        self.fields['cloud'].choices = [(cloud, cloud) for cloud in clouds]
        self.fields['codec'].choices = [('', _('Default'))] + [
            (codec, codec) for codec in handoff.get('codecs') or [] if codec != 'auto']

    def clean(self):
        data = super().clean()
        needed = {BY_CLOUD: 'cloud', BY_AUTH_URL: 'auth_url'}.get(data.get('kind'))
        if needed and not data.get(needed):
            self.add_error(needed, _('This destination needs this field.'))
        return data


class Destination(workflows.Step):
    action_class = DestinationAction
    depends_on = ('instance_id',)
    contributes = ('kind', 'cloud', 'auth_url', 'region_name', 'server_name', 'codec')


class CredentialAction(workflows.Action):
    credential_id = forms.CharField(label=_('Application Credential ID'), max_length=255)
    credential_secret = forms.CharField(label=_('Application Credential Secret'), max_length=4096,
                                        widget=forms.PasswordInput(render_value=False))

    class Meta:
        name = _('Credential')
        help_text = _('An application credential of your project on the destination. The compute host '
                      'uses it to create the server there; it is not kept here.')


class Credential(workflows.Step):
    action_class = CredentialAction
    contributes = ('credential_id', 'credential_secret')


class HandoffWorkflow(workflows.Workflow):
    slug = 'cloudlet_handoff'
    name = _('Hand Off Server')
    finalize_button_name = _('Hand Off')
    success_message = _('Handing off server "%s": it shows the task Migrating until it runs there.')
    failure_message = _('Unable to hand off server "%s".')
    success_url = 'horizon:project:instances:index'
    default_steps = (Destination, Credential)

    def format_status_message(self, message):
        return message % self.context.get('server_name', '')

    @staticmethod
    def destination(context):
        destination = {context['kind']: context[context['kind']]}
        if context.get('region_name'):
            destination['region_name'] = context['region_name']
        return destination

    def handle(self, request, context):
        credential = {'application_credential': {'id': context['credential_id'],
                                                 'secret': context['credential_secret']}}
        try:
            api.handoff(request, context['instance_id'], self.destination(context), credential,
                        name=context['server_name'], codec=context.get('codec') or None)
        except Exception as exc:
            exceptions.handle(request, str(exc))
            return False
        return True
