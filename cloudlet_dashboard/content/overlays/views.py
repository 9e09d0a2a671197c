from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views import generic
from horizon import exceptions
from horizon import tables

from cloudlet_dashboard import api
from cloudlet_dashboard.content.common import views as common_views
from cloudlet_dashboard.content.overlays import tables as overlay_tables

INDEX = 'horizon:project:cloudlet_overlays:index'


class IndexView(tables.DataTableView):
    """Every overlay, or (?base=<base id>, the Base VMs page's link) those of one base."""
    table_class = overlay_tables.OverlaysTable
    page_title = _('Overlays')

    def get_data(self):
        try:
            return api.overlay_list(self.request, self.request.GET.get('base') or None)
        except Exception as exc:
            exceptions.handle(self.request, _('Unable to list overlays: %s') % exc)
            return []


class DownloadView(generic.View):
    def get(self, request, image_id):
        try:
            overlay = api.overlay_get(request, image_id)
            filename = '%s.overlay' % (overlay.get('name') or image_id)

            def write(path, scratch):
                with open(path, 'wb') as out:
                    api.overlay_download(request, overlay['id'], out)
            return common_views.download(write, filename)
        except Exception as exc:
            exceptions.handle(request, _('Unable to download overlay %(id)s: %(error)s')
                              % {'id': image_id, 'error': exc}, redirect=reverse(INDEX))
