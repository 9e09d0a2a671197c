from django.urls import reverse
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _

from cloudlet_dashboard.content.common import views as common_views
from cloudlet_dashboard.content.synthesize import forms as synthesize_forms


class SynthesizeView(common_views.FormView):
    """The panel's page; a new server's own page follows (Instances' detail view)."""
    form_class = synthesize_forms.SynthesizeForm
    form_id = 'synthesize_form'
    modal_id = 'synthesize_modal'
    submit_label = _('Synthesize')
    submit_url = reverse_lazy('horizon:project:cloudlet_synthesize:index')
    cancel_url = reverse_lazy('horizon:project:instances:index')
    page_title = _('Synthesize a Server')
    description = _('The base VM resumes from its memory snapshot with the overlay applied: the server '
                    'starts running where the overlay was captured, without a boot.')

    def get_initial(self):
        return {key: self.request.GET[key] for key in ('source', 'base', 'overlay', 'name')
                if self.request.GET.get(key)}

    def form_valid(self, form):
        self._form = form
        return super().form_valid(form)

    def get_success_url(self):
        return reverse('horizon:project:instances:detail', args=[self._form.server_id])
