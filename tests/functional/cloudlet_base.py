"""The functional test harness: nova's whole stack in-process, CloudletDriver over fakelibvirt.

`CloudletTestBase` is nova's `ServersTestBase` (API, conductor, scheduler,
placement fixture, compute) with:

- the CloudletDriver loaded the way nova loads it (`compute_driver =
  cloudlet.CloudletDriver` -> `nova.virt.cloudlet`): the installed shim if
  there is one, else this repository's `nova/virt/cloudlet/__init__.py`;
- fakelibvirt extended with save/restore (fake_libvirt_save.py);
- nova's GlanceFixture keeping the data of uploads (it drops them);
- nova's mocked-out `_create_image` writing an instance's kernel and ramdisk
  (kernel_id / ramdisk_id) into its directory, as nova does;
- a synthetic base VM (fake save image + small raw disk, built by the engine)
  imported into Glance as the four linked images of the Glance model.

Runs in native-threading mode (OS_NOVA_DISABLE_EVENTLET_PATCHING=1), as nova 34 services do.
"""

import importlib.util
import io
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time
import warnings

import fixtures
from sqlalchemy import exc as sqlalchemy_exc

import nova.conf
from nova import context as nova_context
from nova import objects
from nova.tests.functional.libvirt import base
from nova.virt.libvirt import utils as libvirt_utils

from cloudlet_engine import apply
from cloudlet_engine import basevm
from cloudlet_engine import create
from cloudlet_engine import format as overlay_format
from cloudlet_engine import ramfile
from cloudlet_engine import savefile
from cloudlet_glance import images as glance_images
from cloudlet_glance import model
from cloudlet_nova import conf as cloudlet_conf
from tests.fixtures import boot_files as fake_boot_files
from tests.fixtures import fake_savefile
from tests.fixtures import http_server
from tests.functional import fake_libvirt_save

CONF = nova.conf.CONF
REPO = pathlib.Path(__file__).resolve().parents[2]
PAGE = 4096
MEMORY_MIB, VCPUS = 256, 1

# The domain XML a base's memory snapshot carries: what a nova instance of a
# 256 MB / 1 vCPU flavor looks like to libvirt, captured without NICs.
BASE_XML = """<domain type='kvm'>
  <name>instance-000000ff</name>
  <uuid>0b3a8e2c-1111-4222-8333-000000000001</uuid>
  <metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
    <nova:name>capture-source</nova:name></nova:instance></metadata>
  <memory unit='KiB'>%(memory_kib)d</memory>
  <vcpu>%(vcpus)d</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-2.11'>hvm</type>
    %(boot)s
  </os>
  <features><acpi/><apic/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/nova/instances/0b3a8e2c-1111-4222-8333-000000000001/disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'>
      <log file='/var/lib/nova/instances/0b3a8e2c-1111-4222-8333-000000000001/console.log' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='%(balloon)s'/>
  </devices>
</domain>
"""
DISK_BOOT = "<boot dev='hd'/>"
# What nova writes for an instance of an AMI-style image (kernel_id, ramdisk_id).
KERNEL_BOOT = """<kernel>/var/lib/nova/instances/0b3a8e2c-1111-4222-8333-000000000001/kernel</kernel>
    <initrd>/var/lib/nova/instances/0b3a8e2c-1111-4222-8333-000000000001/ramdisk</initrd>
    <cmdline>root=/dev/vda console=tty0 console=ttyS0</cmdline>"""


def _page(rng):
    return rng.randbytes(PAGE)


def guest_memory(pages):
    """{(block, addr): data} of a fake domain's pages, the main block under its
    stock name (restored over a RAM file, it is its backend's); zero pages as None.
    """
    return {(ramfile.BLOCK if block == ramfile.BACKEND_ID else block, addr): data
            for block, addr, data in pages}


