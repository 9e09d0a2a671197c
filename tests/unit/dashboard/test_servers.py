"""The cloudlet actions on the Instances table, their forms, and the handoff workflow."""

import pathlib
import shutil
import tempfile
from unittest import mock

from django.test import utils as django_test_utils
from django.urls import reverse
import openstack_auth.policy
from openstack_auth import utils as auth_utils
import openstack_dashboard
from openstack_dashboard.dashboards.project.instances import tables as instances_tables
from openstack_dashboard.test import helpers

from cloudlet_dashboard import api
from cloudlet_dashboard.content.servers import actions
from cloudlet_dashboard import install

OURS = {'cloudlet_create_overlay', 'cloudlet_create_base', 'cloudlet_handoff'}
INSTANCES = reverse('horizon:project:instances:index')


def _allowed(test, server):
    """Our actions that Horizon's checks (policy, then allowed()) let this user see."""
    return {cls.name for cls in actions.ACTIONS if cls()._allowed(test.request, server)}


class InstancesActionsTests(helpers.TestCase):

    def test_they_follow_create_snapshot_once_however_often_they_are_added(self):
        actions.add_to_instances_table()
        names = [a.name for a in instances_tables.InstancesTable._meta.row_actions]
        where = names.index('snapshot')
        self.assertEqual(['cloudlet_create_overlay', 'cloudlet_create_base', 'cloudlet_handoff'],
                         names[where + 1:where + 4])
        self.assertEqual(1, names.count('cloudlet_handoff'))

    @mock.patch.object(api, 'is_cloudlet_server', return_value=True)
    def test_a_running_cloudlet_server_has_them(self, _is_cloudlet):
        server = self.servers.first()
        server.status = 'ACTIVE'
        self.assertLessEqual(OURS, _allowed(self, server))

    @mock.patch.object(api, 'is_cloudlet_server', return_value=False)
    def test_a_server_that_is_not_a_cloudlet_server_has_none(self, _is_cloudlet):
        server = self.servers.first()
        server.status = 'ACTIVE'
        self.assertFalse(OURS & _allowed(self, server))

    @mock.patch.object(api, 'is_cloudlet_server', return_value=True)
    def test_none_while_a_task_runs_or_the_server_is_not_active(self, _is_cloudlet):
        server = self.servers.first()
        server.status = 'ACTIVE'
        setattr(server, 'OS-EXT-STS:task_state', 'image_uploading')
        self.assertFalse(OURS & _allowed(self, server))
        setattr(server, 'OS-EXT-STS:task_state', None)
        server.status = 'SHUTOFF'
        self.assertFalse(OURS & _allowed(self, server))


class PolicyTests(helpers.TestCase):
    """Horizon's real policy check, with the policy file cloudlet-dashboard-install writes."""

    def setUp(self):
        super().setUp()
        root = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root)
        # Horizon's policy files, without ours should this Horizon have it installed already.
        shutil.copytree(pathlib.Path(openstack_dashboard.__file__).parent / 'conf', root / 'conf',
                        ignore=shutil.ignore_patterns(install.POLICY_FILE))
        install.install(root)
        patcher = mock.patch.object(openstack_auth.policy, '_BASE_PATH', str(root / 'conf'))
        patcher.start()
        self.addCleanup(patcher.stop)
        openstack_auth.policy.reset()
        self.addCleanup(openstack_auth.policy.reset)
        settings = django_test_utils.override_settings(POLICY_CHECK_FUNCTION='openstack_auth.policy.check')
        settings.enable()
        self.addCleanup(settings.disable)

    def _as(self, *roles):
        self.setActiveUser(id=self.user.id, token=self.token, username=self.user.name,
                           tenant_id=self.tenant.id, service_catalog=self.service_catalog,
                           authorized_tenants=self.tenants.list(),
                           roles=[{'id': str(n), 'name': role} for n, role in enumerate(roles)])
        self.request.user = auth_utils.get_user(self.request)

    @mock.patch.object(api, 'is_cloudlet_server', return_value=True)
    def test_a_member_sees_them_a_reader_does_not(self, _is_cloudlet):
        server = self.servers.first()
        server.status = 'ACTIVE'
        server.tenant_id = self.tenant.id
        self._as('member', 'reader')
        self.assertLessEqual(OURS, _allowed(self, server))
        self._as('reader')
        self.assertFalse(OURS & _allowed(self, server))
        # A member of another project: the server's project is not theirs.
        server.tenant_id = 'another-project'
        self._as('member', 'reader')
        self.assertFalse(OURS & _allowed(self, server))


