"""POST, GET and DELETE /os-cloudlet/bases (api-ref: cloudlet-bases): the refusals
that come before any download, and a project's list.
"""

import uuid

from tempest.lib import decorators
from tempest.lib import exceptions as lib_exc

from cloudlet_tempest_plugin.tests import base


class BaseImportsTest(base.CloudletTest):

    @decorators.idempotent_id('7e2b4c1a-9d8f-4e3b-8a6c-1d2e3f4a5b06')
    def test_list_is_the_project_s(self):
        imports = self.cloudlet.list_base_imports()['bases']
        project_id = self.os_primary.credentials.project_id
        self.assertTrue(all(record['project_id'] == project_id for record in imports), imports)

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('3c5d7e9f-1a2b-4c3d-9e8f-7a6b5c4d3e07')
    def test_urls_that_are_refused(self):
        for url in ('ftp://packages.invalid/base.zip',        # not http(s)
                    'http://169.254.169.254/base.zip',         # link-local: the outbound policy
                    'not a url'):
            self.assertRaises(lib_exc.BadRequest, self.cloudlet.import_base, url=url, name='refused')
        # Nothing was recorded for them.
        names = [record['name'] for record in self.cloudlet.list_base_imports()['bases']]
        self.assertNotIn('refused', names)

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c08')
    def test_an_unknown_import_is_404(self):
        unknown = str(uuid.uuid4())
        self.assertRaises(lib_exc.NotFound, self.cloudlet.show_base_import, unknown)
        self.assertRaises(lib_exc.NotFound, self.cloudlet.delete_base_import, unknown)

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('4b3a2c1d-0e9f-4a8b-9c7d-6e5f4a3b2c09')
    def test_a_public_import_needs_the_admin(self):
        self.assertRaises(lib_exc.Forbidden, self.cloudlet.import_base,
                          url='https://packages.invalid/base.zip', visibility='public')
