"""The whole nova stack in one process, with nova-api loaded from OUR api-paste.ini.

nova's `_IntegratedTestBase` starts conductor, scheduler and a compute with
nova's stock fake driver (`fake.SmallFakeDriver`: its snapshot() succeeds
without data), plus nova's placement, neutron, cinder and Glance fixtures.
The API fixture builds the WSGI app through `nova.api.wsgi.Loader` from
`[wsgi] api_paste_config`, pointed here at etc/nova/api-paste.ini, so every
request goes through the real pipeline and `api_extensions.router.APIRouter`.
"""

import copy
import os
import warnings

import fixtures
from sqlalchemy import exc as sqla_exc

from nova import context as nova_context
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.api import client as api_client
from nova.tests.functional import integrated_helpers

from cloudlet_glance import properties
from tests.fixtures import http_server

from api_extensions import bases
from api_extensions import policy as cloudlet_policy
from api_extensions import router

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
API_PASTE_INI = os.path.join(REPO, 'etc', 'nova', 'api-paste.ini')

OTHER_PROJECT_ID = 'b0b0b0b0b0b04b0b8b0bb0b0b0b0b0b0'

BASE_DISK_IMAGE = {
    'id': 'c1a0d1e7-0000-4000-8000-000000000001',
    'name': 'cloudlet-base-disk',
    'status': 'active',
    'visibility': 'public',
    'is_public': True,
    'container_format': 'bare',
    'disk_format': 'raw',
    'size': 1024 * 1024,
    'min_ram': 0,
    'min_disk': 0,
    'protected': False,
    'tags': [],
    'properties': {
        properties.CLOUDLET_TYPE: properties.BASE_DISK,
        properties.BASE_ID: 'ab' * 32,
        properties.BASE_NAME: 'test-base',
        'cloudlet_base_memory': 'c1a0d1e7-0000-4000-8000-000000000002',
        'cloudlet_base_disk_hash': 'c1a0d1e7-0000-4000-8000-000000000003',
        'cloudlet_base_memory_hash': 'c1a0d1e7-0000-4000-8000-000000000004',
        'architecture': 'x86_64',
    },
}


class CloudletGlanceFixture(nova_fixtures.GlanceFixture):
    """nova's GlanceFixture, plus what a Glance upload does: keep the data, set the size.

    nova's fixture ignores `data` in update() and reports a made-up size, so
    the Glance model's post-upload checks (size, status) could never pass.
    """

    def update(self, context, image_id, metadata, data=None, purge_props=False):
        image = super().update(context, image_id, metadata, data=None, purge_props=purge_props)
        if data is not None:
            content = data.read() if hasattr(data, 'read') else b''.join(data)
            self._imagedata[image_id] = content
            image['size'] = len(content)
            image['status'] = 'active'
        return image

    def delete(self, context, image_id):
        super().delete(context, image_id)
        self._imagedata.pop(image_id, None)


class CloudletPolicyFixture(fixtures.Fixture):
    """A fresh cloudlet enforcer per test: CONF overrides differ from test to test."""

    def setUp(self):
        super().setUp()
        cloudlet_policy.reset()
        self.addCleanup(cloudlet_policy.reset)

    def set_rules(self, rules):
        cloudlet_policy.set_rules(rules)


class CloudletAPITestBase(integrated_helpers._IntegratedTestBase):
    """nova's integrated base with our paste file, a state dir and a cloudlet base image."""

    # Locking is what new nova tests are asked not to need.
    REQUIRES_LOCKING = False
    # 'networks': 'none' needs 2.37; the cloudlet actions answer every microversion.
    microversion = 'latest'

    def setUp(self):
        self.state_dir = self.useFixture(fixtures.TempDir()).path
        super().setUp()

    def _setup_services(self):
        # nova's WarningsFixture turns SQLAlchemy deprecations raised from nova
        # into errors. SQLAlchemy 2.1 (this venv has 2.1.9; nova 34 is tested
        # with 2.0) deprecates orm.noload, which nova's instance queries use, so
        # stop/snapshot would fail in the test harness only. Narrowly ignored;
        # the filters are restored by nova's fixture at cleanup.
        warnings.filterwarnings('ignore', message=r'The noload\(\) option is deprecated',
                                category=sqla_exc.SADeprecationWarning)
        # Before the API fixture loads the paste app: its default path is under
        # site-packages, where an installed nova has no api-paste.ini.
        router.register_opts()
        self.flags(api_paste_config=API_PASTE_INI, group='wsgi')
        self.flags(api_state_dir=self.state_dir, fetch_timeout=5, group='cloudlet')
        self.cloudlet_policy = self.useFixture(CloudletPolicyFixture())
        # Replace nova's GlanceFixture (started by _IntegratedTestBase.setUp) by ours.
        self.glance = self.useFixture(CloudletGlanceFixture(self))
        self.glance.create(None, copy.deepcopy(BASE_DISK_IMAGE))
        super()._setup_services()
        self.addCleanup(self._wait_for_imports)

    def _wait_for_imports(self):
        # Imports run in the router's thread pool: let them end before teardown.
        for importer in list(bases._IMPORTERS):
            importer.wait(timeout=30)
            importer.shutdown(wait=True)

    # --- helpers -----------------------------------------------------------

    def other_project_api(self, roles=('reader', 'member')):
        """A client of another project (nova's fixture only offers the same project)."""
        client = api_client.TestOpenStackClient(
            'other-user', self.api_fixture.base_url, project_id=OTHER_PROJECT_ID,
            roles=list(roles))
        client.microversion = self.api.microversion
        return client

    def create_cloudlet_server(self, **kwargs):
        """A server booted from a cloudlet base disk image (as synthesis does)."""
        return self._create_server(image_uuid=BASE_DISK_IMAGE['id'], networks='none', **kwargs)

    def create_plain_server(self, **kwargs):
        return self._create_server(image_uuid=self.glance.image1['id'], networks='none', **kwargs)

    def action(self, server_id, body, api=None, expect=None):
        """POST /servers/{id}/action; returns the requests response (status not checked)."""
        api = api or self.api
        return api.api_post('/servers/%s/action' % server_id, body,
                            check_response_status=expect or [200, 202, 204, 400, 403, 404, 409])

    def set_task_state(self, server_id, task_state):
        ctxt = nova_context.get_admin_context()
        from nova import objects
        mapping = objects.InstanceMapping.get_by_instance_uuid(ctxt, server_id)
        with nova_context.target_cell(ctxt, mapping.cell_mapping) as cctxt:
            instance = objects.Instance.get_by_uuid(cctxt, server_id)
            instance.task_state = task_state
            instance.save()


PackageServer = http_server.DirectoryHTTPServer   # GET /<file> from a directory