class CaptureFormTests(helpers.TestCase):

    @helpers.create_mocks({api: ['create_overlay', 'discovery']})
    def test_create_overlay_with_a_codec_the_cloud_offers(self):
        self.mock_discovery.return_value = {'codecs': ['zstd', 'xz']}
        self.mock_create_overlay.return_value = 'image-id'
        url = reverse('horizon:project:cloudlet_servers:create_overlay', args=['srv-1'])
        response = self.client.post(url, {'instance_id': 'srv-1', 'name': 'app', 'codec': 'xz'})
        self.assertNoFormErrors(response)
        self.assertRedirectsNoFollow(response, INSTANCES)
        self.mock_create_overlay.assert_called_once_with(helpers.IsHttpRequest(), 'srv-1', 'app', codec='xz')
        response = self.client.post(url, {'instance_id': 'srv-1', 'name': 'app', 'codec': 'lz4'})
        self.assertFormErrors(response, 1)

    @helpers.create_mocks({api: ['create_base']})
    def test_create_base_shows_novas_refusal(self):
        self.mock_create_base.side_effect = api.CloudletError(
            'Cannot cloudlet-create-base server srv-1 while it is in task_state image_snapshot')
        url = reverse('horizon:project:cloudlet_servers:create_base', args=['srv-1'])
        response = self.client.post(url, {'instance_id': 'srv-1', 'name': 'web'})
        self.assertRedirectsNoFollow(response, INSTANCES)
        self.mock_create_base.assert_called_once_with(helpers.IsHttpRequest(), 'srv-1', 'web')


class HandoffWorkflowTests(helpers.TestCase):
    URL = reverse('horizon:project:cloudlet_servers:handoff', args=['srv-1'])

    def _discovery(self, destinations=()):
        self.mock_discovery.return_value = {'handoff': {'destinations': list(destinations),
                                                        'codecs': ['auto', 'zstd', 'xz']}}
        self.mock_server_get.return_value = {'name': 'app-server'}

    @helpers.create_mocks({api: ['discovery', 'server_get', 'handoff']})
    def test_the_request_carries_the_destination_and_the_application_credential(self):
        self._discovery()
        self.mock_handoff.return_value = 'handoff-id'
        response = self.client.post(self.URL, {
            'instance_id': 'srv-1', 'kind': 'auth_url', 'auth_url': 'https://edge-b.example:5000/v3',
            'region_name': 'RegionB', 'server_name': 'moved', 'codec': 'zstd',
            'credential_id': 'ac-id', 'credential_secret': 's3cret'})
        self.assertNoFormErrors(response)
        self.assertRedirectsNoFollow(response, INSTANCES)
        self.mock_handoff.assert_called_once_with(
            helpers.IsHttpRequest(), 'srv-1', {'auth_url': 'https://edge-b.example:5000/v3',
                                               'region_name': 'RegionB'},
            {'application_credential': {'id': 'ac-id', 'secret': 's3cret'}}, name='moved', codec='zstd')

    @helpers.create_mocks({api: ['discovery', 'server_get', 'handoff']})
    def test_a_configured_destination_by_its_name(self):
        self._discovery(['edge-b'])
        response = self.client.get(self.URL)
        self.assertEqual('app-server', response.context['workflow'].context['server_name'])
        self.client.post(self.URL, {'instance_id': 'srv-1', 'kind': 'cloud', 'cloud': 'edge-b',
                                    'server_name': 'moved', 'credential_id': 'ac-id',
                                    'credential_secret': 's3cret'})
        self.mock_handoff.assert_called_once_with(
            helpers.IsHttpRequest(), 'srv-1', {'cloud': 'edge-b'}, mock.ANY, name='moved', codec=None)

    @helpers.create_mocks({api: ['discovery', 'server_get', 'handoff']})
    def test_refusals_in_the_form_and_from_nova(self):
        self._discovery()
        base = {'instance_id': 'srv-1', 'kind': 'auth_url', 'server_name': 'moved',
                'credential_id': 'ac-id', 'credential_secret': 's3cret'}
        for auth_url in ('', 'ftp://edge-b.example/v3'):
            response = self.client.post(self.URL, dict(base, auth_url=auth_url))
            self.assertEqual(200, response.status_code)      # the workflow again, with the error
            self.assertTrue(response.context['workflow'].steps[0].action.errors)
            self.assertNotContains(response, 's3cret')       # the secret is not sent back
        self.mock_handoff.assert_not_called()
        self.mock_handoff.side_effect = api.CloudletError('server srv-1 is not a cloudlet server')
        with mock.patch('horizon.messages.error') as error:
            response = self.client.post(self.URL, dict(base, auth_url='https://edge-b.example/v3'))
        self.assertIn('is not a cloudlet server', ' '.join(str(c.args[1]) for c in error.call_args_list))
