"""Base VMs: what is cached on a cloudlet, its identity, its package.

A base VM directory holds:

    manifest.json   versioned description (see doc/base-vm-package.md)
    disk.raw        the base disk, raw
    memory.save     the libvirt save image (memory snapshot) of the running base
    disk.hashes     SHA-256 per 4 KiB disk chunk
    memory.pages    one record per RAM page of memory.save
    kernel, initrd  only for a base whose domain boots a kernel directly
                    (libvirt <os><kernel>): QEMU opens them even to restore
                    the memory, and boots them again on a reboot

and, on a host that restored the base over its RAM file (ramfile.py), the
host-local memory.ram, memory.ram.index and memory.ram.json: derived from
memory.save, not part of the base's identity or its package.

The base identity is a digest over the disk content, the memory snapshot and
what a restore has to match (machine type, CPU, devices: `domainxml.abi_summary`),
so an overlay can never be applied to a base it was not made against. The
boot files are not part of it: the kernel that runs is in the memory
snapshot already, and a base keeps its identity (and its overlays) whether or
not its package carries them.
"""

import hashlib
import json
import os
import shutil
import time
import zipfile
import zlib

from cloudlet_engine import atomic
from cloudlet_engine import chunks
from cloudlet_engine import domainxml
from cloudlet_engine import errors
from cloudlet_engine import migstream
from cloudlet_engine import savefile

MANIFEST = 'manifest.json'
MANIFEST_FORMAT = 'openstack-cloudlet-base'
# Version 2 adds the boot files and is written only for bases that have them:
# every other base stays version 1, readable by engines that know only
# version 1, and those refuse a base with boot files instead of dropping them.
PLAIN_VERSION, BOOT_VERSION = 1, 2
MANIFEST_VERSION = BOOT_VERSION          # the newest this engine reads and writes
DISK, MEMORY, DISK_HASHES, MEMORY_PAGES = 'disk.raw', 'memory.save', 'disk.hashes', 'memory.pages'
FILES = (DISK, MEMORY, DISK_HASHES, MEMORY_PAGES)
# Each stored under the name of its libvirt <os> element.
KERNEL, INITRD = domainxml.BOOT_TAGS
BOOT_FILES = (KERNEL, INITRD)
MAX_MANIFEST_BYTES = 1 << 20


