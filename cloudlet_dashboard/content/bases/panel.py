from django.utils.translation import gettext_lazy as _
import horizon


class Bases(horizon.Panel):
    name = _('Base VMs')
    slug = 'cloudlet_bases'
    permissions = ('openstack.services.compute', 'openstack.services.image')
    policy_rules = (('image', 'get_images'),)
