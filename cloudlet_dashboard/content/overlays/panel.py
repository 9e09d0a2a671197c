from django.utils.translation import gettext_lazy as _
import horizon


class Overlays(horizon.Panel):
    name = _('Overlays')
    slug = 'cloudlet_overlays'
    permissions = ('openstack.services.compute', 'openstack.services.image')
    policy_rules = (('image', 'get_images'),)
