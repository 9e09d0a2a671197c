"""api_extensions.router: loud failure on an incompatible nova; one registration per Resource."""

from unittest import mock

import webob

from nova.api.openstack.compute import routes
from nova.api.openstack import wsgi
from nova import context as nova_context
from nova import test

from api_extensions import router


class RouterTest(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        router.register_opts()
        self.flags(api_state_dir=self.useFixture(test.fixtures.TempDir()).path, group='cloudlet')

    def test_actions_registered_once_per_resource(self):
        app = router.APIRouter()
        resources = router.server_action_resources(app.map)
        self.assertEqual(1, len(resources))   # one Resource, two routes (with /{project_id})
        paths = [r.routepath for r in app.map.matchlist
                 if r.defaults.get('controller') is resources[0]
                 and r.defaults.get('action') == 'action']
        self.assertEqual(2, len(paths))
        for name in ('cloudlet-create-base', 'cloudlet-base', 'cloudlet-create-overlay',
                     'cloudlet-handoff', 'createImage', 'suspend'):
            self.assertIn(name, resources[0].wsgi_actions)
        self.assertEqual(1, sum(isinstance(c, router.servers.CloudletServerActionsController)
                                for c in resources[0].sub_controllers))
        self.assertEqual(1, sum(isinstance(c, router.handoff.CloudletHandoffController)
                                for c in resources[0].sub_controllers))

    def test_cloudlet_routes(self):
        app = router.APIRouter()
        paths = {(r.routepath, tuple((r.conditions or {}).get('method') or ()))
                 for r in app.map.matchlist}
        for path, method in (('/os-cloudlet', 'GET'), ('/os-cloudlet/bases', 'GET'),
                             ('/os-cloudlet/bases', 'POST'), ('/os-cloudlet/bases/{id}', 'GET'),
                             ('/os-cloudlet/bases/{id}', 'DELETE'),
                             ('/os-cloudlet/negotiate', 'POST'),
                             ('/servers/{server_id}/cloudlet-residue', 'GET'),
                             ('/servers/{server_id}/cloudlet-residue', 'PUT')):
            self.assertIn((path, (method,)), paths)

    def test_residue_routes_reach_the_residue_app(self):
        app = router.APIRouter()
        for prefix in ('', '/%s' % ('a' * 32)):
            for method in ('GET', 'PUT'):
                match = app.map.match(prefix + '/servers/s-1/cloudlet-residue',
                                      environ={'REQUEST_METHOD': method})
                self.assertIsInstance(match['controller'], router.residue.CloudletResidueApp)
                self.assertEqual('s-1', match['server_id'])
        # A plain WSGI application behind nova's router: it answers the request itself.
        req = webob.Request.blank('/servers/s-1/cloudlet-residue')
        req.environ['nova.context'] = nova_context.RequestContext('user', 'p' * 32)
        response = req.get_response(app)
        self.assertEqual(400, response.status_int)
        self.assertEqual('the X-Cloudlet-Handoff-Id header is required',
                         response.json_body['badRequest']['message'])

    def test_incompatible_nova_fails_loudly(self):
        without_action = tuple(entry for entry in routes.ROUTE_LIST
                               if entry[0] != '/servers/{id}/action')
        with mock.patch.object(routes, 'ROUTE_LIST', without_action):
            error = self.assertRaises(RuntimeError, router.APIRouter)
        self.assertIn('/servers/{id}/action', str(error))
        self.assertIn('not compatible', str(error))

    def test_action_name_clash_fails_loudly(self):
        self._assert_clash_refused('cloudlet-create-overlay')

    def test_handoff_action_name_clash_fails_loudly(self):
        self._assert_clash_refused('cloudlet-handoff')

    def _assert_clash_refused(self, action_name):
        class Clash(wsgi.Controller):
            @wsgi.action(action_name)
            def _x(self, req, id, body):
                pass

        real = routes.server_controller

        def server_controller():
            resource = real()
            resource.register_subcontroller_actions(Clash())
            return resource

        patched = tuple((path, {m: ([server_controller, a[1]] if a[0] is real else a)
                                for m, a in methods.items()}) if isinstance(methods, dict)
                        else (path, methods)
                        for path, methods in routes.ROUTE_LIST)
        with mock.patch.object(routes, 'ROUTE_LIST', patched):
            error = self.assertRaises(RuntimeError, router.APIRouter)
        self.assertIn('already serves', str(error))
