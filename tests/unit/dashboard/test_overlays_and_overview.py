"""The Overlays page (by base, download) and the Cloudlet overview (discovery, hosts for admins)."""

import os
from unittest import mock

from django.urls import reverse
from openstack_dashboard.test import helpers

from cloudlet_dashboard import api
from cloudlet_glance import properties as props

OVERLAYS = reverse('horizon:project:cloudlet_overlays:index')
OVERVIEW = reverse('horizon:project:cloudlet_overview:index')
OVERLAY = {'id': 'o1', 'name': 'app', 'size': 5 * 1024 ** 2, 'status': 'active', 'owner': None,
           props.BASE_ID: 'ef' * 32, props.BASE_NAME: 'web', props.CODEC: 'zstd', 'created_at': 'x'}


class OverlaysTests(helpers.TestCase):

    @helpers.create_mocks({api: ['overlay_list']})
    def test_every_overlay_or_those_of_one_base(self):
        self.mock_overlay_list.return_value = [OVERLAY]
        response = self.client.get(OVERLAYS)
        self.assertContains(response, 'web')
        self.assertContains(response, '5.0\xa0MB')
        self.client.get(OVERLAYS + '?base=' + 'ef' * 32)
        self.assertEqual([mock.call(helpers.IsHttpRequest(), None), mock.call(helpers.IsHttpRequest(), 'ef' * 32)],
                         self.mock_overlay_list.call_args_list)

    @helpers.create_mocks({api: ['overlay_get', 'overlay_download']})
    def test_download_sends_the_file_and_leaves_no_scratch(self):
        self.mock_overlay_get.return_value = OVERLAY
        written = {}

        def download(request, image_id, out):
            out.write(b'CLOUDLET-OVERLAY')
            written['dir'] = os.path.dirname(out.name)
        self.mock_overlay_download.side_effect = download
        response = self.client.get(reverse('horizon:project:cloudlet_overlays:download', args=['o1']))
        self.assertEqual(b'CLOUDLET-OVERLAY', b''.join(response.streaming_content))
        self.assertIn('attachment; filename="app.overlay"', response['Content-Disposition'])
        response.close()
        self.assertFalse(os.path.exists(written['dir']))

    @helpers.create_mocks({api: ['overlay_get', 'overlay_download', 'overlay_list']})
    def test_a_failed_download_goes_back_to_the_list_with_the_message_and_no_scratch(self):
        self.mock_overlay_get.return_value = OVERLAY
        self.mock_overlay_list.return_value = []
        seen = {}

        def download(request, image_id, out):
            seen['dir'] = os.path.dirname(out.name)
            raise api.CloudletError('image o1 has no data')
        self.mock_overlay_download.side_effect = download
        with mock.patch('horizon.messages.error') as error:
            response = self.client.get(reverse('horizon:project:cloudlet_overlays:download', args=['o1']))
        self.assertRedirectsNoFollow(response, OVERLAYS)
        self.assertIn('image o1 has no data', str(error.call_args.args[1]))
        self.assertFalse(os.path.exists(seen['dir']))


class OverviewTests(helpers.TestCase):
    DISCOVERY = {'version': '1.3', 'min_version': '1.0', 'actions': ['cloudlet-create-overlay'],
                 'codecs': ['zstd', 'xz'], 'overlay_format_versions': [1, 2],
                 'limits': {'max_overlay_bytes': 16 * 1024 ** 3, 'overlay_url_schemes': ['http', 'https']},
                 'handoff': {'destinations': ['edge-b'], 'codecs': ['auto']},
                 'lease': {'min_seconds': 10, 'max_seconds': 86400, 'grace_seconds': 15}}

    @helpers.create_mocks({api: ['discovery', 'hosts', 'base_list']})
    def test_the_discovery_document_and_the_hosts_with_the_bases_they_hold(self):
        self.mock_discovery.return_value = self.DISCOVERY
        self.mock_base_list.return_value = [{'id': 'aaaa-1111', 'name': 'web'}]
        self.mock_hosts.return_value = [
            {'host': 'edge-1', 'state': 'up', 'status': 'enabled', 'free': {'VCPU': 6, 'MEMORY_MB': 2048},
             'cached_traits': [api.trait_of_image('aaaa-1111'), 'OTHER_IMAGE']}]
        with mock.patch('openstack_dashboard.policy.check', return_value=True):
            response = self.client.get(OVERVIEW)
        for text in ('1.3', 'zstd, xz', '16.0\xa0GB', 'edge-b', '10 to 86400 s', 'edge-1', '2048 MB'):
            self.assertContains(response, text)
        self.assertEqual(['other_image', 'web'], response.context['table'].data[0]['cached_bases'])

    @helpers.create_mocks({api: ['discovery', 'hosts', 'base_list']})
    def test_no_hosts_for_who_may_not_list_them(self):
        self.mock_discovery.return_value = self.DISCOVERY
        with mock.patch('openstack_dashboard.policy.check', return_value=False):
            response = self.client.get(OVERVIEW)
        self.assertContains(response, 'Cloudlet API')
        self.assertNotContains(response, 'Compute Hosts')
        self.mock_hosts.assert_not_called()
