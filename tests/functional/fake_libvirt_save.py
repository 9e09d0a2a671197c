"""FakeLibvirtSaveRestore: memory save and restore for nova's fakelibvirt, which has none.

nova's fake `Domain` and `Connection` (nova/tests/fixtures/libvirt.py) know
`managedSave` and `createWithFlags` but not `virDomainSaveFlags` /
`virConnectRestoreFlags`. This fixture adds them, with real save-image files:

- `Domain.saveFlags(path, dxml, flags)` writes a fake save image
  (tests/fixtures/fake_savefile.py: libvirt's header layout, a QEMU RAM
  stream) holding the domain's XML and its fake RAM (`dom._fake_pages`, a list
  of (block, addr, 4096 bytes or None for a zero page) that tests may change
  to simulate the guest), then stops the domain, as libvirt does;
- `Connection.restoreFlags(path, dxml, flags)` reads the XML from the file's
  header with the engine's `savefile.read_save_image`, takes the RAM from its
  stream (over the base's RAM file when the XML maps one, as QEMU would, the
  main block then named as its backend), and starts the domain from it (reusing a persistent definition with
  the same name and uuid, as libvirt does; refusing a clash), running or
  paused as the flags say. From a named pipe (a streamed handoff restore), it
  reads the pipe until its writer closes it, as QEMU's incoming migration
  does, and fails as QEMU's load does when the stream is cut short.

The XML a domain saves is the XML it was defined with (not fakelibvirt's
reduced XMLDesc), with its current NICs: an attached <interface> is added, a
detached one removed, so a save with NICs still plugged shows in the image,
as it would with libvirt. Every save, restore and boot is recorded on the
fixture (`saves`, `restores`, `boots`, and `piped`: the restores from a
pipe) for assertions.
"""

import os
import random
import stat

import fixtures
from lxml import etree

from nova.tests.fixtures import libvirt as fakelibvirt

from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import migstream
from cloudlet_engine import ramfile
from cloudlet_engine import savefile
from tests.fixtures import fake_savefile

VIR_DOMAIN_SAVE_BYPASS_CACHE = 1
VIR_DOMAIN_SAVE_RUNNING = 2
VIR_DOMAIN_SAVE_PAUSED = 4
PAGE = 4096


def default_pages(name, count=8):
    """Some RAM for a domain that was booted, not restored (deterministic per name)."""
    rng = random.Random(name)
    return [('pc.ram', i * PAGE, rng.randbytes(PAGE) if i % 3 else None) for i in range(count)]


def over_ram_file(ram_path, pages):
    """Guest RAM after loading `pages` over a RAM file mapped as block ramfile.BACKEND_ID.

    The file's pages first (None for a zero page), then the stream's records
    for that block laid over them; other blocks' records follow as they came.
    """
    with open(ram_path, 'rb') as f:
        data = f.read()
    main = {addr: data[addr:addr + PAGE] if any(data[addr:addr + PAGE]) else None
            for addr in range(0, len(data), PAGE)}
    others = []
    for block, addr, page in pages:
        if block == ramfile.BACKEND_ID:
            main[addr] = page
        else:
            others.append((block, addr, page))
    return [(ramfile.BACKEND_ID, addr, main[addr]) for addr in sorted(main)] + others


def read_pages(path, header):
    """The (block, addr, data or None) records of a save image's RAM stream."""
    pages = []
    with open(path, 'rb') as f:
        fd = f.fileno()
        for piece in migstream.iter_pages(f, header.stream_offset, header.file_size, include_zero=True):
            if isinstance(piece, migstream.ZeroPage):
                pages.append((piece.block, piece.addr, None))
            else:
                pages.append((piece.block, piece.addr, os.pread(fd, PAGE, piece.file_offset)))
    return pages


def _mac(iface_xml):
    mac = etree.fromstring(iface_xml.encode()).find('mac')
    return mac.get('address') if mac is not None else None


