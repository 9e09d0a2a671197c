"""Real multicast DNS: the advert as a python-zeroconf browser on the link sees it.

- on loopback, in this process (Advertiser with a fake reader);
- `cloudlet-advertise` itself against a FAKE cloud over HTTP (fake_cloud.py): on loopback, and,
  as root, the way box2 runs it: inside a network namespace behind a veth pair, its multicast
  reaching the root namespace over the veth and its API calls going to the veth's root end.
  The namespace and the pair are named zcx<pid> and deleted afterwards.

Instance names are zcx-<pid>-<random>, and the browsers look only at theirs:
other adverts on this host's links (a running box) do not disturb the tests.
"""

import os
import pathlib
import queue
import secrets
import signal
import socket
import subprocess
import sys
import time

import pytest
import zeroconf

from cloudlet_engine import advert
from cloudlet_nova.discovery import advertiser
from cloudlet_nova.discovery import capacity
from tests.unit.discovery import fake_cloud
from tests.unit.discovery.test_advertiser import FakeReader

# One multicast group for the whole host: these tests run one after the other,
# on one pytest-xdist worker (tools/test.sh runs the unit tier with --dist loadgroup).
pytestmark = pytest.mark.xdist_group('real-multicast-dns')

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / 'tools'))
from cloudlet_box import netns_link  # noqa: E402

ADDED, UPDATED, REMOVED = (zeroconf.ServiceStateChange.Added, zeroconf.ServiceStateChange.Updated,
                           zeroconf.ServiceStateChange.Removed)


def multicast_works_on(address):
    """Does a multicast datagram sent out of `address`'s interface come back to a member there?"""
    group, probe = '239.255.77.77', secrets.token_bytes(8)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        receiver.bind(('', 0))
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            socket.inet_aton(group) + socket.inet_aton(address))
        receiver.settimeout(0.5)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
        sender.sendto(probe, (group, receiver.getsockname()[1]))
        try:
            while True:
                if receiver.recvfrom(64)[0] == probe:
                    return True
        except OSError:
            return False


needs_loopback_multicast = pytest.mark.skipif(not multicast_works_on('127.0.0.1'),
                                              reason='multicast does not loop back on 127.0.0.1 here')


def unique_name():
    return 'zcx-%d-%s' % (os.getpid(), secrets.token_hex(3))