class SyntheticBase:
    """A base VM built by the engine from a fake save image and a small raw disk."""

    def __init__(self, root, seed=1, name='test-base', memory_mib=MEMORY_MIB, vcpus=VCPUS,
                 disk_chunks=64, memory_pages=24, boots_kernel=False, with_boot_files=True, balloon='virtio'):
        """`boots_kernel`: a direct kernel boot, the base with its boot files unless not `with_boot_files`.

        `balloon`: the memballoon model; a base with one ('virtio', as nova's
        default instances) restores from its full memory image, one without
        ('none') from its RAM file.
        """
        self.root, self.name = root, name
        rng = random.Random(seed)
        self.rng = rng
        os.makedirs(root, exist_ok=True)
        disk = bytearray(disk_chunks * PAGE)
        for i in range(0, disk_chunks, 2):
            disk[i * PAGE:(i + 1) * PAGE] = _page(rng)
        self.disk = bytes(disk)
        self.xml = BASE_XML % {'memory_kib': memory_mib * 1024, 'vcpus': vcpus,
                               'boot': KERNEL_BOOT if boots_kernel else DISK_BOOT, 'balloon': balloon}
        self.pages = [('pc.ram', i * PAGE, _page(rng) if i % 4 else None) for i in range(memory_pages)]
        work = os.path.join(root, 'base-%s' % seed)
        os.makedirs(work)
        with open(os.path.join(work, 'disk.raw'), 'wb') as f:
            f.write(self.disk)
        fake_savefile.build_fake_save_image(os.path.join(work, 'memory.save'), self.xml, self.pages)
        boot_files = fake_boot_files.write_boot_files(work) if boots_kernel and with_boot_files else {}
        self.base = basevm.build_base(work, os.path.join(work, 'disk.raw'),
                                      os.path.join(work, 'memory.save'), name, boot_files=boot_files)

    def changed(self, seed=7):
        """A VM state derived from this base: (disk bytes, pages), a few chunks and pages changed."""
        rng = random.Random(seed)
        disk = bytearray(self.disk)
        for chunk in (3, 10, 11):
            disk[chunk * PAGE:(chunk + 1) * PAGE] = _page(rng)
        pages = list(self.pages)
        for i in (1, 2, 5):
            block, addr, _ = pages[i]
            pages[i] = (block, addr, _page(rng))
        return bytes(disk), pages

    def make_overlay(self, path, disk, pages):
        """Write an overlay (engine create_overlay) of the VM state (disk bytes, pages) to `path`."""
        work = path + '.work'
        os.makedirs(work)
        try:
            disk_path, memory_path = os.path.join(work, 'disk.raw'), os.path.join(work, 'memory.save')
            with open(disk_path, 'wb') as f:
                f.write(disk)
            fake_savefile.build_fake_save_image(memory_path, self.xml, pages)
            with open(path, 'wb') as out:
                create.create_overlay(self.base, disk_path, memory_path, out, 'zstd', workdir=work)
        finally:
            shutil.rmtree(work)
        return path


def store_uploads(glance):
    """Make nova's GlanceFixture keep uploaded data (its update() drops it), as Glance would."""
    original_update = glance.update

    def update(context, image_id, metadata, data=None, purge_props=False):
        image = original_update(context, image_id, metadata, data=None, purge_props=purge_props)
        if data is not None:
            blob = data.read()
            glance._imagedata[image_id] = blob
            image['size'] = len(blob)
            image['status'] = 'active'
        return image

    glance.update = update


