"""Horizon's own test settings, with the cloudlet plugin's enabled files beside Horizon's (as installed)."""

from openstack_dashboard.test.settings import *  # noqa: F403

from openstack_dashboard import enabled as _horizon_enabled
from openstack_dashboard.utils import settings as _settings_utils

import cloudlet_dashboard.enabled

# update_dashboards sets the dashboards and panels from all the files it is given, and
# prepends their apps: give it both sets, and keep each app once.
_apps = []
_settings_utils.update_dashboards([_horizon_enabled, cloudlet_dashboard.enabled], HORIZON_CONFIG, _apps)  # noqa
INSTALLED_APPS = _apps + [app for app in INSTALLED_APPS if app not in _apps]  # noqa: F405
# Run by pytest, not Django's test runner (which names a test database): Horizon keeps nothing in it.
DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}}
