from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _
from horizon import workflows

from cloudlet_dashboard import api
from cloudlet_dashboard.content.common import views as common_views
from cloudlet_dashboard.content.servers import forms as server_forms
from cloudlet_dashboard.content.servers import workflows as server_workflows

INSTANCES = reverse_lazy('horizon:project:instances:index')


class _ServerFormView(common_views.FormView):
    success_url = INSTANCES
    cancel_url = INSTANCES
    submit_view = None

    def get_initial(self):
        return {'instance_id': self.kwargs['instance_id']}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context['submit_url'] = reverse_lazy(self.submit_view, args=[self.kwargs['instance_id']])
        return context


class CreateOverlayView(_ServerFormView):
    form_class = server_forms.CreateOverlayForm
    form_id = 'create_overlay_form'
    modal_id = 'create_overlay_modal'
    submit_label = _('Create Overlay')
    submit_view = 'horizon:project:cloudlet_servers:create_overlay'
    page_title = _('Create Overlay')
    description = _('An overlay is the compressed difference of this server\'s disk and memory from its '
                    'base VM. Synthesizing it on any cloud with the base resumes the server as it is now.')


class CreateBaseView(_ServerFormView):
    form_class = server_forms.CreateBaseForm
    form_id = 'create_base_form'
    modal_id = 'create_base_modal'
    submit_label = _('Create Base VM')
    submit_view = 'horizon:project:cloudlet_servers:create_base'
    page_title = _('Create Base VM')
    description = _("A base VM is this server's whole disk and memory snapshot: overlays are made "
                    'against it, and servers resume from it.')


class HandoffView(workflows.WorkflowView):
    workflow_class = server_workflows.HandoffWorkflow

    def get_initial(self):
        initial = {'instance_id': self.kwargs['instance_id']}
        try:
            initial['server_name'] = api.server_get(self.request, self.kwargs['instance_id'])['name']
        except api.CloudletError:
            pass    # the step asks for the name; the handoff itself says what is wrong
        return initial
