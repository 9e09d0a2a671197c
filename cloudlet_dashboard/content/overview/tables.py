"""The compute hosts of the cloudlet: the bases each holds, and its free capacity (admins)."""

from django.template import defaultfilters
from django.utils.translation import gettext_lazy as _
from horizon import tables


def _free(resource, unit=''):
    def value(datum):
        amount = datum['free'].get(resource)
        return '-' if amount is None else '%s%s' % (amount, unit)
    return value


def _cached_bases(datum):
    return ', '.join(datum.get('cached_bases') or []) or '-'


class HostsTable(tables.DataTable):
    host = tables.Column('host', verbose_name=_('Host'))
    state = tables.Column('state', verbose_name=_('State'), filters=(defaultfilters.title,))
    status = tables.Column('status', verbose_name=_('Status'), filters=(defaultfilters.title,))
    bases = tables.WrappingColumn(_cached_bases, verbose_name=_('Base VMs Held'))
    vcpus = tables.Column(_free('VCPU'), verbose_name=_('Free vCPUs'))
    ram = tables.Column(_free('MEMORY_MB', ' MB'), verbose_name=_('Free RAM'))
    disk = tables.Column(_free('DISK_GB', ' GB'), verbose_name=_('Free Disk'))

    def get_object_id(self, datum):
        return datum['host']

    class Meta:
        name = 'hosts'
        verbose_name = _('Compute Hosts')