def compute_base_id(disk_hashes_sha256, memory_sha256, abi_digest):
    identity = {'disk_chunks_sha256': disk_hashes_sha256, 'memory_sha256': memory_sha256,
                'abi_digest': abi_digest}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class BaseVM:
    """A base VM directory; indexes are loaded on first use."""

    def __init__(self, path):
        self.path = path
        manifest_path = os.path.join(path, MANIFEST)
        try:
            with open(manifest_path, 'rb') as f:
                raw = f.read(MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            raise errors.BaseVMError('no base VM at %s: %s' % (path, exc.strerror))
        self.manifest = parse_manifest(raw, manifest_path)
        for name in all_files(self.manifest):
            if not os.path.isfile(os.path.join(path, name)):
                raise errors.BaseVMError('base VM at %s lacks %s' % (path, name))
        self._disk_hashes = None
        self._memory = None
        self._disk_index = None

    @property
    def base_id(self):
        return self.manifest['base_id']

    @property
    def name(self):
        return self.manifest.get('name', '')

    @property
    def disk_path(self):
        return os.path.join(self.path, DISK)

    @property
    def memory_path(self):
        return os.path.join(self.path, MEMORY)

    @property
    def disk_size(self):
        return self.manifest['disk']['size']

    @property
    def memory_size(self):
        return self.manifest['memory']['size']

    @property
    def abi(self):
        return self.manifest['abi']

    def boot_files(self):
        """{'kernel': path, 'initrd': path} of the base's own boot files; {} when it has none."""
        return {name: os.path.join(self.path, name) for name in boot_file_names(self.manifest)}

    @property
    def kernel_cmdline(self):
        """The command line its kernel boots with (None without boot files or without a <cmdline>)."""
        return (self.manifest.get('boot') or {}).get('cmdline')

    def disk_digest(self, offset):
        """SHA-256 of the base disk chunk at `offset` (None past the end)."""
        hashes = self._load_disk_hashes()
        index = offset // chunks.CHUNK
        if index * 32 >= len(hashes):
            return None
        return hashes[index * 32:index * 32 + 32]

    def _load_disk_hashes(self):
        if self._disk_hashes is None:
            with open(os.path.join(self.path, DISK_HASHES), 'rb') as f:
                self._disk_hashes = f.read()
        return self._disk_hashes

    def disk_index(self):
        """digest -> first base disk offset holding it (zero chunks left out)."""
        if self._disk_index is None:
            hashes = self._load_disk_hashes()
            index = {}
            for i in range(len(hashes) // 32 - 1, -1, -1):
                index[hashes[i * 32:i * 32 + 32]] = i * chunks.CHUNK
            index.pop(chunks.ZERO_DIGEST, None)
            self._disk_index = index
        return self._disk_index

    def memory_index(self):
        """(page key -> (offset, digest), digest -> offset) over the base memory pages."""
        if self._memory is None:
            with open(os.path.join(self.path, MEMORY_PAGES), 'rb') as f:
                records = f.read()
            blocks = self.manifest['memory']['blocks']
            by_key, by_digest = {}, {}
            for offset, addr, block, digest in chunks.iter_memory_records(records):
                by_key[migstream.page_key(blocks[block], addr)] = (offset, digest)
                by_digest.setdefault(digest, offset)
            by_digest.pop(chunks.ZERO_DIGEST, None)
            self._memory = (by_key, by_digest)
        return self._memory

    def describe(self):
        m = self.manifest
        return {'base_id': m['base_id'], 'name': m.get('name'), 'created_at': m.get('created_at'),
                'disk_size': m['disk']['size'], 'memory_size': m['memory']['size'],
                'memory_mib': m['abi'].get('memory_kib', 0) // 1024, 'vcpus': m['abi'].get('vcpus'),
                'machine': m['abi'].get('machine'), 'abi_digest': m['abi_digest'],
                'boot_files': list(boot_file_names(m)), 'path': self.path}


def parse_manifest(raw, where):
    if len(raw) > MAX_MANIFEST_BYTES:
        raise errors.BaseVMError('%s is larger than %d bytes' % (where, MAX_MANIFEST_BYTES))
    try:
        manifest = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.BaseVMError('%s is not valid JSON: %s' % (where, exc))
    if not isinstance(manifest, dict) or manifest.get('format') != MANIFEST_FORMAT:
        raise errors.BaseVMError('%s is not an openstack-cloudlet base manifest' % where)
    if manifest.get('version') not in (PLAIN_VERSION, BOOT_VERSION):
        raise errors.BaseVMError('%s has version %r; this engine reads versions %d and %d'
                                 % (where, manifest.get('version'), PLAIN_VERSION, BOOT_VERSION))
    _check_boot(manifest, where)
    try:
        for name in all_files(manifest):
            entry = manifest['files'][name]
            if not isinstance(entry['size'], int) or not isinstance(entry['sha256'], str):
                raise TypeError(name)
        int(manifest['base_id'], 16)
        manifest['disk']['size'] + manifest['memory']['size']
        list(manifest['memory']['blocks'])
        manifest['abi']['machine']
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.BaseVMError('%s is incomplete or malformed (%s)' % (where, exc))
    return manifest


def _check_boot(manifest, where):
    """The optional `boot` entry: {"files": ["kernel"] or ["kernel", "initrd"], "cmdline": str or null}."""
    boot = manifest.get('boot')
    if boot is None:
        return
    if manifest['version'] < BOOT_VERSION:
        raise errors.BaseVMError('%s: a version %d manifest has no boot files' % (where, manifest['version']))
    files = boot.get('files') if isinstance(boot, dict) else None
    if files not in ([KERNEL], [KERNEL, INITRD]):
        raise errors.BaseVMError('%s: boot files %r are not ["kernel"] or ["kernel", "initrd"]'
                                 % (where, files))
    if not isinstance(boot.get('cmdline'), (str, type(None))):
        raise errors.BaseVMError('%s: the kernel command line is not a string' % where)


def boot_file_names(manifest):
    """The boot files a (parsed) manifest lists: (), ('kernel',) or ('kernel', 'initrd')."""
    return tuple((manifest.get('boot') or {}).get('files', ()))


def all_files(manifest):
    """Every file of the base besides the manifest: the four of every base, then its boot files."""
    return FILES + boot_file_names(manifest)


def build_base(workdir, disk_raw_path, memory_save_path, name, progress=None, boot_files=None):
    """Index a disk image and a memory snapshot in `workdir`; write the manifest.

    The two files are moved into `workdir` (if not already there). `boot_files`
    ({'kernel': path, 'initrd': path}) are copied in (the domain they come from
    may still use them): all the memory snapshot's domain boots, or none.
    Returns a BaseVM.
    """
    image = savefile.read_save_image(memory_save_path)
    abi = domainxml.abi_summary(image.xml)
    boot_names = _boot_names(boot_files or {}, image.xml)
    for src, dst in ((disk_raw_path, DISK), (memory_save_path, MEMORY)):
        _put(src, os.path.join(workdir, dst), shutil.move)
    for boot_name in boot_names:
        _put(boot_files[boot_name], os.path.join(workdir, boot_name), shutil.copyfile)
    disk_hashes = chunks.hash_disk(os.path.join(workdir, DISK), progress)
    memory_pages, blocks = chunks.hash_memory(os.path.join(workdir, MEMORY), progress)
    for name_, data in ((DISK_HASHES, disk_hashes), (MEMORY_PAGES, memory_pages)):
        with open(os.path.join(workdir, name_), 'wb') as f:
            f.write(data)
    files = {}
    for file_name in FILES + boot_names:
        path = os.path.join(workdir, file_name)
        files[file_name] = {'size': os.path.getsize(path), 'sha256': chunks.sha256_file(path)}
    abi_digest = domainxml.abi_digest(image.xml)
    manifest = {
        'format': MANIFEST_FORMAT, 'version': BOOT_VERSION if boot_names else PLAIN_VERSION, 'name': name,
        'base_id': compute_base_id(files[DISK_HASHES]['sha256'], files[MEMORY]['sha256'], abi_digest),
        'created_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'disk': {'size': files[DISK]['size'], 'chunk_size': chunks.CHUNK},
        'memory': {'size': files[MEMORY]['size'], 'blocks': blocks},
        'abi': abi, 'abi_digest': abi_digest, 'files': files,
    }
    if boot_names:
        manifest['boot'] = {'files': list(boot_names), 'cmdline': domainxml.kernel_cmdline(image.xml)}
    atomic.write_json(os.path.join(workdir, MANIFEST), manifest)
    return BaseVM(workdir)


def _put(src, dst, transfer):
    if os.path.abspath(src) != os.path.abspath(dst):
        transfer(src, dst)


def _boot_names(boot_files, snapshot_xml):
    """The names of the boot files to store, in BOOT_FILES order; checked against the snapshot's domain."""
    if not boot_files:
        return ()
    booted = domainxml.direct_boot_files(snapshot_xml)
    if set(boot_files) != set(booted):
        raise errors.BaseVMError('boot files %s given, but the memory snapshot boots %s'
                                 % ('+'.join(sorted(boot_files)),
                                    '+'.join(sorted(booted)) or 'from its disk'))
    return tuple(name for name in BOOT_FILES if name in boot_files)


def restore_boot_files(snapshot_xml, base_name, *sources):
    """{'kernel': path, 'initrd': path} for a restore of `snapshot_xml`: the first source holding each.

    QEMU opens the kernel and initrd of a direct kernel boot even to restore
    the memory, so every boot file the snapshot's domain names needs a file
    that exists. `sources` are {'kernel': path, ...} maps in order of
    preference; a path counts only where its file exists. None found: a
    BaseVMError naming the base and the file, before libvirt is asked.
    """
    chosen = {}
    for tag, recorded in domainxml.direct_boot_files(snapshot_xml).items():
        found = [source[tag] for source in sources if source.get(tag) and os.path.isfile(source[tag])]
        if not found:
            raise errors.BaseVMError('base %s needs the %s %s, which is not on this host'
                                     % (base_name, tag, recorded))
        chosen[tag] = found[0]
    return chosen


def export_package(base, package_path, progress=None):
    """Write a base VM package: a zip of the manifest, the four files and the boot files."""
    tmp = package_path + '.part'
    try:
        with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_DEFLATED, compresslevel=1,
                             allowZip64=True) as zf:
            zf.write(os.path.join(base.path, MANIFEST), MANIFEST)
            for name in all_files(base.manifest):
                if progress:
                    progress.update('exporting %s' % name, 0, None)
                zf.write(os.path.join(base.path, name), name)
        os.replace(tmp, package_path)
    except BaseException:
        _unlink(tmp)
        raise
    return package_path


def import_package(store, package_path, progress=None):
    """Validate a base VM package and add it to `store`; return the BaseVM.

    Idempotent: importing a base that is already cached returns it unchanged
    (it only gains the boot files the package carries, if it had none).
    Every file is checked against the manifest's size and SHA-256, a member
    the manifest does not list is refused, and the hash lists and the base id
    are recomputed, so a package can't lie.
    """
    try:
        zf = zipfile.ZipFile(package_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise errors.BaseVMError('%s is not a base VM package: %s' % (package_path, exc))
    with zf:
        try:
            info = zf.getinfo(MANIFEST)
        except KeyError:
            raise errors.BaseVMError('%s has no %s' % (package_path, MANIFEST))
        if info.file_size > MAX_MANIFEST_BYTES:
            raise errors.BaseVMError('%s: manifest too large' % package_path)
        manifest = parse_manifest(zf.read(MANIFEST), '%s:%s' % (package_path, MANIFEST))
        unexpected = sorted(set(zf.namelist()) - {MANIFEST, *all_files(manifest)})
        if unexpected:
            raise errors.BaseVMError('%s holds members its manifest does not list: %s'
                                     % (package_path, ', '.join(unexpected)))
        existing = store.path(manifest['base_id'])
        if os.path.isdir(existing) and (BaseVM(existing).boot_files() or not boot_file_names(manifest)):
            return BaseVM(existing)
        workdir = store.new_workdir()
        try:
            for name in all_files(manifest):
                _extract_checked(zf, name, manifest['files'][name], workdir, progress)
            boot_files = {name: os.path.join(workdir, name) for name in boot_file_names(manifest)}
            base = build_base(workdir, os.path.join(workdir, DISK), os.path.join(workdir, MEMORY),
                              manifest.get('name', ''), progress, boot_files)
            if base.base_id != manifest['base_id']:
                raise errors.BaseVMError('%s: content does not match its base id %s'
                                         % (package_path, manifest['base_id']))
            return store.adopt(workdir, base)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise


def _extract_checked(zf, name, expected, workdir, progress):
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise errors.BaseVMError('package lacks %s' % name)
    try:
        _copy_member(zf, info, name, expected, workdir, progress)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:   # bad CRC, bad deflate stream, cut file
        raise errors.BaseVMError('package member %s is damaged: %s' % (name, exc))


def _copy_member(zf, info, name, expected, workdir, progress):
    if info.file_size != expected['size']:
        raise errors.BaseVMError('%s: %d bytes in the package, manifest says %d'
                                 % (name, info.file_size, expected['size']))
    h, done = hashlib.sha256(), 0
    with zf.open(info) as src, open(os.path.join(workdir, name), 'wb') as dst:
        while True:
            block = src.read(4 << 20)
            if not block:
                break
            done += len(block)
            if done > expected['size']:
                raise errors.BaseVMError('%s is larger than its manifest says' % name)
            h.update(block)
            # Keep zero runs as holes: base disks are mostly empty.
            if block.count(0) == len(block):
                dst.seek(len(block), os.SEEK_CUR)
            else:
                dst.write(block)
            if progress:
                progress.update('importing %s' % name, done, expected['size'])
        dst.truncate(done)
    if h.hexdigest() != expected['sha256']:
        raise errors.BaseVMError('%s: SHA-256 mismatch with the manifest' % name)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
