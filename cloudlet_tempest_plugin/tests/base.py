"""What the plugin's tests share: the clients, servers of the test guest and of
its bases, captures, and the app at a server's floating IP.

Everything a test makes is deleted at its end, whatever happened: the helpers
take the cleanup registrar (a test's addCleanup, or the class's
addClassResourceCleanup for what resource_setup makes once for all its tests).
"""

import shutil
import tempfile
import time

from tempest.common import compute
from tempest.common import waiters
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib.common.utils import test_utils
from tempest.lib import exceptions as lib_exc
from tempest import test

from cloudlet_engine import errors as engine_errors
from cloudlet_glance import errors as glance_errors
from cloudlet_glance import model
from cloudlet_tempest_plugin.common import clouds
from cloudlet_tempest_plugin.common import file_server
from cloudlet_tempest_plugin.common import guest_app

CONF = config.CONF


def guest_image():
    return CONF.cloudlet.guest_image_ref or CONF.compute.image_ref


def flavor():
    return CONF.cloudlet.flavor_ref or CONF.compute.flavor_ref


class CloudletTest(test.BaseTestCase):
    """As a member of a project of its own (tempest's primary credentials)."""

    credentials = ['primary']

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.service_available.cloudlet:
            raise cls.skipException('the cloudlet extension is not available '
                                    '([service_available] cloudlet = false)')

    @classmethod
    def setup_clients(cls):
        super().setup_clients()
        cls.cloudlet = cls.os_primary.cloudlet_v1.CloudletClient()
        cls.servers_client = cls.os_primary.servers_client
        cls.images_client = cls.os_primary.image_client_v2

    # -- servers --

    @classmethod
    def make_server(cls, cleanup, image_id, metadata=None, **kwargs):
        """A server of `image_id` on the project's network, once ACTIVE (an ERROR fails the
        test); deleted by `cleanup`.
        """
        body, _ = compute.create_test_server(
            cls.os_primary, tenant_network=cls.get_tenant_network(), image_id=image_id,
            flavor=flavor(), name=data_utils.rand_name(cls.__name__), metadata=metadata or {}, **kwargs)
        cleanup(cls.delete_server, body['id'])
        waiters.wait_for_server_status(cls.servers_client, body['id'], 'ACTIVE')
        return cls.servers_client.show_server(body['id'])['server']

    @classmethod
    def delete_server(cls, server_id):
        test_utils.call_and_ignore_notfound_exc(cls.servers_client.delete_server, server_id)
        waiters.wait_for_server_termination(cls.servers_client, server_id, ignore_error=True)

    # -- captures --

    @classmethod
    def make_capture(cls, cleanup, server_id, kind):
        """cloudlet-create-base or -overlay; the image once active, deleted by `cleanup`."""
        name = data_utils.rand_name('cloudlet-%s' % kind)
        if kind == 'base':
            image_id = cls.cloudlet.create_base(server_id, name)['image_id']
            cleanup(cls.delete_base, image_id)
        else:
            image_id = cls.cloudlet.create_overlay(server_id, name)['image_id']
            cleanup(test_utils.call_and_ignore_notfound_exc, cls.images_client.delete_image, image_id)
        waiters.wait_for_image_status(cls.images_client, image_id, 'active')
        return cls.images_client.show_image(image_id)

    def capture(self, server_id, kind):
        return self.make_capture(self.addCleanup, server_id, kind)

    @classmethod
    def delete_base(cls, image_id):
        """A captured base: its disk image, then its hidden companions (as the CLI does)."""
        try:
            model.delete_base(clouds.images_of(cls.os_primary.credentials), image_id)
        except glance_errors.ImageNotFound:
            pass
        except engine_errors.BaseVMError:
            # Not (yet) a base: a capture that failed. The image alone, if still there.
            test_utils.call_and_ignore_notfound_exc(cls.images_client.delete_image, image_id)

    # -- files --

    def download_image(self, image_id, directory, name):
        """An image's data into `directory`/`name`."""
        path = '%s/%s' % (directory, name)
        with open(path, 'wb') as f:
            f.write(self.images_client.show_image_file(image_id).data)
        return path

    def served(self, directory):
        """A context manager serving `directory` to the cloud at its URL ([cloudlet]
        overlay_serve_address must be set).
        """
        return file_server.serve(directory, CONF.cloudlet.overlay_serve_address,
                                 CONF.cloudlet.overlay_serve_ports)

    def workdir(self):
        path = tempfile.mkdtemp(prefix='cloudlet-tempest-')
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path


