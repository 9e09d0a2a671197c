from django.utils.translation import gettext_lazy as _
import horizon


class Servers(horizon.Panel):
    """The forms behind the Instances table's cloudlet actions; no entry in the navigation."""
    name = _('Cloudlet Servers')
    slug = 'cloudlet_servers'
    nav = False
    permissions = ('openstack.services.compute',)
