from django.urls import reverse
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _
from django.views import generic
from horizon import exceptions
from horizon import tables

from cloudlet_dashboard import api
from cloudlet_dashboard.content.bases import forms as base_forms
from cloudlet_dashboard.content.bases import tables as base_tables
from cloudlet_dashboard.content.common import views as common_views

INDEX = 'horizon:project:cloudlet_bases:index'


class IndexView(tables.MultiTableView):
    table_classes = (base_tables.BasesTable, base_tables.ImportsTable)
    template_name = 'cloudlet/tables.html'
    page_title = _('Base VMs')

    def get_bases_data(self):
        try:
            return api.base_list(self.request)
        except Exception as exc:
            exceptions.handle(self.request, _('Unable to list base VMs: %s') % exc)
            return []

    def get_imports_data(self):
        try:
            return sorted(api.base_import_list(self.request), key=lambda r: r.get('created_at') or '',
                          reverse=True)
        except Exception as exc:
            exceptions.handle(self.request, _('Unable to list base imports: %s') % exc)
            return []

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context['tables'] = [context['bases_table'], context['imports_table']]
        return context


class ImportView(common_views.FormView):
    form_class = base_forms.ImportBaseForm
    form_id = 'import_base_form'
    modal_id = 'import_base_modal'
    submit_label = _('Import')
    submit_url = reverse_lazy('horizon:project:cloudlet_bases:import')
    success_url = reverse_lazy(INDEX)
    page_title = _('Import Base VM')
    description = _('A base VM package (a file `openstack cloudlet base export` wrote) holds the base\'s '
                    'disk and memory snapshot. From a URL, the cloud downloads it and its progress shows on '
                    'the Base VMs page; a file goes from your browser through the dashboard.')


class ExportView(generic.View):
    """The base as a package file (doc/base-vm-package.md), sent to the browser."""

    def get(self, request, image_id):
        try:
            base = api.base_get(request, image_id)
            filename = '%s.cloudlet-base.zip' % (base.get('name') or image_id)
            return common_views.download(
                lambda path, scratch: api.base_export(request, base['id'], path, workdir=scratch), filename)
        except Exception as exc:
            exceptions.handle(request, _('Unable to export base VM %(id)s: %(error)s')
                              % {'id': image_id, 'error': exc}, redirect=reverse(INDEX))