class CloudletScenarioTest(CloudletTest):
    """With the test guest's app reached at a server's floating IP, through a security
    group that opens [cloudlet] app_port (as a phone reaches its app).
    """

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.service_available.neutron:
            raise cls.skipException('Neutron is not available')
        if not CONF.network.public_network_id:
            raise cls.skipException('no [network] public_network_id: the app is reached at a floating IP')

    @classmethod
    def setup_clients(cls):
        super().setup_clients()
        cls.ports_client = cls.os_primary.ports_client
        cls.floating_ips_client = cls.os_primary.floating_ips_client
        cls.security_groups_client = cls.os_primary.security_groups_client
        cls.security_group_rules_client = cls.os_primary.security_group_rules_client

    @classmethod
    def resource_setup(cls):
        super().resource_setup()
        group = cls.security_groups_client.create_security_group(
            name=data_utils.rand_name('cloudlet-app'))['security_group']
        cls.addClassResourceCleanup(test_utils.call_and_ignore_notfound_exc,
                                    cls.security_groups_client.delete_security_group, group['id'])
        cls.security_group_rules_client.create_security_group_rule(
            security_group_id=group['id'], direction='ingress', ethertype='IPv4', protocol='tcp',
            port_range_min=CONF.cloudlet.app_port, port_range_max=CONF.cloudlet.app_port)
        cls.app_security_group = group

    @classmethod
    def make_app_server(cls, cleanup, image_id, metadata=None):
        """make_server, in the security group that opens the app's port."""
        return cls.make_server(cleanup, image_id, metadata,
                               security_groups=[{'name': cls.app_security_group['name']}])

    def create_app_server(self, image_id, metadata=None):
        return self.make_app_server(self.addCleanup, image_id, metadata)

    @classmethod
    def ask_app(cls, cleanup, server_id, *paths):
        """GET each path from the app at the server's floating IP; the last answer."""
        address = cls.floating_ip(cleanup, server_id)
        answer = None
        for path in paths:
            answer = guest_app.get(address, CONF.cloudlet.app_port, path, CONF.cloudlet.app_timeout)
        return answer

    def app(self, server_id, *paths):
        return self.ask_app(self.addCleanup, server_id, *paths)

    @classmethod
    def floating_ip(cls, cleanup, server_id, timeout=60):
        """The floating IP of the server's first port: the one it has, else a new one."""
        deadline = time.monotonic() + timeout
        while True:
            ports = cls.ports_client.list_ports(device_id=server_id)['ports']
            if ports:
                break
            if time.monotonic() > deadline:
                raise lib_exc.TimeoutException('server %s has no port after %d s' % (server_id, timeout))
            time.sleep(1)
        found = cls.floating_ips_client.list_floatingips(port_id=ports[0]['id'])['floatingips']
        if found:
            return found[0]['floating_ip_address']
        made = cls.floating_ips_client.create_floatingip(
            floating_network_id=CONF.network.public_network_id, port_id=ports[0]['id'])['floatingip']
        cleanup(test_utils.call_and_ignore_notfound_exc, cls.floating_ips_client.delete_floatingip, made['id'])
        return made['floating_ip_address']

    @classmethod
    def guest_base(cls, cleanup):
        """A base captured from a fresh boot of the test guest: (its disk image, the boot id)."""
        booted = cls.make_app_server(cleanup, guest_image())
        boot_id = cls.ask_app(cleanup, booted['id'], '/cgi-bin/state')['bootid']
        image = cls.make_capture(cleanup, booted['id'], 'base')
        cls.delete_server(booted['id'])
        return image, boot_id
