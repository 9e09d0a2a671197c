"""The Glance model: a base VM as four (or six) linked images, an overlay as one hidden image.

A base VM (doc/base-vm-package.md) is stored as:

    <name>            the base disk (raw/bare): cloudlet_type=cloudlet_base_disk, the base
                      identity, the ids of its companions, flavor hints, the trait
                      that schedules it onto cloudlet hosts, min_ram/min_disk
    <name>-memory     memory snapshot  } hidden (os_hidden=true), cloudlet_type and
    <name>-diskhash   disk hash list   } cloudlet_base_id set; same visibility as the
    <name>-memhash    memory page list } disk, or whoever boots the disk can't fetch them
    <name>-kernel     kernel (aki)     } boot companions, only for a base that boots a
    <name>-ramdisk    initrd (ari)     } kernel directly

The disk image names the boot companions with nova's own kernel_id and
ramdisk_id (and the command line with os_command_line), so nova fetches them
into the instance directory as for any AMI-style image, and the restore finds
them there. A base captured through nova before bases carried boot files has
kernel_id/ramdisk_id too, inherited from the image of the server it was
captured from: images it shares, not its companions, so delete_base leaves
them alone, and export_base_package downloads them as its boot files.

The disk image is created last, once its companions are uploaded, and is the
only handle users see: a base whose disk image exists is complete. Every
property name comes from `cloudlet_glance.properties`; `images` is any
`cloudlet_glance.images.ImageService`. Glance is trusted for bookkeeping, not
for content: whatever is downloaded is re-indexed by the engine and its base
id compared with the image's cloudlet_base_id.
"""

import dataclasses
import logging
import math
import os
import shutil
import tempfile
import uuid
import zipfile
import zlib

from cloudlet_engine import basestore
from cloudlet_engine import basevm
from cloudlet_engine import chunks
from cloudlet_engine import domainxml
from cloudlet_engine import errors as engine_errors
from cloudlet_engine import format as overlay_format
from cloudlet_engine import savefile
from cloudlet_glance import errors
from cloudlet_glance import properties as props
from cloudlet_glance import streams

LOG = logging.getLogger(__name__)

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Companion:
    """One of the hidden images of a base, besides its disk image."""
    kind: str                   # its cloudlet_type
    file_name: str              # the file of the engine's base directory it holds
    suffix: str                 # its image is named <base name>-<suffix>
    id_key: str                 # the base disk image property naming it
    disk_format: str = 'raw'

    @property
    def container_format(self):
        # Glance wants an aki or ari image to be one in both formats.
        return 'bare' if self.disk_format == 'raw' else self.disk_format


COMPANIONS = (
    Companion(props.BASE_MEMORY, basevm.MEMORY, 'memory', props.BASE_MEMORY),
    Companion(props.BASE_DISK_HASH, basevm.DISK_HASHES, 'diskhash',
              props.BASE_DISK_HASH),
    Companion(props.BASE_MEMORY_HASH, basevm.MEMORY_PAGES, 'memhash',
              props.BASE_MEMORY_HASH),
)
# A base has these only if it boots a kernel directly; its disk image may
# also name shared images there (see the module doc).
BOOT_COMPANIONS = (
    Companion(props.BASE_KERNEL, basevm.KERNEL, 'kernel', props.KERNEL_ID, 'aki'),
    Companion(props.BASE_RAMDISK, basevm.INITRD, 'ramdisk', props.RAMDISK_ID, 'ari'),
)
_COMPANION_BY_KIND = {companion.kind: companion for companion in COMPANIONS + BOOT_COMPANIONS}


def companions_of(base):
    """The companions of a base (engine BaseVM): the three, and one per boot file."""
    boot_files = base.boot_files()
    return COMPANIONS + tuple(c for c in BOOT_COMPANIONS if c.file_name in boot_files)