def _remember(dom, xml):
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    dom._fake_ifaces = [etree.tostring(i, encoding='unicode') for i in root.iterfind('devices/interface')]
    for iface in root.findall('devices/interface'):
        iface.getparent().remove(iface)
    dom._fake_xml = etree.tostring(root, encoding='unicode')
    if not hasattr(dom, '_fake_pages'):
        dom._fake_pages = default_pages(dom.name())


def live_xml(dom):
    """What libvirt would write into a save image: the defining XML with the current NICs."""
    root = etree.fromstring(dom._fake_xml.encode())
    devices = root.find('devices')
    for iface in dom._fake_ifaces:
        devices.append(etree.fromstring(iface.encode()))
    return etree.tostring(root, encoding='unicode')


def drain(pipe_path, directory):
    """QEMU loading a save image from a pipe: a file with all of it once its
    writer closed it (libvirtError, as QEMU's load fails, when it was cut short).
    """
    path = os.path.join(directory, 'drained-%d' % random.getrandbits(32))
    with open(pipe_path, 'rb') as pipe, open(path, 'wb') as out:
        while True:
            piece = pipe.read(1 << 20)
            if not piece:
                break
            out.write(piece)
    try:
        header = savefile.read_save_image(path)
        stats = migstream.ScanStats()
        for _record in migstream.walk_records(path, header.stream_offset, header.file_size, stats=stats):
            pass
        if stats.device_state_offset is None or stats.device_state_offset >= header.file_size:
            raise errors.SaveImageError('no device state')
    except errors.CloudletError as exc:
        os.unlink(path)
        raise fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError,
            'internal error: qemu unexpectedly closed the monitor: load of migration failed: '
            'Input/output error (%s)' % exc,
            error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR, error_domain=fakelibvirt.VIR_FROM_QEMU)
    return path


