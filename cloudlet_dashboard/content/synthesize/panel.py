from django.utils.translation import gettext_lazy as _
import horizon


class Synthesize(horizon.Panel):
    name = _('Synthesize')
    slug = 'cloudlet_synthesize'
    permissions = ('openstack.services.compute', 'openstack.services.image')
    policy_rules = (('compute', 'os_compute_api:servers:create'),)
