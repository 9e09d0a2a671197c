"""VM synthesis end to end, as a cloudlet user sees it (doc/tempest-plugin.md).

The class captures one base VM from a fresh boot of the test guest (the slow
part), then each test starts from it: a resume is the same boot (resumed, not
booted); an overlay captured after writing state into the app synthesizes,
from its image and from its URL, into a server whose app answers with that
state in the same boot.
"""

from tempest.common import utils
from tempest import config
from tempest.lib import decorators

from cloudlet_glance import properties as props
from cloudlet_tempest_plugin.tests import base

CONF = config.CONF
RAM, DISK = 'tempest-ram', 'tempest-disk'


class VMSynthesisTest(base.CloudletScenarioTest):

    @classmethod
    def resource_setup(cls):
        super().resource_setup()
        cls.base_image, cls.boot_id = cls.guest_base(cls.addClassResourceCleanup)
        # The overlay the synthesis tests use: the app's state written into a resumed base.
        resumed = cls.make_app_server(cls.addClassResourceCleanup, cls.base_image['id'])
        cls.ask_app(cls.addClassResourceCleanup, resumed['id'], '/cgi-bin/set?ram=%s&disk=%s' % (RAM, DISK))
        cls.overlay = cls.make_capture(cls.addClassResourceCleanup, resumed['id'], 'overlay')
        cls.delete_server(resumed['id'])

    def assert_app_state(self, server_id):
        answer = self.app(server_id, '/cgi-bin/state')
        self.assertEqual((self.boot_id, RAM, DISK), (answer['bootid'], answer['ram'], answer['disk']))

    @decorators.idempotent_id('8a3a38c4-5f0e-4a61-a4a2-6b1a8b0b8d11')
    @utils.services('compute', 'image', 'network')
    def test_a_resumed_base_is_the_captured_boot(self):
        self.assertEqual(props.BASE_DISK, self.base_image.get(props.CLOUDLET_TYPE))
        resumed = self.create_app_server(self.base_image['id'])
        self.assertEqual(self.boot_id, self.app(resumed['id'], '/cgi-bin/state')['bootid'])

    @decorators.idempotent_id('1e0b9f57-4a0c-4c6e-9a91-3f8e2d7c6b12')
    @utils.services('compute', 'image', 'network')
    def test_synthesis_from_the_overlay_image(self):
        self.assertEqual(self.base_image[props.BASE_ID], self.overlay.get(props.BASE_ID))
        server = self.create_app_server(self.base_image['id'], {props.META_OVERLAY_ID: self.overlay['id']})
        self.assert_app_state(server['id'])

    @decorators.idempotent_id('6c2d8e41-9b7a-4f35-8d0c-2a1b3c4d5e13')
    @utils.services('compute', 'image', 'network')
    def test_synthesis_from_the_overlay_url(self):
        if not CONF.cloudlet.overlay_serve_address:
            raise self.skipException('[cloudlet] overlay_serve_address is not set')
        directory = self.workdir()
        self.download_image(self.overlay['id'], directory, 'app.clo')
        with self.served(directory) as url:
            server = self.create_app_server(self.base_image['id'], {props.META_OVERLAY_URL: url + '/app.clo'})
        self.assert_app_state(server['id'])

    @decorators.idempotent_id('3f4a5b6c-7d8e-4f90-a1b2-c3d4e5f6a714')
    @utils.services('compute', 'image', 'network')
    def test_a_synthesized_server_captures_an_overlay_of_the_same_base(self):
        server = self.create_app_server(self.base_image['id'], {props.META_OVERLAY_ID: self.overlay['id']})
        again = self.capture(server['id'], 'overlay')
        self.assertEqual((props.OVERLAY, self.base_image[props.BASE_ID]),
                         (again.get(props.CLOUDLET_TYPE), again.get(props.BASE_ID)))
        # The capture took the server's NICs out and put them back: its app answers again.
        self.assert_app_state(server['id'])