class Watch:
    """A zeroconf browser of _cloudlet._tcp on `address`, recording what happens to one instance."""

    def __init__(self, address, instance):
        self.name = '%s.%s' % (instance, advert.SERVICE_TYPE)
        self.events = queue.Queue()
        self.started = time.monotonic()
        self.zc = zeroconf.Zeroconf(interfaces=[address], ip_version=zeroconf.IPVersion.V4Only)
        self.browser = zeroconf.ServiceBrowser(self.zc, advert.SERVICE_TYPE, handlers=[self._handler])

    def _handler(self, zeroconf, service_type, name, state_change):
        if name.lower() == self.name.lower():
            self.events.put((state_change, time.monotonic()))

    def wait(self, change, timeout=4.0):
        """Seconds from the watch's start until `change` (other changes are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                got, at = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError('no %s of %s within %.1f s' % (change, self.name, timeout))
            if got == change:
                return at - self.started

    def quiet(self, seconds):
        """The changes seen in the next `seconds`."""
        time.sleep(seconds)
        seen = []
        while not self.events.empty():
            seen.append(self.events.get()[0])
        return seen

    def advert(self):
        info = self.zc.get_service_info(advert.SERVICE_TYPE, self.name, timeout=2000)
        assert info is not None, 'no answer for %s' % self.name
        return advert.decode(info.properties), info

    def close(self):
        self.browser.cancel()
        self.zc.close()


@needs_loopback_multicast
def test_an_advert_on_loopback_is_browsed_updated_and_withdrawn():
    instance, reader = unique_name(), FakeReader()
    adv = advertiser.Advertiser(reader, instance, 'RegionOne', ['127.0.0.1'],
                                keystone_url='http://127.0.0.1:5000/v3')
    watch = Watch('127.0.0.1', instance)
    try:
        adv.refresh()
        watch.wait(ADDED)
        seen, info = watch.advert()
        assert seen == advert.Advert('http://127.0.0.1:5000/v3', 'RegionOne', '1.2', ('abababababab',),
                                     free_ram_mb=4096, free_vcpus=8)
        assert info.port == 5000 and info.parsed_addresses() == ['127.0.0.1']
        reader.capacity = capacity.Capacity(1024, 1)
        adv.refresh()
        watch.wait(UPDATED)
        assert watch.advert()[0].free_ram_mb == 1024
        # Placement down: nothing changes on the link, the advert still answers.
        reader.capacity = capacity.ReadError('Placement resource providers: Service Unavailable (HTTP 503)')
        adv.refresh()
        assert watch.quiet(0.3) == [] and watch.advert()[0].free_ram_mb == 1024
        adv.withdraw()
        watch.wait(REMOVED)
    finally:
        adv.withdraw()
        watch.close()


# --------------------------------------------------------------------------- cloudlet-advertise itself

CONFIG = """\
[cloudlet_discovery]
instance_name = {instance}
keystone_url = http://10.254.88.2:5100/v3
region = RegionOne
addresses = {address}
refresh_interval = 1
auth_type = password
auth_url = {auth_url}
username = nova
password = secret
project_name = service
user_domain_name = Default
project_domain_name = Default
"""


class Link:
    """A namespace zcx<pid> behind a veth pair; root end .1, namespace end .2 of a /30."""

    def __init__(self):
        tag = 'zcx%d' % (os.getpid() % 100000)
        slot = os.getpid() % 60
        self.host_address, self.address = '10.254.66.%d' % (4 * slot + 1), '10.254.66.%d' % (4 * slot + 2)
        self.link = netns_link.NetnsLink(tag, tag + '-r', tag + '-n', self.host_address, self.address)

    def __enter__(self):
        self.link.down()
        self.link.up()
        return self

    def __exit__(self, *exc):
        self.link.down()


def _run_advertise(tmp_path, instance, address, auth_url, namespace=None):
    config = tmp_path / 'cloudlet-advertise.conf'
    config.write_text(CONFIG.format(instance=instance, address=address, auth_url=auth_url))
    argv = [sys.executable, '-m', 'cloudlet_cmd.advertise', '--config-file', str(config),
            '--log-file', str(tmp_path / 'advertise.log')]
    if namespace:
        argv = ['ip', 'netns', 'exec', namespace] + argv
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _exercise(tmp_path, cloud, watch, process):
    """Added with the cloud's numbers, Removed on SIGTERM, exit 0 (updates: the test above)."""
    try:
        watch.wait(ADDED, timeout=4.5)
        seen, info = watch.advert()
        assert seen == advert.Advert('http://10.254.88.2:5100/v3', 'RegionOne', '1.2', ('abababababab',),
                                     free_ram_mb=8192 - 512 - 2048, free_vcpus=4 * 2 - 1)
        assert info.port == 5100
        process.send_signal(signal.SIGTERM)
        watch.wait(REMOVED, timeout=3)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / 'advertise.log').read_text()
    assert 'withdrew %s' % watch.name in log and 'stopped (SIGTERM)' in log


def _cloud(address):
    cloud = fake_cloud.FakeCloud(address)
    cloud.providers = {'rp1': ({'MEMORY_MB': {'total': 8192, 'reserved': 512, 'allocation_ratio': 1.0},
                                'VCPU': {'total': 2, 'reserved': 0, 'allocation_ratio': 4.0}},
                               {'MEMORY_MB': 2048, 'VCPU': 1})}
    cloud.bases = [('ab' * 32, 'ubuntu'), ('cd' * 32, 'uploading', 'saving')]
    return cloud


@needs_loopback_multicast
def test_cloudlet_advertise_on_loopback(tmp_path):
    instance = unique_name()
    cloud = _cloud('127.0.0.1')
    watch = Watch('127.0.0.1', instance)
    try:
        process = _run_advertise(tmp_path, instance, '127.0.0.1', cloud.keystone_url)
        _exercise(tmp_path, cloud, watch, process)
    finally:
        watch.close()
        cloud.close()
    # It read through the catalog's internal endpoints, as the service user.
    assert ('POST', '/v3/auth/tokens') in cloud.paths and ('GET', '/compute/v2.1/os-cloudlet') in cloud.paths


@pytest.mark.skipif(os.geteuid() != 0, reason='making a network namespace and a veth pair needs root')
def test_cloudlet_advertise_in_a_namespace_is_seen_over_the_veth(tmp_path):
    """box2's arrangement: the advertiser in the namespace, the browser and the APIs outside."""
    instance = unique_name()
    with Link() as link:
        cloud = _cloud(link.host_address)
        watch = Watch(link.host_address, instance)
        try:
            process = _run_advertise(tmp_path, instance, link.address, cloud.keystone_url,
                                     namespace=link.link.namespace)
            _exercise(tmp_path, cloud, watch, process)
        finally:
            watch.close()
            cloud.close()
