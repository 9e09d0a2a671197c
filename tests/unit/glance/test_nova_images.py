"""NovaImages over nova's own GlanceFixture (nova.tests.fixtures, shipped in the nova wheel).

nova's test fixtures run nova's concurrency setup when imported
(`nova.tests.functional` calls `nova.monkey_patch.patch()`). Unless the
environment chose already, this module picks nova's native threading mode
(`OS_NOVA_DISABLE_EVENTLET_PATCHING=true`), so eventlet does not patch the
whole pytest process; nova then refuses any later eventlet import in this
process. If eventlet was imported before (another mode chosen elsewhere),
the module is skipped with the reason.

What GlanceFixture does not model, and these tests therefore do not cover:
list filters (it returns every image: NovaImages filters again locally),
upload data (its update() ignores `data`: the test checks what NovaImages
passes), status transitions and Glance-computed sizes and hashes.
"""

import io
import os

import fixtures
import pytest
import testtools

from cloudlet_glance import errors
from cloudlet_glance import images
from cloudlet_glance import properties as props

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', 'true')
try:
    from nova import monkey_patch
    monkey_patch.patch()            # before any nova.tests import, as nova's own tests do
    from nova import context as nova_context
    from nova import exception as nova_exception
    from nova.tests import fixtures as nova_fixtures
except Exception as exc:  # noqa: BLE001 - whatever nova's import machinery raises
    pytest.skip('nova test fixtures cannot be loaded in this process: %s' % exc, allow_module_level=True)


class NovaImagesTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.glance = self.useFixture(nova_fixtures.GlanceFixture(self))
        self.context = nova_context.RequestContext(
            'fake-user', 'fake-project', is_admin=False, auth_token='fake-token')  # no policy lookup
        self.images = images.NovaImages(self.context)

    def stub_out(self, old, new):
        # GlanceFixture expects nova.test.TestCase's helper.
        self.useFixture(fixtures.MonkeyPatch(old, new))

    def _create(self, name='demo-base-memory', hidden=True, **extra):
        properties = {props.CLOUDLET_TYPE: props.BASE_MEMORY, props.BASE_ID: 'ab' * 32}
        properties.update(extra)
        return self.images.create(name, properties, visibility='public', hidden=hidden)

    def test_create_puts_attributes_top_level_and_properties_aside(self):
        image_id = self._create(**{props.MIN_RAM: 64, props.MIN_DISK: '2'})
        stored = self.glance.images[image_id]
        self.assertEqual('demo-base-memory', stored['name'])
        self.assertEqual('public', stored['visibility'])
        self.assertIs(True, stored['os_hidden'])
        self.assertEqual(('raw', 'bare'), (stored['disk_format'], stored['container_format']))
        self.assertEqual((64, 2), (stored['min_ram'], stored['min_disk']))
        self.assertEqual(props.BASE_MEMORY, stored['properties'][props.CLOUDLET_TYPE])
        self.assertNotIn(props.MIN_RAM, stored['properties'])

        image = self.images.get(image_id)
        self.assertEqual(image_id, image['id'])
        self.assertEqual(props.BASE_MEMORY, image[props.CLOUDLET_TYPE])
        self.assertEqual('ab' * 32, image[props.BASE_ID])
        self.assertIs(True, image['os_hidden'])
        self.assertNotIn('properties', image)

    def test_update_never_purges(self):
        image_id = self._create()
        self.images.update(image_id, {props.BASE_NAME: 'demo', props.MEMORY_BLOCKS: 'pc.ram'})
        image = self.images.get(image_id)
        self.assertEqual('demo', image[props.BASE_NAME])
        self.assertEqual(props.BASE_MEMORY, image[props.CLOUDLET_TYPE])

    def test_upload_goes_through_update_without_purging(self):
        image_id = self._create()
        calls = []
        update = self.glance.update

        def spy(context, image_id, metadata, data=None, purge_props=True):
            calls.append((image_id, data, purge_props))
            return update(context, image_id, metadata, data=data, purge_props=purge_props)

        self.stub_out('nova.tests.fixtures.GlanceFixture.update', lambda _self, *a, **k: spy(*a, **k))
        data = io.BytesIO(b'memory snapshot')
        self.images.upload(image_id, data, size=15)
        self.assertEqual([(image_id, data, False)], calls)
        self.assertEqual(props.BASE_MEMORY, self.images.get(image_id)[props.CLOUDLET_TYPE])

    def test_list_applies_filters_and_the_hidden_rule(self):
        hidden = self._create()
        visible = self._create('demo-base', hidden=False, **{props.CLOUDLET_TYPE: props.BASE_DISK})
        base_disks = list(self.images.list({props.CLOUDLET_TYPE: props.BASE_DISK}))
        self.assertEqual([visible], [i['id'] for i in base_disks])
        memories = list(self.images.list({props.CLOUDLET_TYPE: props.BASE_MEMORY, props.OS_HIDDEN: True}))
        self.assertEqual([hidden], [i['id'] for i in memories])
        self.assertEqual([], list(self.images.list({props.CLOUDLET_TYPE: props.BASE_MEMORY})))

    def test_download_counts_what_it_writes(self):
        image_id = self._create()
        self.glance._imagedata[image_id] = b'x' * 10000
        out = io.BytesIO()
        self.assertEqual(10000, self.images.download(image_id, out))
        self.assertEqual(b'x' * 10000, out.getvalue())

    def test_errors_are_translated(self):
        image_id = self._create()
        self.images.delete(image_id)
        self.assertRaises(errors.ImageNotFound, self.images.get, image_id)
        self.assertRaises(errors.ImageNotFound, self.images.delete, image_id)

        def refuse(*args, **kwargs):
            raise nova_exception.ImageBadRequest(image_id='new', response='bad disk_format')

        self.stub_out('nova.tests.fixtures.GlanceFixture.create', refuse)
        error = self.assertRaises(errors.ImageServiceError, self._create)
        self.assertIn('bad disk_format', str(error))
