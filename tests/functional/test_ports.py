"""A restore with a port that is not up yet: nova waits for Neutron's network-vif-plugged.

nova's NeutronFixture makes ports ACTIVE, so nova waits for nothing; here the
port is created DOWN, as a real Neutron makes it until its agent has wired
the tap, and the test plays Neutron: it sends the event through nova's
os-server-external-events API (or never does).
"""

import json
import os
import time

from nova.tests.fixtures import libvirt as fakelibvirt

from tests.functional import cloudlet_base


class VifPluggedTest(cloudlet_base.CloudletTestBase):

    def setUp(self):
        super().setUp()
        # Ports come out DOWN: nova waits for their network-vif-plugged events.
        self.neutron.default_port = dict(self.neutron.default_port, status='DOWN')
        self.network = [{'uuid': self.neutron.network_1['id']}]

    def _post(self):
        body = self._build_server(image_uuid=self.base_images.disk_id, flavor_id=self.flavor_id,
                                  networks=self.network)
        return self.api.post_server({'server': body})

    def _wait_restored_paused(self, server, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.restores_of(server):
                return self.domain(server)
            time.sleep(0.05)
        self.fail('no restore of %s within %d s' % (server['id'], timeout))

    def test_restored_paused_until_the_event_then_resumed(self):
        self.flags(vif_plugging_timeout=60)
        server = self._post()
        dom = self._wait_restored_paused(server)
        # Restored paused, the port already hot-plugged: the agent can see its tap.
        self.assertEqual(fakelibvirt.VIR_DOMAIN_PAUSED, dom._state)
        self.assertEqual(1, len(dom._fake_ifaces))
        [port] = [p for p in self.neutron._ports.values() if p['device_id'] == server['id']]
        self.admin_api.api_post('/os-server-external-events', {'events': [
            {'name': 'network-vif-plugged', 'server_uuid': server['id'], 'tag': port['id'],
             'status': 'completed'}]})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertTrue(self.domain(server).isActive())
        with open(os.path.join(self.instance_dir(server), 'cloudlet.json')) as f:
            record = json.load(f)
        self.assertGreaterEqual(record['timings']['vif_plugged_wait_seconds'], 0)
        self.assertGreaterEqual(record['timings']['restore_seconds'], 0)

    def test_an_event_that_never_comes_is_a_fault_without_residue(self):
        self.flags(vif_plugging_timeout=2)
        server = self._wait_for_state_change(self._post(), 'ERROR')
        self.assertIn('Failed to allocate the network(s), not rescheduling', self.latest_fault(server))
        self.assert_no_launch_files(server)
        # nova gave back the port it made.
        self.assertEqual([], [p for p in self.neutron._ports.values()
                              if p['device_id'] == server['id']])
