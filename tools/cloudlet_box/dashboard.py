"""The box's dashboard: Horizon (PyPI's, in the venv) with the cloudlet plugin, on the box's Keystone.

Horizon reads its plugins from its own package directory (enabled files,
policy files), where `cloudlet-dashboard-install` puts ours, as the devstack
plugin does. Its settings are the box's: openstack_dashboard.settings imports
`local.local_settings`, and the box's uwsgi puts `<etc>/horizon` (holding
`local/local_settings.py`) first on the path, so the package's own
`openstack_dashboard/local/` stays untouched. Static files are collected and
compressed once per installed code (a stamp), which takes a minute or two, and
uwsgi serves them at /dashboard/static.
"""

import hashlib
import os
import subprocess

from cloudlet_box import layout

WEBROOT = '/dashboard/'
SETTINGS = """# Written by tools/cloudlet_box/dashboard.py for box {name}: rewritten on every `up`.
DEBUG = False
ALLOWED_HOSTS = ['*']
WEBROOT = {webroot!r}
SECRET_KEY = {secret!r}
OPENSTACK_KEYSTONE_URL = {keystone!r}
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = 'Default'
OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'
OPENSTACK_KEYSTONE_MULTIDOMAIN_SUPPORT = False
OPENSTACK_ENDPOINT_TYPE = 'publicURL'
SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'
CACHES = {{'default': {{'BACKEND': 'django.core.cache.backends.locmem.LocMemCache'}}}}
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
STATIC_ROOT = {static!r}
COMPRESS_OFFLINE = True
TIME_ZONE = 'UTC'
# The box has no Cinder, Swift or Octavia: Horizon hides their panels.
OPENSTACK_CINDER_FEATURES = {{'enable_backup': False}}
LOGGING = {{
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {{'plain': {{'format': '%(asctime)s %(process)d %(levelname)s %(name)s %(message)s'}}}},
    'handlers': {{'file': {{'class': 'logging.FileHandler', 'filename': {log!r}, 'formatter': 'plain'}}}},
    'root': {{'handlers': ['file'], 'level': 'INFO'}},
}}
"""


def settings_dir(box):
    return box.etc / 'horizon'


def static_root(box):
    return box.root / 'horizon' / 'static'


def environment(box):
    """What Django's commands and the uwsgi worker need to load the box's settings."""
    return {'DJANGO_SETTINGS_MODULE': 'openstack_dashboard.settings',
            'PYTHONPATH': str(settings_dir(box))}


def write_settings(box):
    local = settings_dir(box) / 'local'
    local.mkdir(parents=True, exist_ok=True)
    (local / '__init__.py').write_text('')
    text = SETTINGS.format(name=box.name, webroot=WEBROOT, secret=box.secrets()['horizon'],
                           keystone=box.public_url('keystone') + '/v3', static=str(static_root(box)),
                           log=str(box.logs / 'horizon-app.log'))
    path = local / 'local_settings.py'
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        path.chmod(0o600)


def _code_digest(box):
    """Installed Horizon and openstack-cloudlet, and the settings: a change means new static files."""
    digest = hashlib.sha256()
    site = sorted(layout.VENV.glob('lib/python3*/site-packages'))[0]
    for pattern in ('horizon-*.dist-info/RECORD', 'openstack_cloudlet-*.dist-info/RECORD'):
        for record in sorted(site.glob(pattern)):
            digest.update(record.read_bytes())
    digest.update((settings_dir(box) / 'local' / 'local_settings.py').read_bytes())
    return digest.hexdigest()


def prepare(box):
    """Settings, the plugin's files in Horizon, and its static files (collected and compressed once)."""
    write_settings(box)
    bin_dir = layout.VENV / 'bin'
    subprocess.run([str(bin_dir / 'cloudlet-dashboard-install')], check=True, capture_output=True)
    stamp = static_root(box).parent / 'static.stamp'
    digest = _code_digest(box)
    if stamp.exists() and stamp.read_text() == digest:
        return False
    env = dict(os.environ, **environment(box))
    for command in (['collectstatic', '--noinput', '--clear', '-v0'], ['compress', '--force', '-v0']):
        subprocess.run([str(bin_dir / 'django-admin')] + command, check=True, env=env,
                       stdout=subprocess.DEVNULL)
    stamp.write_text(digest)
    return True


def url(box):
    return box.public_url('horizon') + WEBROOT
