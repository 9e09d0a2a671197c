"""The Synthesize form: the CLI's choices of base and flavor, its refusals, and the request to nova."""

from unittest import mock

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from openstack_dashboard.test import helpers

from cloudlet_dashboard import api
from cloudlet_glance import properties as props
from cloudlet_osc import overlay_source

URL = reverse('horizon:project:cloudlet_synthesize:index')
BASE_ID = 'cd' * 32
BASE = {'id': 'b0000000-0000-0000-0000-000000000001', 'name': 'web', props.BASE_ID: BASE_ID,
        props.MEMORY_MB: 256, props.VCPUS: 1}
OVERLAY = {'id': 'o0000000-0000-0000-0000-000000000001', 'name': 'app', props.BASE_NAME: 'web'}
FLAVOR = {'id': 'f1', 'name': 'm1.tiny', 'ram': 256, 'vcpus': 1, 'disk': 1}
MOCKED = ['overlay_list', 'base_list', 'flavor_list', 'network_list', 'discovery', 'synthesis_base',
          'base_get', 'flavor_for', 'server_create', 'overlay_upload', 'image_delete_quietly']


class SynthesizeTests(helpers.TestCase):

    def _lists(self, lease=None):
        self.mock_overlay_list.return_value = [OVERLAY]
        self.mock_base_list.return_value = [BASE]
        self.mock_flavor_list.return_value = [FLAVOR]
        self.mock_network_list.return_value = self.networks.list()[:1]
        self.mock_discovery.return_value = {'lease': lease} if lease else {}
        self.mock_flavor_for.return_value = FLAVOR
        self.mock_server_create.return_value = 'new-server-id'

    def _post(self, **fields):
        data = {'name': 'srv', 'source': 'image', 'overlay': OVERLAY['id'], 'network': 'auto'}
        data.update(fields)
        return self.client.post(URL, data)

    @helpers.create_mocks({api: MOCKED})
    def test_from_an_overlay_image_its_base_the_chosen_flavor_and_the_instance_page_next(self):
        self._lists()
        self.mock_synthesis_base.return_value = (BASE, overlay_source.Overlay('image', OVERLAY['id'], BASE_ID))
        response = self._post()
        self.assertNoFormErrors(response)
        self.assertRedirectsNoFollow(response, reverse('horizon:project:instances:detail',
                                                       args=['new-server-id']))
        self.mock_synthesis_base.assert_called_once_with(helpers.IsHttpRequest(), OVERLAY['id'], None)
        self.mock_flavor_for.assert_called_once_with(helpers.IsHttpRequest(), BASE, None)
        self.mock_server_create.assert_called_once_with(
            helpers.IsHttpRequest(), 'srv', BASE['id'], 'f1', 'auto', {props.META_OVERLAY_ID: OVERLAY['id']})

    @helpers.create_mocks({api: MOCKED})
    def test_a_url_needs_its_base_and_is_not_fetched_here(self):
        self._lists()
        response = self._post(source='url', overlay_url='https://apps.example/app.clo')
        self.assertFormErrors(response, 1)
        self.assertContains(response, 'the dashboard does not read URLs')
        self.mock_synthesis_base.assert_not_called()
        self.mock_server_create.assert_not_called()

    @helpers.create_mocks({api: MOCKED})
    def test_a_url_with_its_base_a_network_and_a_lease(self):
        self._lists(lease={'min_seconds': 10, 'max_seconds': 3600, 'grace_seconds': 15})
        self.mock_synthesis_base.return_value = (BASE, overlay_source.Overlay('url', 'x'))
        network = self.networks.first()
        response = self._post(source='url', overlay_url='https://apps.example/app.clo', base=BASE['id'],
                              network=network.id, lease_seconds='600')
        self.assertNoFormErrors(response)
        self.mock_server_create.assert_called_once_with(
            helpers.IsHttpRequest(), 'srv', BASE['id'], 'f1', [{'uuid': network.id}],
            {props.META_OVERLAY_URL: 'https://apps.example/app.clo', props.META_LEASE_SECONDS: '600'})

    @helpers.create_mocks({api: MOCKED})
    def test_a_lease_outside_the_clouds_bounds_is_refused(self):
        self._lists(lease={'min_seconds': 10, 'max_seconds': 3600, 'grace_seconds': 15})
        response = self._post(lease_seconds='99999')
        self.assertFormErrors(response, 1)
        self.mock_server_create.assert_not_called()

    @helpers.create_mocks({api: MOCKED})
    def test_no_lease_field_on_a_cloud_without_leases(self):
        self._lists()
        self.assertNotIn('lease_seconds', self.client.get(URL).context['form'].fields)

    @helpers.create_mocks({api: MOCKED})
    def test_a_flavor_that_cannot_restore_the_base_is_refused_with_the_reason(self):
        self._lists()
        self.mock_synthesis_base.return_value = (BASE, None)
        self.mock_flavor_for.side_effect = api.CloudletError(
            'flavor m1.small has 384 MB / 1 vCPUs; base web needs 256 MB / 1 vCPUs')
        response = self._post(flavor='f1')
        self.assertFormErrors(response, 1)
        self.assertContains(response, 'base web needs 256 MB')
        self.mock_server_create.assert_not_called()

    @helpers.create_mocks({api: MOCKED})
    def test_resume_a_base_alone(self):
        self._lists()
        self.mock_base_get.return_value = BASE
        response = self._post(source='base', base=BASE['id'], overlay='')
        self.assertNoFormErrors(response)
        self.mock_server_create.assert_called_once_with(helpers.IsHttpRequest(), 'srv', BASE['id'], 'f1',
                                                        'auto', {})

    @helpers.create_mocks({api: MOCKED})
    def test_an_uploaded_overlay_goes_to_glance_first_and_is_deleted_when_nova_refuses(self):
        self._lists()
        self.mock_synthesis_base.return_value = (BASE, overlay_source.Overlay('file', 'x', BASE_ID))
        self.mock_overlay_upload.return_value = 'uploaded-image'
        self.mock_server_create.side_effect = api.CloudletError('Quota exceeded for instances')
        response = self.client.post(URL, {'name': 'srv', 'source': 'file', 'network': 'auto',
                                          'overlay_file': SimpleUploadedFile('app.clo', b'overlay')},
                                    follow=True)
        self.mock_overlay_upload.assert_called_once_with(helpers.IsHttpRequest(), mock.ANY, 'app.clo', BASE_ID)
        self.mock_image_delete_quietly.assert_called_once_with(helpers.IsHttpRequest(), ['uploaded-image'])
        self.assertContains(response, 'Quota exceeded for instances')

    @helpers.create_mocks({api: MOCKED})
    def test_the_links_of_the_tables_fill_the_form(self):
        self._lists()
        response = self.client.get(URL + '?source=base&base=%s' % BASE['id'])
        self.assertEqual({'source': 'base', 'base': BASE['id']}, response.context['form'].initial)
