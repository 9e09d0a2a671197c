"""Leases through nova-api loaded from etc/nova/api-paste.ini: create with a lease, heartbeat."""

import datetime

from cloudlet_glance import properties

from tests.functional.api import base

SECONDS, EXPIRES = properties.META_LEASE_SECONDS, properties.META_LEASE_EXPIRES_AT


def expires(server):
    return datetime.datetime.strptime(server['metadata'][EXPIRES], '%Y-%m-%dT%H:%M:%SZ').replace(
        tzinfo=datetime.timezone.utc)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


class LeaseTest(base.CloudletAPITestBase):

    def leased_server(self, seconds='120'):
        request = self._build_server(image_uuid=base.BASE_DISK_IMAGE['id'], networks='none')
        request['metadata'] = {SECONDS: seconds}
        return self.api.post_server({'server': request})

    def test_a_lease_asked_for_at_create_gets_its_expiry(self):
        server = self._wait_for_state_change(self.leased_server('120'), 'ACTIVE')
        self.assertEqual('120', server['metadata'][SECONDS])
        left = (expires(server) - now()).total_seconds()
        self.assertTrue(100 < left <= 121, left)

    def test_bad_lease_values_are_400_before_anything_is_made(self):
        for value, why in (('abc', 'whole number'), ('-5', 'whole number'), ('0', 'between 30 and 86400'),
                           ('86401', 'between 30 and 86400'), ('12.5', 'whole number')):
            request = self._build_server(image_uuid=base.BASE_DISK_IMAGE['id'], networks='none')
            request['metadata'] = {SECONDS: value}
            resp = self.api.api_post('/servers', {'server': request}, check_response_status=[400])
            self.assertIn(why, resp.body['badRequest']['message'], value)
        self.assertEqual([], self.api.get_servers())

    def test_the_expiry_is_the_cloud_s_to_set(self):
        request = self._build_server(image_uuid=base.BASE_DISK_IMAGE['id'], networks='none')
        request['metadata'] = {SECONDS: '60', EXPIRES: '2099-01-01T00:00:00Z'}
        resp = self.api.api_post('/servers', {'server': request}, check_response_status=[400])
        self.assertIn('set by the cloud', resp.body['badRequest']['message'])

    def test_heartbeat_renews_and_can_change_the_length(self):
        server = self._wait_for_state_change(self.leased_server('60'), 'ACTIVE')
        resp = self.action(server['id'], {'cloudlet-heartbeat': {}}, expect=[200])
        self.assertEqual(60, resp.body['lease']['seconds'])
        resp = self.action(server['id'], {'cloudlet-heartbeat': {'seconds': 600}}, expect=[200])
        self.assertEqual(600, resp.body['lease']['seconds'])
        server = self.api.get_server(server['id'])
        self.assertEqual('600', server['metadata'][SECONDS])
        self.assertEqual(resp.body['lease']['expires_at'], server['metadata'][EXPIRES])
        self.assertTrue(590 < (expires(server) - now()).total_seconds() <= 601)

    def test_heartbeat_starts_a_lease_only_with_seconds(self):
        server = self._wait_for_state_change(self.create_cloudlet_server(), 'ACTIVE')
        resp = self.action(server['id'], {'cloudlet-heartbeat': {}}, expect=[409])
        self.assertIn('has no lease', resp.body['conflictingRequest']['message'])
        self.action(server['id'], {'cloudlet-heartbeat': {'seconds': 45}}, expect=[200])
        self.assertEqual('45', self.api.get_server(server['id'])['metadata'][SECONDS])

    def test_bad_heartbeats(self):
        server = self._wait_for_state_change(self.leased_server(), 'ACTIVE')
        for entity in ({'seconds': 'x'}, {'seconds': 0}, {'other': 1}, []):
            self.action(server['id'], {'cloudlet-heartbeat': entity}, expect=[400])
        resp = self.action(server['id'], {'cloudlet-heartbeat': {'seconds': 10 ** 6}}, expect=[400])
        self.assertIn('between 30 and 86400', resp.body['badRequest']['message'])

    def test_someone_else_s_server_is_404_and_a_reader_is_403(self):
        server = self._wait_for_state_change(self.leased_server(), 'ACTIVE')
        before = self.api.get_server(server['id'])['metadata']
        self.action(server['id'], {'cloudlet-heartbeat': {}}, api=self.other_project_api(), expect=[404])
        self.action(server['id'], {'cloudlet-heartbeat': {}}, api=self.api_fixture.reader_api, expect=[403])
        self.action('6a8b8ea1-0000-4000-8000-00000000dead', {'cloudlet-heartbeat': {}}, expect=[404])
        self.assertEqual(before, self.api.get_server(server['id'])['metadata'])

    def test_bounds_are_the_cloud_s(self):
        self.flags(min_seconds=5, max_seconds=10, group='cloudlet_lease')
        self._wait_for_state_change(self.leased_server('5'), 'ACTIVE')
        resp = self.api.api_post('/servers', {'server': dict(
            self._build_server(image_uuid=base.BASE_DISK_IMAGE['id'], networks='none'),
            metadata={SECONDS: '11'})}, check_response_status=[400])
        self.assertIn('between 5 and 10', resp.body['badRequest']['message'])
