"""The cloudlet at a glance: what its API offers (the discovery document) and, for admins, its hosts."""

from django.utils.translation import gettext_lazy as _
from horizon import exceptions
from horizon import tables

from cloudlet_dashboard import api
from cloudlet_dashboard.content.overview import tables as overview_tables
from openstack_dashboard import policy

# Who may see the hosts: nova's own rules for its host and hypervisor lists.
HOSTS_POLICY = (('compute', 'os_compute_api:os-services:list'),
                ('compute', 'os_compute_api:os-hypervisors:list-detail'))


class IndexView(tables.DataTableView):
    table_class = overview_tables.HostsTable
    template_name = 'cloudlet/overview.html'
    page_title = _('Cloudlet')

    def hosts_visible(self):
        return policy.check(HOSTS_POLICY, self.request)

    def get_data(self):
        if not self.hosts_visible():
            return []
        try:
            hosts = api.hosts(self.request)
            names = {api.trait_of_image(base['id']): api.image_label(base)
                     for base in api.base_list(self.request)}
        except Exception as exc:
            exceptions.handle(self.request, _('Unable to list the compute hosts: %s') % exc)
            return []
        for host in hosts:
            host['cached_bases'] = sorted(names.get(trait, trait.lower()) for trait in host['cached_traits'])
        return hosts

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context['hosts_visible'] = self.hosts_visible()
        try:
            context['discovery'] = api.discovery(self.request)
        except Exception as exc:
            exceptions.handle(self.request, _('Unable to read the cloudlet API: %s') % exc)
        return context
