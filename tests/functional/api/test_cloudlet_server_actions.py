"""cloudlet-create-base / cloudlet-create-overlay through the whole nova stack.

The compute runs nova's stock fake driver: its snapshot() only walks the task
states, which is all the API side needs (the image record, the properties the
driver will read, the instance action, the state transitions).
"""

from nova.compute import task_states

from cloudlet_glance import properties

from tests.functional.api import base


class ServerActionsTest(base.CloudletAPITestBase):

    def _image(self, image_id):
        return self.glance.show(None, image_id)

    def _assert_snapshot_done(self, server, image_id):
        # The snapshot runs in the compute's long-task pool: wait for its end.
        server = self._wait_for_server_parameter(
            server, {'status': 'ACTIVE', 'OS-EXT-STS:task_state': None}, max_retries=40)
        actions = [a['action'] for a in self.api.get_instance_actions(server['id'])]
        self.assertIn('createImage', actions)
        self._wait_for_instance_action_event(server, 'createImage',
                                             'compute_snapshot_instance', 'success')
        return self._image(image_id)

    # --- success ---------------------------------------------------------

    def test_create_overlay(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], {'cloudlet-create-overlay': {
            'name': 'app-overlay', 'metadata': {'app': 'demo'}, 'options': {'codec': 'xz'}}})
        self.assertEqual(202, resp.status, resp.body)
        image_id = resp.body['image_id']
        image = self._assert_snapshot_done(server, image_id)
        self.assertEqual('app-overlay', image['name'])
        props = image['properties']
        self.assertEqual(properties.OVERLAY, props[properties.CLOUDLET_TYPE])
        self.assertEqual('xz', props['cloudlet_codec'])
        self.assertEqual('demo', props['app'])
        self.assertEqual(server['id'], props['instance_uuid'])
        self.assertEqual('snapshot', props['image_type'])
        # Inherited from the base disk image: the overlay names its base.
        self.assertEqual(base.BASE_DISK_IMAGE['properties'][properties.BASE_ID],
                         props[properties.BASE_ID])

    def test_create_encrypted_overlay_names_its_key_on_the_image(self):
        server = self.create_cloudlet_server()
        key_id = '6d9e4c1a-6a53-4d0b-9c8e-2a1f5d7b3e40'
        resp = self.action(server['id'], {'cloudlet-create-overlay': {
            'name': 'o', 'options': {'encryption_key_id': key_id}}})
        self.assertEqual(202, resp.status, resp.body)
        image = self._assert_snapshot_done(server, resp.body['image_id'])
        self.assertEqual(key_id, image['properties'][properties.OVERLAY_KEY_ID])

    def test_encryption_key_id_must_be_a_key_manager_id(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], {'cloudlet-create-overlay': {
            'name': 'o', 'options': {'encryption_key_id': '../secrets'}}})
        self.assertEqual(400, resp.status, resp.body)

    def test_create_overlay_default_codec_not_recorded(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], {'cloudlet-create-overlay': {'name': 'o'}})
        self.assertEqual(202, resp.status, resp.body)
        image = self._assert_snapshot_done(server, resp.body['image_id'])
        self.assertNotIn('cloudlet_codec', image['properties'])

    def test_create_base(self):
        server = self.create_plain_server()
        resp = self.action(server['id'], {'cloudlet-create-base': {
            'name': 'my-base', 'metadata': {'purpose': 'test'}}})
        self.assertEqual(202, resp.status, resp.body)
        image = self._assert_snapshot_done(server, resp.body['image_id'])
        self.assertEqual('my-base', image['name'])
        self.assertEqual(properties.BASE_DISK, image['properties'][properties.CLOUDLET_TYPE])
        self.assertEqual('test', image['properties']['purpose'])

    def test_create_base_alias_from_openstackpp(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], {'cloudlet-base': {'name': 'pp-base'}})
        self.assertEqual(202, resp.status, resp.body)
        image = self._assert_snapshot_done(server, resp.body['image_id'])
        self.assertEqual(properties.BASE_DISK, image['properties'][properties.CLOUDLET_TYPE])

    def test_no_microversion_header(self):
        # No microversion of our own, and the image id is returned at 2.1 too
        # (createImage only returns it from 2.45).
        server = self.create_cloudlet_server()
        self.api.microversion = None
        resp = self.action(server['id'], {'cloudlet-create-overlay': {'name': 'o'}})
        self.assertEqual(202, resp.status, resp.body)
        self.assertIn('image_id', resp.body)

    def test_admin_on_another_project_server(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], {'cloudlet-create-overlay': {'name': 'o'}},
                           api=self.admin_api)
        self.assertEqual(202, resp.status, resp.body)

    def test_stopped_server_can_be_captured(self):
        server = self.create_cloudlet_server()
        self._stop_server(server)
        resp = self.action(server['id'], {'cloudlet-create-overlay': {'name': 'o'}})
        self.assertEqual(202, resp.status, resp.body)
        self._wait_for_state_change(server, 'SHUTOFF')

    # --- 400 -------------------------------------------------------------

    def test_bad_bodies(self):
        server = self.create_cloudlet_server()
        bad = [
            {'cloudlet-create-overlay': {}},                                    # no name
            {'cloudlet-create-overlay': {'name': ''}},                          # empty name
            {'cloudlet-create-overlay': {'name': 'x' * 256}},                   # too long
            {'cloudlet-create-overlay': {'name': 'o', 'colour': 'red'}},        # extra key
            {'cloudlet-create-overlay': {'name': 'o', 'options': {'codec': 'gzip'}}},
            {'cloudlet-create-overlay': {'name': 'o', 'options': {'level': 3}}},
            {'cloudlet-create-overlay': {'name': 'o', 'metadata': {'k': 1}}},   # not a string
            {'cloudlet-create-overlay': {'name': 'o', 'metadata': {'k': 'v' * 256}}},
            {'cloudlet-create-overlay': 'o'},
            {'cloudlet-create-base': {'name': 'b', 'options': {'codec': 'xz'}}},  # overlay only
            {'cloudlet-create-base': {'name': 'b'}, 'extra': {}},
        ]
        for body in bad:
            resp = self.action(server['id'], body)
            self.assertEqual(400, resp.status, (body, resp.body))

    def test_reserved_metadata_keys(self):
        server = self.create_cloudlet_server()
        for action in ('cloudlet-create-overlay', 'cloudlet-create-base'):
            resp = self.action(server['id'], {action: {
                'name': 'o', 'metadata': {'cloudlet_type': 'cloudlet_base_disk', 'ok': 'x'}}})
            self.assertEqual(400, resp.status, resp.body)
            self.assertIn('cloudlet_type', resp.body['badRequest']['message'])
            self.assertIn('reserved', resp.body['badRequest']['message'])

    def test_unknown_action_still_400(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], {'cloudlet-teleport': {}})
        self.assertEqual(400, resp.status)

    # --- 404 / 403 -------------------------------------------------------

    def test_unknown_server(self):
        resp = self.action('6a8b8ea1-0000-4000-8000-00000000dead',
                           {'cloudlet-create-overlay': {'name': 'o'}})
        self.assertEqual(404, resp.status)

    def test_other_project_server_like_nova(self):
        server = self.create_cloudlet_server()
        other = self.other_project_api()
        # What nova answers for a stock action of the same kind (createImage).
        stock = self.action(server['id'], {'createImage': {'name': 's'}}, api=other)
        resp = self.action(server['id'], {'cloudlet-create-overlay': {'name': 'o'}}, api=other)
        # nova 34 answers 404: a server of another project does not exist for the caller.
        self.assertEqual(404, stock.status)
        self.assertEqual(stock.status, resp.status, resp.body)
        resp = self.action(server['id'], {'cloudlet-create-base': {'name': 'b'}}, api=other)
        self.assertEqual(stock.status, resp.status, resp.body)

    def test_reader_cannot_capture(self):
        server = self.create_cloudlet_server()
        resp = self.action(server['id'], {'cloudlet-create-overlay': {'name': 'o'}},
                           api=self.api_fixture.reader_api)
        self.assertEqual(403, resp.status, resp.body)

    def test_policy_override_forbids(self):
        server = self.create_cloudlet_server()
        self.cloudlet_policy.set_rules({'cloudlet:create-overlay': '!',
                                        'cloudlet:create-base': 'role:admin'})
        resp = self.action(server['id'], {'cloudlet-create-overlay': {'name': 'o'}})
        self.assertEqual(403, resp.status, resp.body)
        resp = self.action(server['id'], {'cloudlet-create-base': {'name': 'b'}})
        self.assertEqual(403, resp.status, resp.body)
        resp = self.action(server['id'], {'cloudlet-create-base': {'name': 'b'}},
                           api=self.admin_api)
        self.assertEqual(202, resp.status, resp.body)

    # --- 409 -------------------------------------------------------------

    def test_overlay_of_a_non_cloudlet_server(self):
        server = self.create_plain_server()
        resp = self.action(server['id'], {'cloudlet-create-overlay': {'name': 'o'}})
        self.assertEqual(409, resp.status, resp.body)
        message = resp.body['conflictingRequest']['message']
        self.assertIn('not booted from a cloudlet base VM image', message)
        self.assertEqual([], [i for i in self.glance.images.values() if i['name'] == 'o'])

    def test_server_busy_with_a_task(self):
        server = self.create_cloudlet_server()
        self.set_task_state(server['id'], task_states.IMAGE_SNAPSHOT)
        for body in ({'cloudlet-create-overlay': {'name': 'o'}},
                     {'cloudlet-create-base': {'name': 'b'}}):
            resp = self.action(server['id'], body)
            self.assertEqual(409, resp.status, resp.body)
            self.assertIn('task_state', resp.body['conflictingRequest']['message'])
        self.assertEqual([], [i for i in self.glance.images.values() if i['name'] in ('o', 'b')])

    def test_shelved_server_refused(self):
        server = self.create_cloudlet_server()
        self._shelve_server(server)
        resp = self.action(server['id'], {'cloudlet-create-overlay': {'name': 'o'}})
        self.assertEqual(409, resp.status, resp.body)
        self.assertIn('vm_state', resp.body['conflictingRequest']['message'])

    def test_volume_backed_server_refused(self):
        volume_id = nova_fixtures_cinder_image_backed_volume()
        server = self.api.post_server({'server': {
            'name': 'bfv', 'flavorRef': self.api.get_flavors()[0]['id'], 'imageRef': '',
            'networks': 'none',
            'block_device_mapping_v2': [{'boot_index': 0, 'uuid': volume_id,
                                         'source_type': 'volume', 'destination_type': 'volume'}],
        }})
        server = self._wait_for_state_change(server, 'ACTIVE')
        resp = self.action(server['id'], {'cloudlet-create-base': {'name': 'b'}})
        self.assertEqual(409, resp.status, resp.body)
        self.assertIn('volume', resp.body['conflictingRequest']['message'])


def nova_fixtures_cinder_image_backed_volume():
    from nova.tests import fixtures as nova_fixtures
    return nova_fixtures.CinderFixture.IMAGE_BACKED_VOL
