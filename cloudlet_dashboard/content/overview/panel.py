from django.utils.translation import gettext_lazy as _
import horizon


class Overview(horizon.Panel):
    name = _('Overview')
    slug = 'cloudlet_overview'
    permissions = ('openstack.services.compute',)
    policy_rules = (('compute', 'cloudlet:discover'),)
