# The Cloudlet panel group of the project dashboard (Horizon's enabled/ convention).
from django.utils.translation import gettext_lazy as _

PANEL_GROUP = 'cloudlet'
PANEL_GROUP_NAME = _('Cloudlet')
PANEL_GROUP_DASHBOARD = 'project'
# Once for the plugin (Horizon adds each file's apps; a second entry is an error).
ADD_INSTALLED_APPS = ['cloudlet_dashboard']