@dataclasses.dataclass(frozen=True)
class BaseImages:
    """The images of one base VM in the image service."""
    base_id: str
    disk_id: str
    memory_id: str
    disk_hash_id: str
    memory_hash_id: str
    name: str
    kernel_id: str = None       # its boot companions; None where it has none
    ramdisk_id: str = None

    def companion_ids(self):
        """cloudlet_type -> image id, for each companion the base has."""
        ids = {props.BASE_MEMORY: self.memory_id, props.BASE_DISK_HASH: self.disk_hash_id,
               props.BASE_MEMORY_HASH: self.memory_hash_id, props.BASE_KERNEL: self.kernel_id,
               props.BASE_RAMDISK: self.ramdisk_id}
        return {kind: image_id for kind, image_id in ids.items() if image_id}


def _base_images(base_id, disk_id, name, companion_ids):
    """BaseImages from {cloudlet_type: image id}."""
    return BaseImages(base_id, disk_id, companion_ids[props.BASE_MEMORY],
                      companion_ids[props.BASE_DISK_HASH], companion_ids[props.BASE_MEMORY_HASH], name,
                      companion_ids.get(props.BASE_KERNEL), companion_ids.get(props.BASE_RAMDISK))


# ---------------------------------------------------------------- bases


def import_base_package(images, package_path, name=None, visibility='private', progress=None,
                        workdir=None):
    """Upload a base VM package as four (with boot files, six) linked images; return their BaseImages.

    The package is validated by the engine first (unpacked into a temporary
    directory under `workdir`, default the system temp directory: it needs
    the base's full size) and the validated files are uploaded. Idempotent: if
    a complete, active base with the same base id (and boot companions, if
    the package has boot files) is visible already, it is returned and
    nothing is uploaded. On failure no image is left behind.
    """
    scratch = tempfile.mkdtemp(prefix='cloudlet-import-', dir=workdir)
    try:
        try:
            base = basevm.import_package(basestore.BaseStore(scratch), package_path, progress)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            # The engine checks sizes and digests, but zipfile raises these on
            # a damaged member (bad CRC, bad deflate data) before it can.
            raise engine_errors.BaseVMError('%s is damaged: %s' % (package_path, exc)) from exc
        existing = find_complete_base(images, base.base_id, base.boot_files())
        if existing is not None:
            LOG.info('base %s is in the image service already (image %s)', base.base_id, existing.disk_id)
            return existing
        name = name or base.name or os.path.splitext(os.path.basename(package_path))[0]
        return _upload_base(images, base, name, visibility, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _upload_base(images, base, name, visibility, progress):
    created = []
    try:
        companion_ids = upload_companions(images, base, name, visibility, progress, created)
        disk_id = images.create(name, disk_properties(base, name, companion_ids), visibility=visibility)
        created.append(disk_id)
        upload_file(images, disk_id, base.disk_path, 'uploading disk', progress)
    except BaseException:
        # Disk image first (reversed): never leave a visible, incomplete base.
        delete_quietly(images, reversed(created))
        raise
    return _base_images(base.base_id, disk_id, name, companion_ids)


def upload_companions(images, base, name, visibility, progress, created):
    """Create and upload the companion images of a base (engine BaseVM); return {cloudlet_type: image id}.

    Each image id is appended to `created` as soon as the image exists, for
    the caller to delete if anything fails.
    """
    companion_ids = {}
    for companion in companions_of(base):
        image_id = images.create('%s-%s' % (name, companion.suffix),
                                 companion_properties(base, companion.kind, name), visibility=visibility,
                                 hidden=True, disk_format=companion.disk_format,
                                 container_format=companion.container_format)
        created.append(image_id)
        upload_file(images, image_id, os.path.join(base.path, companion.file_name),
                    'uploading ' + companion.suffix, progress)
        companion_ids[companion.kind] = image_id
    return companion_ids


def companion_properties(base, kind, name):
    """Properties of a companion image (`kind` is one of COMPANIONS)."""
    properties = {props.CLOUDLET_TYPE: kind, props.BASE_ID: base.base_id, props.BASE_NAME: name}
    if kind == props.BASE_MEMORY_HASH:
        properties[props.MEMORY_BLOCKS] = ','.join(base.manifest['memory']['blocks'])
    return properties


def disk_properties(base, name, companion_ids):
    """Properties of the base disk image; `companion_ids` maps companion type -> image id.

    Includes the Glance attributes min_ram (MB) and min_disk (GiB, rounded
    up), which ImageService.create()/update() set as attributes, not as
    extra properties, and for boot companions nova's kernel_id, ramdisk_id
    and os_command_line.
    """
    abi = base.abi
    properties = {
        props.CLOUDLET_TYPE: props.BASE_DISK,
        props.BASE_ID: base.base_id,
        props.BASE_NAME: name,
        props.ABI_DIGEST: base.manifest['abi_digest'],
        props.FORMAT_VERSION: str(base.manifest['version']),
        props.TRAIT_PROPERTY: 'required',
        # Glance attributes: nova refuses a flavor with less disk or RAM.
        props.MIN_DISK: math.ceil(base.disk_size / GIB),
    }
    for kind, image_id in companion_ids.items():
        properties[_COMPANION_BY_KIND[kind].id_key] = image_id
    if base.kernel_cmdline is not None:
        properties[props.OS_COMMAND_LINE] = base.kernel_cmdline
    memory_mb = (abi.get('memory_kib') or 0) // 1024
    if memory_mb:
        properties[props.MEMORY_MB] = str(memory_mb)
        properties[props.MIN_RAM] = memory_mb
    if abi.get('vcpus'):
        properties[props.VCPUS] = str(abi['vcpus'])
    if abi.get('machine'):
        properties[props.MACHINE] = abi['machine']
        properties[props.HW_MACHINE_TYPE] = abi['machine']
    return properties


def find_complete_base(images, base_id, boot_files=()):
    """The first complete, active base with this id visible to the caller, or None.

    A base counts with or without boot companions, unless `boot_files`
    (engine names: 'kernel', 'initrd') says which it must have: an import of
    a package with boot files does not settle for a base uploaded without.
    """
    needed = [c.kind for c in BOOT_COMPANIONS if c.file_name in boot_files]
    candidates = images.list({props.CLOUDLET_TYPE: props.BASE_DISK, props.BASE_ID: base_id})
    for image in sorted(candidates, key=lambda i: (str(i.get('created_at') or ''), i['id'])):
        if image.get('status') != 'active':
            continue
        try:
            links = linked_images(images, image, require_active=True)
        except (errors.ImageNotFound, engine_errors.BaseVMError) as exc:
            LOG.info('ignoring incomplete base image %s: %s', image['id'], exc)
            continue
        missing = [kind for kind in needed if kind not in links.companion_ids()]
        if not missing:
            return links
        LOG.info('ignoring base image %s: it has no %s image', image['id'], ' or '.join(missing))
    return None


def linked_images(images, disk_image, require_active=False):
    """BaseImages of a base disk image, after checking that its companions belong to it.

    A kernel or ramdisk image it names that is not its companion (a shared
    one, see the module doc) is not in the result; with `require_active` it
    must be active all the same, as nova boots it.
    """
    base_id = base_id_of(disk_image)
    ids = {}
    for companion in COMPANIONS + BOOT_COMPANIONS:
        image_id = named_image_id(disk_image, companion)
        is_boot = companion in BOOT_COMPANIONS
        if image_id is None and is_boot:
            continue
        if image_id is None:
            raise engine_errors.BaseVMError('base image %s does not name its %s image'
                                            % (disk_image['id'], companion.kind))
        image = images.get(image_id)
        if is_boot and not _is_companion(image, companion.kind, base_id):
            if require_active:
                _check_active(image, 'the %s of base %s' % (companion.suffix, base_id))
            continue
        _check_companion(image, companion.kind, base_id, require_active)
        ids[companion.kind] = image_id
    return _base_images(base_id, disk_image['id'], disk_image.get(props.BASE_NAME) or disk_image.get('name'),
                        ids)


def named_image_id(disk_image, companion):
    """The image id a base disk image names for a companion, or None (nova's 'nokernel' is none)."""
    image_id = disk_image.get(companion.id_key)
    return None if image_id in (None, '', props.NO_KERNEL) else image_id


def _is_companion(image, kind, base_id):
    return image.get(props.CLOUDLET_TYPE) == kind and image.get(props.BASE_ID) == base_id


def _check_companion(image, kind, base_id, require_active):
    if not _is_companion(image, kind, base_id):
        raise engine_errors.BaseVMError('image %s is not the %s of base %s' % (image['id'], kind, base_id))
    if require_active:
        _check_active(image, '%s of base %s' % (kind, base_id))


def _check_active(image, role):
    if image.get('status') != 'active':
        raise engine_errors.BaseVMError('image %s (%s) is %s' % (image['id'], role, image.get('status')))


def base_id_of(disk_image):
    """The cloudlet_base_id of a base disk image, checked: it names a directory on compute hosts."""
    if disk_image.get(props.CLOUDLET_TYPE) != props.BASE_DISK:
        raise engine_errors.BaseVMError('image %s is not a cloudlet base disk' % disk_image.get('id'))
    base_id = disk_image.get(props.BASE_ID) or ''
    if len(base_id) != 64 or any(c not in '0123456789abcdef' for c in base_id):
        raise engine_errors.BaseVMError('image %s has an invalid %s %r'
                                        % (disk_image.get('id'), props.BASE_ID, base_id))
    return base_id


def list_bases(images):
    """The base disk images visible to the caller (one per base), sorted by name."""
    return sorted(images.list({props.CLOUDLET_TYPE: props.BASE_DISK}),
                  key=lambda i: (i.get('name') or '', i['id']))


def find_base(images, ref):
    """The base disk image named by `ref`.

    `ref` is, in this order: a disk image id, a base id, an image name or
    cloudlet_base_name, a unique base id prefix. Names come before prefixes
    so that a base named like a hex string is found by its name.
    """
    image = _get_by_id(images, ref)
    if image is not None:
        base_id_of(image)
        return image
    bases = list_bases(images)
    return _pick('base', ref, (
        [b for b in bases if b.get(props.BASE_ID) == ref],
        [b for b in bases if ref in (b.get('name'), b.get(props.BASE_NAME))],
        [b for b in bases if _is_hex(ref) and str(b.get(props.BASE_ID, '')).startswith(ref)],
    ))


def delete_base(images, ref):
    """Delete a base's disk image, then its companions; return the ids deleted.

    The disk image goes first: it is the base's only handle, so the base
    disappears at once, and if Glance refuses to delete it (not the owner,
    protected) nothing has been touched. Companions already gone are fine; an
    image the disk names that is not its companion (e.g. a shared kernel) is
    left alone.
    """
    disk_image = find_base(images, ref)
    base_id = base_id_of(disk_image)
    images.delete(disk_image['id'])
    deleted, failed = [disk_image['id']], []
    for companion in COMPANIONS + BOOT_COMPANIONS:
        image_id = named_image_id(disk_image, companion)
        if not image_id:
            continue
        try:
            _check_companion(images.get(image_id), companion.kind, base_id, require_active=False)
            images.delete(image_id)
            deleted.append(image_id)
        except errors.ImageNotFound:
            continue
        except engine_errors.BaseVMError as exc:
            # A kernel or ramdisk the base shares is expected; another base's memory is not.
            log = LOG.info if companion in BOOT_COMPANIONS else LOG.warning
            log('not deleting %s: %s', image_id, exc)
        except errors.ImageServiceError as exc:
            failed.append('%s (%s)' % (image_id, exc))
    if failed:
        raise errors.ImageServiceError('base %s: image %s deleted, but not its companion(s) %s'
                                       % (base_id, disk_image['id'], ', '.join(failed)))
    return deleted


def export_base_package(images, base_ref, package_path, progress=None, workdir=None):
    """Download a base's images and write a base VM package; return its path.

    The engine re-indexes the downloaded disk and memory; the result must be
    the base the image claims (else BaseVMError), and the hash list images
    must equal what it computed. The kernel and initrd its memory snapshot
    boots come from the images the disk image names (its boot companions,
    or shared ones it inherited).
    """
    disk_image = find_base(images, base_ref)
    links = linked_images(images, disk_image)
    scratch = tempfile.mkdtemp(prefix='cloudlet-export-', dir=workdir)
    try:
        disk_path, memory_path = os.path.join(scratch, basevm.DISK), os.path.join(scratch, basevm.MEMORY)
        download_file(images, links.disk_id, disk_path, 'downloading disk', progress)
        download_file(images, links.memory_id, memory_path, 'downloading memory', progress)
        hash_lists = {}
        for kind in (props.BASE_DISK_HASH, props.BASE_MEMORY_HASH):
            companion, image_id = _COMPANION_BY_KIND[kind], links.companion_ids()[kind]
            path = os.path.join(scratch, 'downloaded-' + companion.file_name)
            download_file(images, image_id, path, 'downloading ' + companion.suffix, progress)
            hash_lists[companion.file_name] = (image_id, path)
        boot_files = _download_boot_files(images, disk_image, memory_path, scratch, progress)
        base = basevm.build_base(scratch, disk_path, memory_path, links.name, progress, boot_files)
        check_base_id(base, disk_image)
        for file_name, (image_id, path) in hash_lists.items():
            if chunks.sha256_file(path) != base.manifest['files'][file_name]['sha256']:
                raise engine_errors.BaseVMError('image %s does not hold the %s of base %s'
                                                % (image_id, file_name, base.base_id))
        return basevm.export_package(base, package_path, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _download_boot_files(images, disk_image, memory_path, scratch, progress):
    """{'kernel': path, 'initrd': path}: the boot files the memory snapshot boots, downloaded; or {}.

    {} for a snapshot that boots from its disk, and, with a warning, for a
    base whose disk image does not name an image for each: it is exported
    without boot files, as before there were any.
    """
    booted = domainxml.direct_boot_files(savefile.read_save_image(memory_path).xml)
    image_ids = {c.file_name: named_image_id(disk_image, c) for c in BOOT_COMPANIONS if c.file_name in booted}
    if not all(image_ids.values()):
        LOG.warning('base image %s boots %s, but names no %s image: exporting it without boot files',
                    disk_image['id'], booted['kernel'],
                    ' or '.join(name for name, image_id in image_ids.items() if not image_id))
        return {}
    paths = {}
    for file_name, image_id in image_ids.items():
        paths[file_name] = os.path.join(scratch, file_name)
        download_file(images, image_id, paths[file_name], 'downloading ' + file_name, progress)
    return paths


# ---------------------------------------------------------------- overlays


def upload_overlay(images, path, name, base_id, extra_properties=None, visibility='private',
                   progress=None):
    """Upload an overlay file as a hidden image; return its id.

    The overlay's header must name `base_id` (engine WrongBase otherwise).
    The whole file is checked first (checksums, structure, nothing after the
    trailer; an encrypted one without its key), so a damaged file is refused
    here rather than by the compute host. `extra_properties` cannot override
    the cloudlet ones.
    """
    with open(path, 'rb') as f:
        reader = overlay_format.OverlayReader(f)
        meta = reader.meta
        for _ in reader.segments(sealed=True):
            pass
    if meta['base_id'] != base_id:
        raise engine_errors.WrongBase('overlay %s was made against base %s, not %s'
                                      % (path, meta['base_id'], base_id))
    properties = dict(extra_properties or {})
    properties.update({props.CLOUDLET_TYPE: props.OVERLAY, props.BASE_ID: base_id})
    image_id = images.create(name, properties, visibility=visibility, hidden=True)
    try:
        upload_file(images, image_id, path, 'uploading overlay', progress)
    except BaseException:
        delete_quietly(images, [image_id])
        raise
    return image_id


def list_overlays(images, base_id=None):
    """Overlay images visible to the caller (all, or those of one base), sorted by name.

    Both hidden and listed images: uploads are hidden, but overlays captured
    through nova's snapshot path (cloudlet-create-overlay) are ordinary images.
    """
    found = {}
    for hidden in (True, False):   # Glance lists hidden images only when asked to
        filters = {props.CLOUDLET_TYPE: props.OVERLAY, props.OS_HIDDEN: hidden}
        if base_id:
            filters[props.BASE_ID] = base_id
        found.update((image['id'], image) for image in images.list(filters))
    return sorted(found.values(), key=lambda i: (i.get('name') or '', i['id']))


def find_overlay(images, ref):
    """The overlay image named by `ref`: an image id or a unique image name."""
    image = _get_by_id(images, ref)
    if image is not None:
        if image.get(props.CLOUDLET_TYPE) != props.OVERLAY:
            raise engine_errors.OverlayError('image %s is not a cloudlet overlay' % ref)
        return image
    return _pick('overlay', ref, ([o for o in list_overlays(images) if o.get('name') == ref],))


def download_overlay(images, ref, fileobj, progress=None):
    """Write the overlay named by `ref` to `fileobj`; return the bytes written."""
    image = find_overlay(images, ref)
    writer = streams.ProgressWriter(fileobj, progress, 'downloading overlay', image.get('size'))
    images.download(image['id'], writer)
    return writer.done


# ---------------------------------------------------------------- lookups and transfers


def _get_by_id(images, ref):
    """The image with id `ref`, or None (only tried for UUIDs: names never reach a URL path)."""
    try:
        uuid.UUID(str(ref))
    except ValueError:
        return None
    try:
        return images.get(ref)
    except errors.ImageNotFound:
        return None


def _pick(kind, ref, candidate_lists):
    for matches in candidate_lists:
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise errors.AmbiguousImage('%r names %d %ss (images %s); use an image id'
                                        % (ref, len(matches), kind, ', '.join(m['id'] for m in matches)))
    raise errors.ImageNotFound('no %s image matches %r' % (kind, ref))


def _is_hex(text):
    return bool(text) and all(c in '0123456789abcdef' for c in text)


def upload_file(images, image_id, path, stage, progress):
    """Upload a file, then check that the image holds exactly what was sent."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        reader = streams.ProgressReader(f, progress, stage, size)
        images.upload(image_id, reader, size)
    image = images.get(image_id)
    if image.get('status') != 'active':
        raise errors.ImageServiceError('image %s is %s after its upload' % (image_id, image.get('status')))
    if image.get('size') not in (None, size) or reader.done != size:
        raise errors.ImageServiceError('image %s: %s bytes stored, %d sent, file has %d'
                                       % (image_id, image.get('size'), reader.done, size))
    if image.get('os_hash_algo') == streams.UPLOAD_HASH and \
            image.get('os_hash_value') != reader.hasher.hexdigest():
        raise errors.ImageServiceError('image %s: Glance stored other bytes than %s (%s mismatch)'
                                       % (image_id, path, streams.UPLOAD_HASH))


def check_base_id(base, disk_image):
    """The content's base id against the one the disk image claims (engine BaseVMError)."""
    if base.base_id != disk_image[props.BASE_ID]:
        raise engine_errors.BaseVMError('image %s claims base %s, but its content is base %s'
                                        % (disk_image['id'], disk_image[props.BASE_ID], base.base_id))


def download_file(images, image_id, path, stage, progress):
    size = images.get(image_id).get('size')
    with open(path, 'wb') as f:
        writer = streams.SparseFileWriter(f, progress, stage, size)
        images.download(image_id, writer)
        writer.finish()
    if size is not None and writer.done != size:
        raise errors.ImageServiceError('image %s: downloaded %d bytes of %d' % (image_id, writer.done, size))


def delete_quietly(images, image_ids):
    """Best-effort deletion when undoing a failed upload: the original error is what matters."""
    for image_id in image_ids:
        try:
            images.delete(image_id)
        except errors.ImageNotFound:
            pass
        except Exception:
            LOG.exception('could not delete image %s while undoing a failed upload', image_id)
