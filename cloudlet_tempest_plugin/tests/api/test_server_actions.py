"""The cloudlet server actions and the residue endpoint (api-ref:
cloudlet-server-actions, cloudlet-residue) refusing what they must, on a server
booted from the test guest image (not from a base: no cloudlet server), and the
server metadata POST /servers refuses (leases, overlay URL).
"""

import uuid

from tempest.lib.common.utils import data_utils
from tempest.lib import decorators
from tempest.lib import exceptions as lib_exc

from cloudlet_glance import properties as props
from cloudlet_tempest_plugin.tests import base


class ServerActionsNegativeTest(base.CloudletTest):

    @classmethod
    def resource_setup(cls):
        super().resource_setup()
        cls.server_id = cls.make_server(cls.addClassResourceCleanup, base.guest_image())['id']

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('d2c4e6f8-0a1b-4c3d-8e5f-6a7b8c9d0e10')
    def test_an_overlay_of_a_server_that_is_no_cloudlet_server(self):
        error = self.assertRaises(lib_exc.Conflict, self.cloudlet.create_overlay, self.server_id, 'none')
        self.assertIn('not booted from a cloudlet base VM image', str(error))

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('e3d5f7a9-1b2c-4d3e-9f6a-7b8c9d0e1f11')
    def test_action_bodies_that_are_refused(self):
        action = self.cloudlet.server_action
        for name, body in (('cloudlet-create-base', {}),                         # no name
                           ('cloudlet-create-base', {'name': 'x', 'unknown': 1}),
                           ('cloudlet-create-overlay', {'name': ''}),
                           ('cloudlet-create-base', {'name': 'x', 'metadata': {'cloudlet_base_id': 'x'}}),
                           ('cloudlet-create-overlay', {'name': 'x', 'options': {'codec': 'gzip'}}),
                           ('cloudlet-handoff', {'destination': {}}),            # no credential
                           ('cloudlet-handoff', {'destination': {'auth_url': 'https://b.invalid/v3'},
                                                 'credential': {'password': 'x'}, 'name': 'x'}),
                           ('cloudlet-heartbeat', {'seconds': 'ten'})):
            self.assertRaises(lib_exc.BadRequest, action, self.server_id, name, body)

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('f4e6a8b0-2c3d-4e5f-8a7b-9c0d1e2f3a12')
    def test_a_heartbeat_of_a_server_without_a_lease(self):
        error = self.assertRaises(lib_exc.Conflict, self.cloudlet.heartbeat, self.server_id)
        self.assertIn('has no lease', str(error))

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('a5f7b9c1-3d4e-4f6a-9b8c-0d1e2f3a4b13')
    def test_a_server_that_is_no_handoff_destination(self):
        handoff_id = str(uuid.uuid4())
        self.assertRaises(lib_exc.Conflict, self.cloudlet.show_residue, self.server_id, handoff_id)
        self.assertRaises(lib_exc.Conflict, self.cloudlet.put_residue, self.server_id, handoff_id, b'x')

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('b6a8c0d2-4e5f-4a7b-8c9d-1e2f3a4b5c14')
    def test_an_unknown_server_is_404(self):
        unknown = str(uuid.uuid4())
        self.assertRaises(lib_exc.NotFound, self.cloudlet.create_base, unknown, 'none')
        self.assertRaises(lib_exc.NotFound, self.cloudlet.create_overlay, unknown, 'none')
        self.assertRaises(lib_exc.NotFound, self.cloudlet.heartbeat, unknown)

    @decorators.attr(type=['negative'])
    @decorators.idempotent_id('c7b9d1e3-5f6a-4b8c-9d0e-2f3a4b5c6d15')
    def test_server_metadata_that_is_refused(self):
        seconds = props.META_LEASE_SECONDS
        for metadata in ({seconds: '0'}, {seconds: 'ten'}, {seconds: '86401'},
                         {props.META_LEASE_EXPIRES_AT: '2030-01-01T00:00:00Z'},
                         {props.META_OVERLAY_URL: 12}):
            self.assertRaises(lib_exc.BadRequest, self.servers_client.create_server,
                              name=data_utils.rand_name('cloudlet-refused'), imageRef=base.guest_image(),
                              flavorRef=base.flavor(), metadata=metadata)