class FakeLibvirtSaveRestore(fixtures.Fixture):

    def setUp(self):
        super().setUp()
        self.saves, self.restores, self.boots = [], [], []
        self.pipe_dir = self.useFixture(fixtures.TempDir())
        self.piped = []       # the restores that read a named pipe
        for name, value in (('VIR_DOMAIN_SAVE_BYPASS_CACHE', VIR_DOMAIN_SAVE_BYPASS_CACHE),
                            ('VIR_DOMAIN_SAVE_RUNNING', VIR_DOMAIN_SAVE_RUNNING),
                            ('VIR_DOMAIN_SAVE_PAUSED', VIR_DOMAIN_SAVE_PAUSED)):
            if not hasattr(fakelibvirt, name):
                self.useFixture(fixtures.MonkeyPatch('nova.tests.fixtures.libvirt.' + name, value))
        fixture = self
        Connection, Domain = fakelibvirt.Connection, fakelibvirt.Domain
        orig_define = Connection.defineXML
        orig_create = Domain.createWithFlags
        orig_attach = Domain.attachDevice
        orig_detach = Domain.detachDevice

        def defineXML(conn, xml):
            dom = orig_define(conn, xml)
            _remember(dom, xml)
            return dom

        def createWithFlags(dom, flags):
            fixture.boots.append((dom.name(), dom.UUIDString()))
            return orig_create(dom, flags)

        def attachDeviceFlags(dom, xml, flags):
            # libvirt hot-plugs into paused domains too (nova restores paused
            # while it waits for Neutron); fakelibvirt only allows running ones.
            if flags & fakelibvirt.VIR_DOMAIN_AFFECT_LIVE and \
                    dom._state not in (fakelibvirt.VIR_DOMAIN_RUNNING, fakelibvirt.VIR_DOMAIN_PAUSED):
                raise fakelibvirt.make_libvirtError(
                    fakelibvirt.libvirtError, 'AFFECT_LIVE only allowed for active domains!',
                    error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR,
                    error_domain=fakelibvirt.VIR_FROM_QEMU)
            result = orig_attach(dom, xml)
            if xml.lstrip().startswith('<interface') and hasattr(dom, '_fake_ifaces'):
                dom._fake_ifaces.append(xml)
            return result

        def detachDeviceFlags(dom, xml, flags):
            result = orig_detach(dom, xml)
            if xml.lstrip().startswith('<interface') and hasattr(dom, '_fake_ifaces'):
                mac = _mac(xml)
                dom._fake_ifaces = [i for i in dom._fake_ifaces if _mac(i) != mac]
            return result

        def saveFlags(dom, path, dxml=None, flags=0):
            if dom._state not in (fakelibvirt.VIR_DOMAIN_RUNNING, fakelibvirt.VIR_DOMAIN_PAUSED):
                raise fakelibvirt.make_libvirtError(
                    fakelibvirt.libvirtError, 'Requested operation is not valid: domain is not running',
                    error_code=fakelibvirt.VIR_ERR_OPERATION_INVALID,
                    error_domain=fakelibvirt.VIR_FROM_QEMU)
            xml = dxml or live_xml(dom)
            fake_savefile.build_fake_save_image(
                path, xml, dom._fake_pages,
                was_running=int(dom._state == fakelibvirt.VIR_DOMAIN_RUNNING))
            fixture.saves.append((dom.name(), dom.UUIDString(), path))
            dom._state = fakelibvirt.VIR_DOMAIN_SHUTOFF
            dom._connection._mark_not_running(dom)
            return 0

        def restoreFlags(conn, path, dxml=None, flags=0):
            restored_from = path
            if stat.S_ISFIFO(os.stat(path).st_mode):
                path = drain(path, fixture.pipe_dir.path)
                fixture.piped.append(restored_from)
            header = savefile.read_save_image(path)
            xml = dxml or header.xml
            root = etree.fromstring(xml.encode())
            name, uuid = root.findtext('name'), root.findtext('uuid')
            dom = conn._vms.get(name)
            if dom is not None:
                if dom.UUIDString() != uuid:
                    raise fakelibvirt.make_libvirtError(
                        fakelibvirt.libvirtError,
                        "operation failed: domain '%s' already exists with uuid %s"
                        % (name, dom.UUIDString()),
                        error_code=fakelibvirt.VIR_ERR_OPERATION_FAILED,
                        error_domain=fakelibvirt.VIR_FROM_QEMU)
                if dom.isActive():
                    raise fakelibvirt.make_libvirtError(
                        fakelibvirt.libvirtError,
                        "Requested operation is not valid: domain '%s' is already active" % name,
                        error_code=fakelibvirt.VIR_ERR_OPERATION_INVALID,
                        error_domain=fakelibvirt.VIR_FROM_QEMU)
                dom._def = dom._parse_definition(xml)
            else:
                dom = fakelibvirt.Domain(connection=conn, running=False, transient=True, xml=xml)
                conn._vms[name] = dom
            _remember(dom, xml)
            dom._fake_pages = read_pages(path, header)
            ram_path = domainxml.ram_file(xml, ramfile.BACKEND_ID)
            if ram_path is not None:
                # QEMU maps the file as the main block, then loads the stream over it.
                dom._fake_pages = over_ram_file(ram_path, dom._fake_pages)
            dom._has_saved_state = False
            dom._state = (fakelibvirt.VIR_DOMAIN_PAUSED if flags & VIR_DOMAIN_SAVE_PAUSED
                          else fakelibvirt.VIR_DOMAIN_RUNNING)
            conn._mark_running(dom)
            fixture.restores.append((name, uuid, restored_from, flags))
            return 0

        def saveImageGetXMLDesc(conn, path, flags=0):
            return savefile.read_save_image(path).xml

        for cls, name, func in ((Connection, 'defineXML', defineXML),
                                (Domain, 'createWithFlags', createWithFlags),
                                (Domain, 'attachDeviceFlags', attachDeviceFlags),
                                (Domain, 'detachDeviceFlags', detachDeviceFlags),
                                (Domain, 'saveFlags', saveFlags),
                                (Connection, 'restoreFlags', restoreFlags),
                                (Connection, 'saveImageGetXMLDesc', saveImageGetXMLDesc)):
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.%s.%s' % (cls.__name__, name), func))
