"""The Base VMs page: its two tables, the import form (URL and file), export, delete."""

import os
from unittest import mock

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from openstack_dashboard.test import helpers

from cloudlet_dashboard import api
from cloudlet_glance import properties as props

INDEX = reverse('horizon:project:cloudlet_bases:index')
IMPORT = reverse('horizon:project:cloudlet_bases:import')
BASE_ID = 'ab' * 32


def base(name='web', owner=None, **extra):
    image = {'id': '11111111-2222-3333-4444-555555555555', 'name': name, 'size': 2 * 1024 ** 3,
             'visibility': 'private', 'status': 'active', 'owner': owner,
             props.BASE_ID: BASE_ID, props.MEMORY_MB: 256, props.VCPUS: 1}
    image.update(extra)
    return image


def record(status='downloading', **extra):
    entry = {'id': 'rec-1', 'name': 'web', 'url': 'http://pkg.example/web.zip', 'status': status,
             'progress': {'stage': 'downloading', 'bytes_done': 512, 'bytes_total': 1024},
             'error': None, 'image_id': None, 'created_at': '2026-12-03T10:00:00Z'}
    entry.update(extra)
    return entry


class BasesIndexTests(helpers.TestCase):

    @helpers.create_mocks({api: ['base_list', 'base_import_list']})
    def test_lists_bases_and_imports_with_progress(self):
        self.mock_base_list.return_value = [base(owner=self.tenant.id)]
        self.mock_base_import_list.return_value = [record()]
        response = self.client.get(INDEX)
        self.assertTemplateUsed(response, 'cloudlet/tables.html')
        bases = response.context['bases_table'].data
        self.assertEqual(['web'], [b['name'] for b in bases])
        content = response.content.decode()
        self.assertIn('2.0\xa0GB', content)
        self.assertIn('256 MB', content)
        self.assertIn('downloading 50%', content)
        # A running import's row refreshes itself (ajax-update).
        self.assertIn('ajax-update', content)

    @helpers.create_mocks({api: ['base_list', 'base_import_list']})
    def test_an_ended_import_shows_its_stage_not_the_bytes_of_its_last_step(self):
        self.mock_base_list.return_value = []
        self.mock_base_import_list.return_value = [record(status='active', progress={
            'stage': 'done', 'bytes_done': 994, 'bytes_total': 1024})]
        content = self.client.get(INDEX).content.decode()
        self.assertNotIn('97%', content)
        self.assertIn('>done<', content.replace('\n', '').replace(' ', ''))

    @helpers.create_mocks({api: ['base_list', 'base_import_list']})
    def test_a_refused_list_shows_the_services_message_and_the_page_stays(self):
        self.mock_base_list.side_effect = api.CloudletError('Glance is down for maintenance')
        self.mock_base_import_list.return_value = []
        response = self.client.get(INDEX)
        self.assertEqual(200, response.status_code)
        self.assertMessageCount(response, error=1)
        self.assertIn('Glance is down for maintenance', str(list(response.context['messages'])[0]))

    @helpers.create_mocks({api: ['base_list', 'base_import_list']})
    def test_only_the_owner_may_delete_a_base(self):
        self.mock_base_list.return_value = [base(owner=self.tenant.id),
                                            base(name='shared', owner='another-project',
                                                 id='99999999-2222-3333-4444-555555555555')]
        self.mock_base_import_list.return_value = []
        table = self.client.get(INDEX).context['bases_table']
        actions = {datum['name']: [a.name for a in table.get_row_actions(datum)] for datum in table.data}
        self.assertIn('delete', actions['web'])
        self.assertNotIn('delete', actions['shared'])
        self.assertIn('resume', actions['shared'])

    @helpers.create_mocks({api: ['base_delete', 'base_list', 'base_import_list']})
    def test_delete_deletes_through_the_glance_model(self):
        self.mock_base_list.return_value = [base(owner=self.tenant.id)]
        self.mock_base_import_list.return_value = []
        image_id = base()['id']
        self.client.post(INDEX, {'action': 'bases__delete__%s' % image_id})
        self.mock_base_delete.assert_called_once_with(helpers.IsHttpRequest(), image_id)


class ImportFormTests(helpers.TestCase):

    @helpers.create_mocks({api: ['base_import_from_url']})
    def test_a_url_goes_to_nova_api(self):
        self.mock_base_import_from_url.return_value = record()
        response = self.client.post(IMPORT, {'source': 'url', 'url': 'https://pkg.example/web.zip',
                                             'name': 'web', 'visibility': 'private'})
        self.assertNoFormErrors(response)
        self.assertRedirectsNoFollow(response, INDEX)
        self.mock_base_import_from_url.assert_called_once_with(
            helpers.IsHttpRequest(), 'https://pkg.example/web.zip', 'web', 'private')

    @helpers.create_mocks({api: ['base_import_from_url']})
    def test_only_http_urls_and_a_url_when_the_source_is_a_url(self):
        for url, error in (('ftp://pkg.example/web.zip', 'Enter a valid URL'),
                           ('', 'Give the package')):
            response = self.client.post(IMPORT, {'source': 'url', 'url': url, 'visibility': 'private'})
            self.assertContains(response, error)
        self.mock_base_import_from_url.assert_not_called()

    @helpers.create_mocks({api: ['base_import_from_url', 'base_list', 'base_import_list']})
    def test_the_apis_refusal_is_shown_with_its_message(self):
        self.mock_base_import_from_url.side_effect = api.CloudletError(
            'the URL http://10.0.0.1/x.zip is not allowed: private address')
        self.mock_base_list.return_value = []
        self.mock_base_import_list.return_value = []
        response = self.client.post(IMPORT, {'source': 'url', 'url': 'http://10.0.0.1/x.zip',
                                             'visibility': 'private'}, follow=True)
        self.assertEqual([(INDEX, 302)], response.redirect_chain)
        self.assertContains(response, 'not allowed: private address')

    @helpers.create_mocks({api: ['base_import_from_file']})
    def test_an_uploaded_file_is_imported_from_a_path_that_is_gone_afterwards(self):
        seen = {}

        def import_file(request, path, name, visibility):
            with open(path, 'rb') as package:
                seen['content'], seen['path'] = package.read(), path
        self.mock_base_import_from_file.side_effect = import_file
        upload = SimpleUploadedFile('web.zip', b'PK-package-bytes')
        response = self.client.post(IMPORT, {'source': 'file', 'package': upload, 'visibility': 'private'})
        self.assertNoFormErrors(response)
        self.assertEqual(b'PK-package-bytes', seen['content'])
        self.assertFalse(os.path.exists(seen['path']))

    def test_public_visibility_is_offered_only_to_who_may_import_public_bases(self):
        with mock.patch('openstack_dashboard.policy.check', side_effect=lambda rules, request: (
                rules[0][1] != 'cloudlet:base:import:public')):
            response = self.client.get(IMPORT)
        self.assertEqual([('private', 'Private')],
                         [(k, str(v)) for k, v in response.context['form'].fields['visibility'].choices])