def load_driver_shim():
    """`nova.virt.cloudlet` as nova will import it: the installed shim, else the repository's."""
    if importlib.util.find_spec('nova.virt.cloudlet') is not None:
        return
    spec = importlib.util.spec_from_file_location(
        'nova.virt.cloudlet', REPO / 'nova' / 'virt' / 'cloudlet' / '__init__.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules['nova.virt.cloudlet'] = module
    spec.loader.exec_module(module)


OverlayHTTPServer = http_server.DirectoryHTTPServer   # serves overlays for overlay_url


class CloudletTestBase(base.ServersTestBase):
    """nova's libvirt functional base, with CloudletDriver and a base VM in Glance."""

    # The memballoon of `self.synthetic`: with one (nova's default XML), it restores from its
    # full memory image; 'none' (the box's bases) over its RAM file.
    SYNTHETIC_BALLOON = 'virtio'

    microversion = 'latest'

    def setUp(self):
        cloudlet_conf.register_opts(CONF)
        load_driver_shim()
        self.fake_libvirt = self.useFixture(fake_libvirt_save.FakeLibvirtSaveRestore())
        super().setUp()
        # fakelibvirt makes no taps: nothing for restore.ensure_taps_up to look at.
        self.useFixture(fixtures.MonkeyPatch('cloudlet_nova.virt.restore._flags', lambda dev: None))
        # nova 34 + this venv's SQLAlchemy 2.1: nova's own instance lazy-loads
        # (notifications of pause, stop...) warn, and nova's WarningsFixture
        # makes that an error. Not ours; nova's gate pins SQLAlchemy < 2.1.
        warnings.filterwarnings('ignore', message=r'The noload\(\) option is deprecated',
                                category=sqlalchemy_exc.SADeprecationWarning)
        store_uploads(self.glance)
        # nova's base class mocks _create_image out; fetch kernel and ramdisk as nova's does.
        # (A bound method as class attribute stays bound to the test: no driver argument.)
        self.useFixture(fixtures.MonkeyPatch('nova.virt.libvirt.LibvirtDriver._create_image',
                                             self.create_image_as_nova))
        self.flags(overlay_url_allowed_hosts=['127.0.0.1'], group='cloudlet')
        # The overlay servers listen on 127.0.0.1, which the outbound policy refuses by default.
        self.flags(outbound_allowed_networks=['127.0.0.1/32'], group='cloudlet')
        self.work = self.useFixture(fixtures.TempDir()).path
        self.admin_context = nova_context.get_admin_context()
        self.images = glance_images.NovaImages(self.admin_context)
        self.synthetic = SyntheticBase(os.path.join(self.work, 'synthetic'), balloon=self.SYNTHETIC_BALLOON)
        self.base_images = self.upload_base(self.synthetic)
        self.flavor_id = self._create_flavor(name='m1.cloudlet', memory_mb=MEMORY_MIB, vcpu=VCPUS,
                                             disk=1, ephemeral=0)
        self.start_compute('compute1')

    def _setup_services(self):
        # The wheel installs api-paste.ini under <venv>/etc (gotcha 5).
        self.flags(api_paste_config=os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
                   group='wsgi')
        super()._setup_services()

    def _setup_compute_service(self):
        self.flags(compute_driver='cloudlet.CloudletDriver')

    def create_image_as_nova(self, context, instance, disk_mapping, *args, **kwargs):
        """What LibvirtDriver._create_image does that the tests need: <instance dir>/kernel and ramdisk."""
        if instance.kernel_id:
            instance_dir = libvirt_utils.get_instance_path(instance)
            os.makedirs(instance_dir, exist_ok=True)
            for file_name, image_id in (('kernel', instance.kernel_id), ('ramdisk', instance.ramdisk_id)):
                if image_id:
                    with open(os.path.join(instance_dir, file_name), 'wb') as f:
                        f.write(self.glance._imagedata.get(image_id, b''))
        return False, False

    # -- Glance -------------------------------------------------------------------

    def upload_base(self, synthetic):
        package = os.path.join(self.work, '%s-%s.zip' % (synthetic.name, synthetic.base.base_id[:8]))
        basevm.export_package(synthetic.base, package)
        return model.import_base_package(self.images, package, name=synthetic.name,
                                         visibility='public', workdir=self.work)

    def upload_overlay(self, path, base_id, name='overlay'):
        return model.upload_overlay(self.images, path, name, base_id)

    def image_data(self, image_id):
        return self.glance._imagedata[image_id]

    # -- servers ------------------------------------------------------------------

    def create_cloudlet_server(self, metadata=None, image_id=None, flavor_id=None, networks='none',
                               expected_state='ACTIVE'):
        body = self._build_server(image_uuid=image_id or self.base_images.disk_id,
                                  flavor_id=flavor_id or self.flavor_id, networks=networks)
        if metadata:
            body['metadata'] = metadata
        server = self.api.post_server({'server': body})
        return self._wait_for_state_change(server, expected_state)

    def create_image(self, server, name, metadata=None):
        """createImage (a cloudlet capture when metadata has cloudlet_type); the image id."""
        body = {'createImage': {'name': name}}
        if metadata is not None:
            body['createImage']['metadata'] = metadata
        image_id = self.api.post_server_action(server['id'], body)['image_id']
        self.wait_for_task(server)
        return image_id

    def create_image_ok(self, server, name, metadata=None):
        image_id = self.create_image(server, name, metadata)
        if image_id not in self.glance.images:
            self.fail('capture failed: %s\n%s'
                      % (self.latest_fault(server), self.latest_fault_details(server)))
        return image_id

    def wait_for_task(self, server, status='ACTIVE'):
        """Until the server's task (snapshot, shelve... they run in background threads) is over."""
        return self._wait_for_server_parameter(
            server, {'OS-EXT-STS:task_state': None, 'status': status})

    def driver(self, hostname='compute1'):
        return self.computes[hostname].driver

    def domain(self, server, hostname='compute1'):
        # driver._host: nova exposes no public accessor for the fake libvirt connection.
        return self.driver(hostname)._host.get_connection().lookupByUUIDString(server['id'])

    def instance_dir(self, server):
        return os.path.join(CONF.instances_path, server['id'])

    def instance_name(self, server):
        return self.admin_api.get_server(server['id'])['OS-EXT-SRV-ATTR:instance_name']

    def latest_fault(self, server):
        faults = objects.InstanceFaultList.get_by_instance_uuids(self.admin_context, [server['id']])
        return faults[0].message if faults else None

    def latest_fault_details(self, server):
        faults = objects.InstanceFaultList.get_by_instance_uuids(self.admin_context, [server['id']])
        return faults[0].details if faults else None

    def restores_of(self, server):
        return [r for r in self.fake_libvirt.restores if r[1] == server['id']]

    def boots_of(self, server):
        return [b for b in self.fake_libvirt.boots if b[1] == server['id']]

    def disk_bytes(self, path):
        """The content of a disk image (qcow2 with its backing chain, or raw)."""
        out = os.path.join(self.work, 'disk-%d.raw' % time.monotonic_ns())
        subprocess.run(['qemu-img', 'convert', '-O', 'raw', path, out], check=True, capture_output=True)
        try:
            with open(out, 'rb') as f:
                return f.read()
        finally:
            os.unlink(out)

    def write_disk_chunk(self, path, chunk, data):
        """Write one 4 KiB chunk into a qcow2 disk, as the guest would."""
        src = os.path.join(self.work, 'chunk-%d' % chunk)
        with open(src, 'wb') as f:
            f.write(data)
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -s %s %d %d' % (src, chunk * PAGE, PAGE),
                        path], check=True, capture_output=True)

    def apply_overlay_blob(self, blob, base):
        """Apply an overlay to a base in a scratch dir: (launch disk bytes, launch memory header, pages)."""
        launch_dir = os.path.join(self.work, 'check-%d' % time.monotonic_ns())
        launch = apply.apply_overlay(base, io.BytesIO(blob), launch_dir)
        header = savefile.read_save_image(launch.memory_path)
        pages = fake_libvirt_save.read_pages(launch.memory_path, header)
        disk = self.disk_bytes(launch.disk_path)
        shutil.rmtree(launch_dir)
        return disk, header, pages

    def assert_no_launch_files(self, server):
        instance_dir = self.instance_dir(server)
        if os.path.isdir(instance_dir):
            leftover = [n for n in os.listdir(instance_dir)
                        if n.startswith('cloudlet') or n in ('disk',)]
            self.assertEqual([], leftover)
        store = os.path.join(CONF.instances_path, '_cloudlet', 'bases')
        if os.path.isdir(store):
            self.assertEqual([], [n for n in os.listdir(store) if n.startswith('.incoming')])
        conn = self.driver()._host.get_connection()
        self.assertNotIn(server['id'], [d.UUIDString() for d in conn._vms.values()])

    @staticmethod
    def overlay_reader(blob):
        return overlay_format.OverlayReader(io.BytesIO(blob))


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on (now)."""
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
