"""nova's compute API router plus the cloudlet API.

api-paste.ini names this class in place of nova's:

    [app:osapi_compute_app_v21]
    paste.app_factory = api_extensions.router:APIRouter.factory

It adds, through nova's own `custom_routes`:

    GET                 /os-cloudlet                discovery document
    GET, POST           /os-cloudlet/bases          base VM package imports
    GET, DELETE         /os-cloudlet/bases/{id}
    POST                /os-cloudlet/negotiate      can this cloud run an overlay, how soon
    GET, PUT            /servers/{server_id}/cloudlet-residue
                                                    a handoff's destination: ready? the residue

and registers `CloudletServerActionsController` (captures),
`CloudletHandoffController` (handoff) and `CloudletLeaseController` (heartbeat)
on nova's existing `/servers/{id}/action` Resource, and checks a lease asked
for in `POST /servers` (api_extensions.leases), so `cloudlet-*` actions go through exactly
the machinery of stock actions (microversion headers, JSON-schema validation,
expected_errors, faults). Every reach into nova internals is checked at load
time: on an incompatible nova the API refuses to start instead of serving a
silently broken cloudlet API.
"""

from nova.api.openstack.compute import routes
from nova.api.openstack import wsgi
import nova.conf

from cloudlet_nova import conf as cloudlet_conf
from cloudlet_nova import outbound

from api_extensions import bases
from api_extensions import discovery
from api_extensions import handoff
from api_extensions import leases
from api_extensions import negotiation
from api_extensions import residue
from api_extensions import servers

CONF = nova.conf.CONF
SERVER_ACTION_PATH = '/servers/{id}/action'
# Every server action the cloudlet API adds (the aliases included).
SERVER_ACTIONS = tuple(servers.ACTIONS) + tuple(servers.ACTION_ALIASES) + (handoff.ACTION, leases.ACTION)
SERVERS_PATH = '/servers'


def register_opts(conf=CONF):
    """The [cloudlet] options on nova's CONF; registering them again is a no-op."""
    cloudlet_conf.register_opts(conf)


def cloudlet_routes(importer=None):
    """The route entries (nova's ROUTE_LIST shape) of the cloudlet API.

    The factories return one shared Resource per controller, so all the
    bases routes share one importer (one thread pool) per router.
    """
    discovery_resource = wsgi.Resource(discovery.CloudletDiscoveryController())
    bases_resource = wsgi.Resource(bases.CloudletBasesController(importer))
    negotiation_resource = wsgi.Resource(negotiation.CloudletNegotiationController())
    # A plain WSGI application, not a wsgi.Resource: its PUT body is a byte stream.
    residue_app = residue.CloudletResidueApp()
    return (
        ('/os-cloudlet', {
            'GET': [lambda: discovery_resource, 'index'],
        }),
        ('/os-cloudlet/bases', {
            'GET': [lambda: bases_resource, 'index'],
            'POST': [lambda: bases_resource, 'create'],
        }),
        ('/os-cloudlet/bases/{id}', {
            'GET': [lambda: bases_resource, 'show'],
            'DELETE': [lambda: bases_resource, 'delete'],
        }),
        ('/os-cloudlet/negotiate', {
            'POST': [lambda: negotiation_resource, 'create'],
        }),
        (residue.PATH, {
            'GET': [lambda: residue_app, 'status'],
            'PUT': [lambda: residue_app, 'receive'],
        }),
    )


def post_resources(mapper, path, action):
    """The distinct wsgi.Resource objects serving POST `path` with controller method `action`.

    ProjectMapper connects each route twice (with and without /{project_id})
    with the same Resource; a Resource is returned once.
    """
    found = []
    for route in mapper.matchlist:
        if not (route.routepath.endswith(path) and
                route.defaults.get('action') == action and
                'POST' in ((route.conditions or {}).get('method') or ())):
            continue
        controller = route.defaults.get('controller')
        if isinstance(controller, wsgi.Resource) and not any(controller is r for r in found):
            found.append(controller)
    return found


def server_action_resources(mapper):
    """The distinct wsgi.Resource objects serving POST /servers/{id}/action."""
    return post_resources(mapper, SERVER_ACTION_PATH, 'action')


class APIRouter(routes.APIRouterV21):
    """nova's APIRouterV21 with the cloudlet routes and server actions."""

    def __init__(self, custom_routes=None):
        register_opts()
        outbound.policy(CONF)       # a bad [cloudlet] outbound_allowed_networks stops nova-api here
        self.importer = bases.BaseImporter()
        super().__init__(custom_routes=cloudlet_routes(self.importer) + tuple(custom_routes or ()))
        resources = server_action_resources(self.map)
        if not resources:
            raise RuntimeError(
                'openstack-cloudlet: nova\'s POST %s route (a wsgi.Resource) was not found in '
                'the compute API router; this nova release is not compatible with '
                'api_extensions.router' % SERVER_ACTION_PATH)
        for resource in resources:
            clashes = set(resource.wsgi_actions) & set(SERVER_ACTIONS)
            if clashes:
                raise RuntimeError('openstack-cloudlet: nova already serves server action(s) %s'
                                   % ', '.join(sorted(clashes)))
            resource.register_subcontroller_actions(servers.CloudletServerActionsController())
            resource.register_subcontroller_actions(handoff.CloudletHandoffController())
            resource.register_subcontroller_actions(leases.CloudletLeaseController())
        creates = [r for r in post_resources(self.map, SERVERS_PATH, 'create')
                   if r.controller is not None and callable(getattr(r.controller, 'create', None))]
        if not creates:
            raise RuntimeError('openstack-cloudlet: nova\'s POST %s route was not found in the compute '
                               'API router; this nova release is not compatible with '
                               'api_extensions.router' % SERVERS_PATH)
        for resource in creates:
            # An instance attribute: wsgi.Resource looks the method up on the controller.
            resource.controller.create = leases.lease_on_create(resource.controller.create)

    @classmethod
    def factory(cls, global_config, **local_config):
        return cls()
