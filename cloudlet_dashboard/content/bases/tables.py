"""The Base VMs page: the bases (their disk images) and the imports nova-api runs."""

from django.template import defaultfilters
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy
from horizon import tables

from cloudlet_dashboard import api
from cloudlet_dashboard.content.common import tables as common_tables
from cloudlet_glance import properties as props


def _ram(datum):
    memory_mb = datum.get(props.MEMORY_MB)
    return _('%s MB') % memory_mb if memory_mb else '-'


def _short_base_id(datum):
    return (datum.get(props.BASE_ID) or '')[:12]


class ImportBase(tables.LinkAction):
    name = 'import'
    verbose_name = _('Import Base VM')
    url = 'horizon:project:cloudlet_bases:import'
    classes = ('ajax-modal',)
    icon = 'upload'
    policy_rules = (('compute', 'cloudlet:base:import'),)


class ExportBase(tables.LinkAction):
    """Download the base as a package file (doc/base-vm-package.md), as `openstack cloudlet base export`."""
    name = 'export'
    verbose_name = _('Export')
    url = 'horizon:project:cloudlet_bases:export'
    icon = 'download'


class ShowOverlays(tables.LinkAction):
    name = 'overlays'
    verbose_name = _('Overlays')
    icon = 'list'

    def get_link_url(self, datum=None):
        return '%s?%s' % (reverse('horizon:project:cloudlet_overlays:index'),
                          urlencode({'base': datum.get(props.BASE_ID)}))


class SynthesizeFromBase(tables.LinkAction):
    name = 'resume'
    verbose_name = _('Resume')
    classes = ('btn-launch',)
    policy_rules = (('compute', 'os_compute_api:servers:create'),)

    def get_link_url(self, datum=None):
        return '%s?%s' % (reverse('horizon:project:cloudlet_synthesize:index'),
                          urlencode({'source': 'base', 'base': datum['id']}))


class DeleteBase(common_tables.DeleteOwnedImage):
    @staticmethod
    def action_present(count):
        return ngettext_lazy('Delete Base VM', 'Delete Base VMs', count)

    @staticmethod
    def action_past(count):
        return ngettext_lazy('Deleted Base VM', 'Deleted Base VMs', count)

    def delete(self, request, obj_id):
        api.base_delete(request, obj_id)


class BasesFilter(tables.FilterAction):
    def filter(self, table, bases, filter_string):
        query = filter_string.lower()
        return [base for base in bases if query in (base.get('name') or '').lower()]


class BasesTable(common_tables.DictRows, tables.DataTable):
    name = tables.WrappingColumn('name', verbose_name=_('Name'))
    base_id = tables.Column(_short_base_id, verbose_name=_('Base ID'))
    size = tables.Column(common_tables.size, verbose_name=_('Disk Size'), attrs={'data-type': 'size'})
    ram = tables.Column(_ram, verbose_name=_('RAM'))
    vcpus = tables.Column(props.VCPUS, verbose_name=_('vCPUs'), empty_value='-')
    visibility = tables.Column('visibility', verbose_name=_('Visibility'),
                               filters=(defaultfilters.title,))
    status = tables.Column('status', verbose_name=_('Status'), filters=(defaultfilters.title,))

    class Meta:
        name = 'bases'
        verbose_name = _('Base VMs')
        table_actions = (BasesFilter, ImportBase, DeleteBase)
        row_actions = (SynthesizeFromBase, ShowOverlays, ExportBase, DeleteBase)


# ------------------------------------------------------------------ imports


def _progress(datum):
    progress = datum.get('progress') or {}
    done, total = progress.get('bytes_done'), progress.get('bytes_total')
    stage = progress.get('stage') or ''
    if datum.get('status') in ('active', 'error'):
        return stage or '-'         # the bytes of the last stage, not of the import
    if done is not None and total:
        return '%s %d%% (%s / %s)' % (stage, 100 * done // total, defaultfilters.filesizeformat(done),
                                       defaultfilters.filesizeformat(total))
    return stage or '-'


class UpdateImportRow(tables.Row):
    """Refreshed by the page while the import moves (status column below)."""
    ajax = True

    def get_data(self, request, import_id):
        return api.base_import_get(request, import_id)


class DeleteImport(tables.DeleteAction):
    policy_rules = (('compute', 'cloudlet:base:delete'),)
    help_text = _('Deleting an active import also deletes the images it made.')

    @staticmethod
    def action_present(count):
        return ngettext_lazy('Delete Import', 'Delete Imports', count)

    @staticmethod
    def action_past(count):
        return ngettext_lazy('Deleted Import', 'Deleted Imports', count)

    def delete(self, request, obj_id):
        api.base_import_delete(request, obj_id)


class ImportsTable(common_tables.DictRows, tables.DataTable):
    STATUS_CHOICES = tuple((status, None) for status in api.IMPORT_RUNNING) + (
        ('active', True), ('error', False))
    name = tables.WrappingColumn('name', verbose_name=_('Name'))
    url = tables.WrappingColumn('url', verbose_name=_('Package URL'))
    status = tables.Column('status', verbose_name=_('Status'), status=True,
                           status_choices=STATUS_CHOICES, filters=(defaultfilters.title,))
    progress = tables.Column(_progress, verbose_name=_('Progress'))
    error = tables.WrappingColumn('error', verbose_name=_('Error'), empty_value='')
    image_id = tables.Column('image_id', verbose_name=_('Disk Image'), empty_value='-')

    class Meta:
        name = 'imports'
        verbose_name = _('Imports')
        status_columns = ('status',)
        row_class = UpdateImportRow
        table_actions = (DeleteImport,)
        row_actions = (DeleteImport,)
