"""VM synthesis and handoff end to end, as a cloudlet user sees it (doc/tempest-plugin.md).

The class captures one base VM from a fresh boot of the test guest (the slow
part), then each test starts from it: a resume is the same boot (resumed, not
booted); an overlay captured after writing state into the app synthesizes,
from its image and from its URL, into a server whose app answers with that
state in the same boot.

With a second cloud configured ([cloudlet] handoff_*; skipped without one), a
running server is handed off: it leaves this cloud and runs on there with its
RAM and disk state, in the same boot, at a floating IP of the destination
(doc/handoff.md). The destination gets the base as the `openstack cloudlet
base export` and `import` commands do (deleted there afterwards); the
credential is an application credential of the destination user, made for the
handoff and deleted after it.
"""

import datetime
import secrets
import time

from tempest.common import utils
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib import decorators
from tempest.lib import exceptions as lib_exc

from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_tempest_plugin.common import clouds
from cloudlet_tempest_plugin.common import guest_app
from cloudlet_tempest_plugin.tests import base

CONF = config.CONF
RAM, DISK = 'tempest-ram', 'tempest-disk'
HANDOFF_TIMEOUT = 600


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

    def share_base(self, dest, image_id):
        """The base of `image_id` imported into the destination cloud (deleted at the end)."""
        directory = self.workdir()
        package = model.export_base_package(clouds.images_of(self.os_primary.credentials), image_id,
                                            '%s/base.zip' % directory, workdir=directory)
        there = clouds.destination_images(dest)
        imported = model.import_base_package(there, package, workdir=directory)
        self.addCleanup(model.delete_base, there, imported.disk_id)

    def application_credential(self, dest):
        """{'id', 'secret'} of a fresh application credential of the destination user."""
        secret = secrets.token_urlsafe(24)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        made = dest.identity.create_application_credential(
            dest.current_user_id, name=data_utils.rand_name('cloudlet-handoff'), secret=secret,
            expires_at=expires.strftime('%Y-%m-%dT%H:%M:%S'))
        self.addCleanup(dest.identity.delete_application_credential, dest.current_user_id, made.id)
        return {'id': made.id, 'secret': secret}

    def wait_gone(self, server_id, handoff_id):
        """Until the source server is gone; fail at once if the handoff rolled back."""
        deadline = time.monotonic() + HANDOFF_TIMEOUT
        while time.monotonic() < deadline:
            try:
                server = self.servers_client.show_server(server_id)['server']
            except lib_exc.NotFound:
                return
            # nova shows the server DELETED between its compute's destroy and the row's deletion.
            if server['status'] == 'DELETED':
                return
            if server['OS-EXT-STS:task_state'] is None:
                self.fail('handoff %s did not move server %s: it is %s here again (fault: %s)'
                          % (handoff_id, server_id, server['status'], server.get('fault')))
            time.sleep(1)
        self.fail('handoff %s of server %s not over after %d s' % (handoff_id, server_id, HANDOFF_TIMEOUT))

    def arrived(self, dest, handoff_id):
        """The destination server of the handoff, once ACTIVE (deleted at the end)."""
        deadline = time.monotonic() + HANDOFF_TIMEOUT
        while time.monotonic() < deadline:
            found = [s for s in dest.compute.servers(details=True)
                     if (s.metadata or {}).get(props.HANDOFF_ID) == handoff_id]
            if found:
                server = found[0]
                self.addCleanup(dest.compute.wait_for_delete, server, wait=300)
                self.addCleanup(dest.compute.delete_server, server, ignore_missing=True)
                return dest.compute.wait_for_server(server, status='ACTIVE', wait=HANDOFF_TIMEOUT)
            time.sleep(1)
        self.fail('no server of handoff %s on the destination after %d s' % (handoff_id, HANDOFF_TIMEOUT))

    @decorators.idempotent_id('5b8e0c3a-2f6d-4e1b-9c7a-8d0e1f2a3b15')
    @utils.services('compute', 'image', 'network')
    def test_handoff_moves_the_running_vm_with_its_state(self):
        if not CONF.cloudlet.handoff_auth_url:
            raise self.skipException('[cloudlet] handoff_auth_url is not set: no second cloud')
        server = self.create_app_server(self.base_image['id'])
        self.app(server['id'], '/cgi-bin/set?ram=%s&disk=%s' % (RAM, DISK))
        dest = clouds.destination()
        self.addCleanup(dest.close)
        self.share_base(dest, self.base_image['id'])
        handoff_id = self.cloudlet.handoff(
            server['id'], name=data_utils.rand_name('cloudlet-moved'),
            destination={'auth_url': CONF.cloudlet.handoff_auth_url,
                         'region_name': CONF.cloudlet.handoff_region_name},
            credential={'application_credential': self.application_credential(dest)})['handoff_id']
        self.wait_gone(server['id'], handoff_id)
        moved = self.arrived(dest, handoff_id)
        # The server had a floating IP here: the handoff gave it one there.
        ports = list(dest.network.ports(device_id=moved.id))
        addresses = [ip.floating_ip_address for port in ports for ip in dest.network.ips(port_id=port.id)]
        self.assertTrue(addresses, 'the moved server has no floating IP on the destination')
        answer = guest_app.get(addresses[0], CONF.cloudlet.app_port, '/cgi-bin/state',
                               CONF.cloudlet.app_timeout)
        self.assertEqual((self.boot_id, RAM, DISK), (answer['bootid'], answer['ram'], answer['disk']))
