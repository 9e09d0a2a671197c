"""The Overlays page: overlay images, with the base each was made against."""

from django.template import defaultfilters
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy
from horizon import tables

from cloudlet_dashboard import api
from cloudlet_dashboard.content.common import tables as common_tables
from cloudlet_glance import properties as props


def _base(datum):
    return datum.get(props.BASE_NAME) or (datum.get(props.BASE_ID) or '')[:12]


class DownloadOverlay(tables.LinkAction):
    name = 'download'
    verbose_name = _('Download')
    url = 'horizon:project:cloudlet_overlays:download'
    icon = 'download'


class SynthesizeOverlay(tables.LinkAction):
    name = 'synthesize'
    verbose_name = _('Synthesize')
    classes = ('btn-launch',)
    policy_rules = (('compute', 'os_compute_api:servers:create'),)

    def get_link_url(self, datum=None):
        return '%s?%s' % (reverse('horizon:project:cloudlet_synthesize:index'),
                          urlencode({'source': 'image', 'overlay': datum['id']}))


class DeleteOverlay(common_tables.DeleteOwnedImage):
    @staticmethod
    def action_present(count):
        return ngettext_lazy('Delete Overlay', 'Delete Overlays', count)

    @staticmethod
    def action_past(count):
        return ngettext_lazy('Deleted Overlay', 'Deleted Overlays', count)

    def delete(self, request, obj_id):
        api.overlay_delete(request, obj_id)


class OverlaysFilter(tables.FilterAction):
    def filter(self, table, overlays, filter_string):
        query = filter_string.lower()
        return [o for o in overlays if query in (o.get('name') or '').lower() or query in _base(o).lower()]


class OverlaysTable(common_tables.DictRows, tables.DataTable):
    name = tables.WrappingColumn('name', verbose_name=_('Name'))
    base = tables.Column(_base, verbose_name=_('Base VM'))
    size = tables.Column(common_tables.size, verbose_name=_('Size'), attrs={'data-type': 'size'})
    codec = tables.Column(props.CODEC, verbose_name=_('Codec'), empty_value='-')
    status = tables.Column('status', verbose_name=_('Status'), filters=(defaultfilters.title,))
    created = tables.Column('created_at', verbose_name=_('Created'))

    class Meta:
        name = 'overlays'
        verbose_name = _('Overlays')
        table_actions = (OverlaysFilter, DeleteOverlay)
        row_actions = (SynthesizeOverlay, DownloadOverlay, DeleteOverlay)

