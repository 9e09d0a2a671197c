"""Keystone's content for a box: service users, the catalog, two user projects.

Projects and users: `admin` (keystone-manage bootstrap), `service` with one
user per service (roles admin and service: neutron's keystonemiddleware wants
the `service` role on the tokens nova sends), and two ordinary projects,
`demo` and `alt`, each with a member user of the same name, so that tests can
check that one project cannot touch another's servers.

Endpoints: `internal` and `admin` are loopback (Box.url); `public` is
Box.public_url, which for a remote box leads through its WAN path (wan.py).
"""

from keystoneauth1.identity import v3
from keystoneauth1 import session as ks_session
from keystoneclient.v3 import client as ks_client

SERVICES = (
    # (service user and name, type, API in layout.BASE_PORTS, path after its root URL)
    ('glance', 'image', 'glance', ''),
    ('placement', 'placement', 'placement', ''),
    ('nova', 'compute', 'nova-api', '/v2.1'),
    ('neutron', 'network', 'neutron', ''),
    # Barbican: castellan (nova, glance) and python-barbicanclient add /v1 themselves.
    ('barbican', 'key-manager', 'barbican-api', ''),
)
USER_PROJECTS = ('demo', 'alt')


def admin_session(box):
    auth = v3.Password(auth_url=box.keystone_url, username='admin', password=box.secrets()['admin'],
                       project_name='admin', user_domain_id='default', project_domain_id='default')
    return ks_session.Session(auth=auth)


def _one(manager, **filters):
    found = manager.list(**filters)
    return found[0] if found else None


def _ensure_project(keystone, name, description):
    return _one(keystone.projects, name=name, domain='default') or keystone.projects.create(
        name, 'default', description=description)


def _ensure_user(keystone, name, password, project):
    user = _one(keystone.users, name=name, domain='default')
    if user is None:
        return keystone.users.create(name, domain='default', password=password, default_project=project)
    keystone.users.update(user, password=password)   # secrets.json is the source of truth
    return user


def _grant(keystone, role_name, user, project):
    role = _one(keystone.roles, name=role_name)
    keystone.roles.grant(role, user=user, project=project)


def populate(box):
    """Create (or repair) everything above; idempotent."""
    keystone = ks_client.Client(session=admin_session(box))
    secrets = box.secrets()
    service_project = _ensure_project(keystone, 'service', 'OpenStack service users')
    for service_name, service_type, api, path in SERVICES:
        user = _ensure_user(keystone, service_name, secrets[service_name], service_project)
        for role in ('admin', 'service'):
            _grant(keystone, role, user, service_project)
        service = _one(keystone.services, type=service_type) or keystone.services.create(
            service_name, service_type)
        existing = {endpoint.interface: endpoint
                    for endpoint in keystone.endpoints.list(service=service)}
        for interface in ('public', 'internal', 'admin'):
            url = (box.public_url(api) if interface == 'public' else box.url(api)) + path
            endpoint = existing.get(interface)
            if endpoint is None:
                keystone.endpoints.create(service, url, interface=interface, region=box.region)
            elif endpoint.url != url:
                keystone.endpoints.update(endpoint, url=url)
    for name in USER_PROJECTS:
        project = _ensure_project(keystone, name, 'cloudlet box user project')
        user = _ensure_user(keystone, name, secrets[name], project)
        for role in ('member', 'reader'):
            _grant(keystone, role, user, project)


def client_interface(box):
    """The endpoints the box's own tools use: internal for a remote box (not
    through its WAN path), public (the same loopback URLs) for the first.
    """
    return 'internal' if box.remote else 'public'


def clouds(box):
    """clouds.yaml entries: <box>-admin, <box>-demo, <box>-alt; for a remote
    box these use the internal endpoints, and <box>-wan-admin, -demo, -alt
    authenticate at the public Keystone and go through the WAN path.
    """
    secrets = box.secrets()
    entries = {}
    variants = [('', box.keystone_url, client_interface(box))]
    if box.remote:
        variants.append(('wan-', box.public_keystone_url, 'public'))
    for prefix, auth_url, interface in variants:
        for user in ('admin',) + USER_PROJECTS:
            entries['%s-%s%s' % (box.name, prefix, user)] = {
                'auth': {'auth_url': auth_url, 'username': user, 'password': secrets[user],
                         'project_name': user, 'user_domain_name': 'Default',
                         'project_domain_name': 'Default'},
                'region_name': box.region,
                'identity_api_version': 3,
                'interface': interface,
            }
    return entries
