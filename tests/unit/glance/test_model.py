"""The Glance model over a fake image service, with synthetic bases built by the engine."""

import io
import os

import pytest

from cloudlet_engine import basestore
from cloudlet_engine import basevm
from cloudlet_engine import create
from cloudlet_engine import errors as engine_errors
from cloudlet_glance import errors
from cloudlet_glance import model
from cloudlet_glance import properties as props
from tests.unit.glance import fakes


def _by_type(fake):
    return {image[props.CLOUDLET_TYPE]: image for image in fake.images.values()}


# ---------------------------------------------------------------- import


def test_import_creates_four_linked_images(fake_images, package, tmp_path):
    base, path = package
    progress = fakes.RecordingProgress()
    result = model.import_base_package(fake_images, path, visibility='public', progress=progress,
                                       workdir=str(tmp_path))
    assert len(fake_images.images) == 4
    images = _by_type(fake_images)
    disk, memory = images[props.BASE_DISK], images[props.BASE_MEMORY]
    disk_hash, memory_hash = images[props.BASE_DISK_HASH], images[props.BASE_MEMORY_HASH]
    assert result == model.BaseImages(base.base_id, disk['id'], memory['id'], disk_hash['id'],
                                      memory_hash['id'], 'demo-base')

    # The disk image: visible, linked to its companions, with the flavor hints.
    assert disk['os_hidden'] is False and disk['name'] == 'demo-base'
    assert disk[props.BASE_MEMORY] == memory['id']
    assert disk[props.BASE_DISK_HASH] == disk_hash['id']
    assert disk[props.BASE_MEMORY_HASH] == memory_hash['id']
    assert disk[props.BASE_NAME] == 'demo-base'
    assert disk[props.ABI_DIGEST] == base.manifest['abi_digest']
    assert disk[props.MEMORY_MB] == '64' and disk[props.VCPUS] == '2'
    assert disk[props.MACHINE] == disk[props.HW_MACHINE_TYPE] == 'pc-i440fx-7.2'
    assert disk[props.FORMAT_VERSION] == '1'
    assert disk[props.TRAIT_PROPERTY] == 'required'
    assert disk[props.MIN_RAM] == 64 and disk[props.MIN_DISK] == 1
    # The companions: hidden, typed, carrying the base id.
    for image in (memory, disk_hash, memory_hash):
        assert image['os_hidden'] is True
        assert image['name'].startswith('demo-base-')
    assert memory_hash[props.MEMORY_BLOCKS] == 'pc.ram,vga.vram'
    for image in images.values():
        assert image[props.BASE_ID] == base.base_id
        assert image['status'] == 'active'
        assert image['visibility'] == 'public'
        assert (image['disk_format'], image['container_format']) == ('raw', 'bare')

    # Each image holds its file, byte for byte.
    for image, name in ((disk, basevm.DISK), (memory, basevm.MEMORY), (disk_hash, basevm.DISK_HASHES),
                        (memory_hash, basevm.MEMORY_PAGES)):
        assert fake_images.read_data(image['id']) == fakes.read_file(os.path.join(base.path, name))
    # Companions are created (and uploaded) first, the disk image last.
    creates = [name for method, name in fake_images.calls if method == 'create']
    assert creates[-1] == 'demo-base' and len(creates) == 4
    assert progress.stages['uploading disk'] == (base.disk_size, base.disk_size)
    # The temporary copy of the base is gone.
    assert os.listdir(str(tmp_path)) == ['glance-data']


def test_import_twice_returns_the_same_images(fake_images, package):
    first = model.import_base_package(fake_images, package[1])
    uploads = fake_images.count('upload')
    second = model.import_base_package(fake_images, package[1], name='another-name')
    assert second == first
    assert fake_images.count('upload') == uploads and fake_images.count('create') == 4
    assert len(fake_images.images) == 4


def test_import_does_not_reuse_an_incomplete_base(fake_images, package):
    first = model.import_base_package(fake_images, package[1])
    fake_images.delete(first.memory_id)
    second = model.import_base_package(fake_images, package[1])
    assert second.disk_id != first.disk_id and second.base_id == first.base_id
    assert model.find_complete_base(fake_images, first.base_id) == second


@pytest.mark.parametrize('failing_upload', [1, 2, 3, 4])
def test_failed_upload_leaves_no_image(fake_images, package, failing_upload):
    seen = []

    def fail(image):
        seen.append(image['id'])
        if len(seen) == failing_upload:
            raise errors.ImageServiceError('injected failure')

    fake_images.before_upload = fail
    with pytest.raises(errors.ImageServiceError, match='injected'):
        model.import_base_package(fake_images, package[1])
    assert fake_images.images == {}
    assert fake_images.count('create') == failing_upload


@pytest.mark.parametrize('damage', [{'status': 'killed'}, {'size': 1}, {'os_hash_value': 'f' * 128}])
def test_upload_that_glance_stores_wrongly_is_undone(fake_images, package, monkeypatch, damage):
    upload = fake_images.upload

    def upload_then_damage(image_id, fileobj, size=None):
        upload(image_id, fileobj, size)
        if fake_images.images[image_id][props.CLOUDLET_TYPE] == props.BASE_DISK_HASH:
            fake_images.images[image_id].update(damage)

    monkeypatch.setattr(fake_images, 'upload', upload_then_damage)
    with pytest.raises(errors.ImageServiceError, match='image '):
        model.import_base_package(fake_images, package[1])
    assert fake_images.images == {}


def test_corrupt_package_creates_nothing(fake_images, package, tmp_path):
    corrupt = tmp_path / 'corrupt.zip'
    data = bytearray(fakes.read_file(package[1]))
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(engine_errors.BaseVMError):
        model.import_base_package(fake_images, str(corrupt))
    assert fake_images.calls == []


# ---------------------------------------------------------------- export


def test_export_gives_a_package_of_the_same_base(fake_images, package, tmp_path):
    imported = model.import_base_package(fake_images, package[1])
    out = str(tmp_path / 'exported.zip')
    assert model.export_base_package(fake_images, 'demo-base', out, workdir=str(tmp_path)) == out
    rebuilt = basevm.import_package(basestore.BaseStore(str(tmp_path / 'store')), out)
    assert rebuilt.base_id == imported.base_id
    assert fakes.read_file(rebuilt.memory_path) == fakes.read_file(package[0].memory_path)
    # ... and it imports into another cloud as the same base.
    other_cloud = fakes.FakeImageService(tmp_path / 'other-cloud')
    assert model.import_base_package(other_cloud, out).base_id == imported.base_id
    assert sorted(os.listdir(str(tmp_path))) == ['exported.zip', 'glance-data', 'other-cloud', 'store']


def test_export_refuses_content_that_is_not_the_base(fake_images, package, tmp_path):
    imported = model.import_base_package(fake_images, package[1])
    disk = bytearray(fake_images.read_data(imported.disk_id))
    disk[0] ^= 1
    fake_images.replace_data(imported.disk_id, bytes(disk))
    with pytest.raises(engine_errors.BaseVMError, match=imported.base_id):
        model.export_base_package(fake_images, imported.disk_id, str(tmp_path / 'out.zip'))
    assert not os.path.exists(str(tmp_path / 'out.zip'))


def test_export_refuses_a_wrong_hash_list_image(fake_images, package, tmp_path):
    imported = model.import_base_package(fake_images, package[1])
    fake_images.replace_data(imported.disk_hash_id, b'\0' * 64)
    with pytest.raises(engine_errors.BaseVMError, match=imported.disk_hash_id):
        model.export_base_package(fake_images, imported.disk_id, str(tmp_path / 'out.zip'))


# ---------------------------------------------------------------- find, list, delete


def test_list_and_find_bases(fake_images, package, other_package):
    demo = model.import_base_package(fake_images, package[1])
    other = model.import_base_package(fake_images, other_package[1])
    assert [b['id'] for b in model.list_bases(fake_images)] == [demo.disk_id, other.disk_id]
    for ref in (demo.disk_id, demo.base_id, 'demo-base', demo.base_id[:12]):
        assert model.find_base(fake_images, ref)['id'] == demo.disk_id
    with pytest.raises(errors.ImageNotFound):
        model.find_base(fake_images, 'no-such-base')
    with pytest.raises(errors.ImageNotFound):
        model.find_base(fake_images, '00000000-0000-0000-0000-000000000000')
    with pytest.raises(engine_errors.BaseVMError):
        model.find_base(fake_images, demo.memory_id)       # a companion is not a base
    with pytest.raises(errors.ImageNotFound):
        model.find_base(fake_images, '')                    # not a prefix of everything


def test_find_base_prefers_a_name_to_an_id_prefix(fake_images, package, other_package):
    demo = model.import_base_package(fake_images, package[1])
    prefix = demo.base_id[:4]
    named = model.import_base_package(fake_images, other_package[1], name=prefix)
    assert model.find_base(fake_images, prefix)['id'] == named.disk_id
    assert model.find_base(fake_images, demo.base_id[:5])['id'] == demo.disk_id


def test_same_base_twice_is_ambiguous_by_base_id(fake_images, package):
    first = model.import_base_package(fake_images, package[1])
    # Another project's copy of the same base (the fake shows everything to everyone).
    second = model._upload_base(fake_images, package[0], 'copy', 'private', None)
    with pytest.raises(errors.AmbiguousImage, match=first.disk_id):
        model.find_base(fake_images, first.base_id)
    assert model.find_base(fake_images, second.disk_id)['id'] == second.disk_id


def test_delete_base_deletes_the_disk_first_then_its_companions(fake_images, package, other_package):
    demo = model.import_base_package(fake_images, package[1])
    other = model.import_base_package(fake_images, other_package[1])
    deleted = model.delete_base(fake_images, 'demo-base')
    assert deleted == [demo.disk_id, demo.memory_id, demo.disk_hash_id, demo.memory_hash_id]
    assert [image_id for method, image_id in fake_images.calls if method == 'delete'] == deleted
    assert set(fake_images.images) == {other.disk_id, other.memory_id, other.disk_hash_id,
                                       other.memory_hash_id}


def test_delete_base_tolerates_missing_companions(fake_images, package):
    demo = model.import_base_package(fake_images, package[1])
    fake_images.delete(demo.disk_hash_id)
    assert model.delete_base(fake_images, demo.base_id) == [demo.disk_id, demo.memory_id,
                                                             demo.memory_hash_id]
    assert fake_images.images == {}


def test_delete_base_leaves_images_that_are_not_its_companions(fake_images, package, other_package):
    demo = model.import_base_package(fake_images, package[1])
    other = model.import_base_package(fake_images, other_package[1])
    # A disk image that names another base's memory image must not delete it.
    fake_images.update(demo.disk_id, {props.BASE_MEMORY: other.memory_id})
    model.delete_base(fake_images, demo.disk_id)
    assert other.memory_id in fake_images.images and demo.memory_id in fake_images.images
    assert model.find_complete_base(fake_images, other.base_id) == other


def test_delete_base_touches_nothing_when_the_disk_cannot_go(fake_images, package):
    demo = model.import_base_package(fake_images, package[1])
    fake_images.images[demo.disk_id]['protected'] = True
    with pytest.raises(errors.ImageServiceError, match='protected'):
        model.delete_base(fake_images, demo.disk_id)
    assert len(fake_images.images) == 4


# ---------------------------------------------------------------- overlays


@pytest.fixture(scope='session')
def overlay_path(package, tmp_path_factory):
    """A real overlay of the package's base (the base itself, unchanged: small but valid)."""
    base = package[0]
    path = str(tmp_path_factory.mktemp('overlay') / 'app.clo')
    with open(path, 'wb') as out:
        create.create_overlay(base, base.disk_path, base.memory_path, out, 'zstd',
                              workdir=os.path.dirname(path))
    return path


def test_overlays_captured_through_nova_are_listed_and_found_by_name(fake_images, package):
    # nova's snapshot path creates ordinary (not hidden) images.
    base_id = package[0].base_id
    captured = fake_images.create('captured-app', {props.CLOUDLET_TYPE: props.OVERLAY,
                                                   props.BASE_ID: base_id})
    fake_images.create('ordinary', {})
    assert [o['id'] for o in model.list_overlays(fake_images)] == [captured]
    assert [o['id'] for o in model.list_overlays(fake_images, base_id=base_id)] == [captured]
    assert model.find_overlay(fake_images, 'captured-app')['id'] == captured


def test_overlays_upload_list_download(fake_images, package, overlay_path):
    base_id = package[0].base_id
    image_id = model.upload_overlay(fake_images, overlay_path, 'my-app', base_id,
                                    extra_properties={'app': 'web', props.CLOUDLET_TYPE: 'other'})
    image = fake_images.get(image_id)
    assert image['os_hidden'] is True and image['visibility'] == 'private'
    assert image[props.CLOUDLET_TYPE] == props.OVERLAY and image[props.BASE_ID] == base_id
    assert image['app'] == 'web'
    assert fake_images.read_data(image_id) == fakes.read_file(overlay_path)

    second = model.upload_overlay(fake_images, overlay_path, 'another-app', base_id)
    assert [o['id'] for o in model.list_overlays(fake_images)] == [second, image_id]
    assert [o['id'] for o in model.list_overlays(fake_images, base_id=base_id)] == [second, image_id]
    assert model.list_overlays(fake_images, base_id='0' * 64) == []
    assert model.list_bases(fake_images) == []                  # overlays are not bases

    for ref in (image_id, 'my-app'):
        out = io.BytesIO()
        assert model.download_overlay(fake_images, ref, out) == len(fakes.read_file(overlay_path))
        assert out.getvalue() == fakes.read_file(overlay_path)
    with pytest.raises(errors.ImageNotFound):
        model.download_overlay(fake_images, 'no-such-overlay', io.BytesIO())


def test_overlay_of_another_base_is_refused(fake_images, overlay_path):
    with pytest.raises(engine_errors.WrongBase):
        model.upload_overlay(fake_images, overlay_path, 'my-app', 'f' * 64)
    assert fake_images.calls == []


@pytest.mark.parametrize('damage, error', [
    (lambda blob: blob + os.urandom(8192), 'trailing data after the overlay trailer'),
    (lambda blob: blob[:len(blob) // 2] + bytes([blob[len(blob) // 2] ^ 1]) + blob[len(blob) // 2 + 1:],
     'checksum mismatch'),
])
def test_a_damaged_overlay_file_is_refused_before_upload(fake_images, package, overlay_path, tmp_path,
                                                         damage, error):
    damaged = tmp_path / 'damaged.clo'
    damaged.write_bytes(damage(fakes.read_file(overlay_path)))
    with pytest.raises(engine_errors.CorruptOverlay, match=error):
        model.upload_overlay(fake_images, str(damaged), 'my-app', package[0].base_id)
    assert fake_images.calls == []


def test_failed_overlay_upload_leaves_no_image(fake_images, package, overlay_path):
    def fail(image):
        raise errors.ImageServiceError('injected failure')
    fake_images.before_upload = fail
    with pytest.raises(errors.ImageServiceError):
        model.upload_overlay(fake_images, overlay_path, 'my-app', package[0].base_id)
    assert fake_images.images == {}


def test_fake_lists_hidden_images_only_when_asked(fake_images):
    visible = fake_images.create('visible', {'k': 'v'})
    hidden = fake_images.create('hidden', {'k': 'v'}, hidden=True)
    assert [i['id'] for i in fake_images.list({'k': 'v'})] == [visible]
    assert [i['id'] for i in fake_images.list({'k': 'v', props.OS_HIDDEN: True})] == [hidden]
    fake_images.update(visible, {'other': 'x'})
    assert fake_images.get(visible)['k'] == 'v'


# ---------------------------------------------------------------- bases that boot a kernel directly


def _add_shared_boot_images(fake):
    """A kernel and ramdisk image of an AMI-style boot image: no cloudlet companions of anything."""
    kernel = fake.create('cirros-kernel', {}, visibility='public', disk_format='aki', container_format='aki')
    fake.upload(kernel, io.BytesIO(b'shared kernel'))
    ramdisk = fake.create('cirros-ramdisk', {}, visibility='public', disk_format='ari',
                          container_format='ari')
    fake.upload(ramdisk, io.BytesIO(b'shared ramdisk'))
    return kernel, ramdisk


def test_import_uploads_the_boot_files_as_nova_s_kernel_and_ramdisk(fake_images, boot_package):
    base, path = boot_package
    result = model.import_base_package(fake_images, path, visibility='public')
    assert len(fake_images.images) == 6
    images = _by_type(fake_images)
    disk, kernel, ramdisk = images[props.BASE_DISK], images[props.BASE_KERNEL], images[props.BASE_RAMDISK]
    assert (result.kernel_id, result.ramdisk_id) == (kernel['id'], ramdisk['id'])
    assert result.companion_ids()[props.BASE_KERNEL] == kernel['id']
    # nova fetches them into the instance directory and boots them with this command line.
    assert disk[props.KERNEL_ID] == kernel['id'] and disk[props.RAMDISK_ID] == ramdisk['id']
    assert disk[props.OS_COMMAND_LINE] == 'root=/dev/vda console=ttyS0'
    assert disk[props.FORMAT_VERSION] == '2'
    for image, image_format, name, file_name in ((kernel, 'aki', 'boot-base-kernel', basevm.KERNEL),
                                                 (ramdisk, 'ari', 'boot-base-ramdisk', basevm.INITRD)):
        assert (image['disk_format'], image['container_format']) == (image_format, image_format)
        assert image['os_hidden'] is True and image['visibility'] == 'public' and image['name'] == name
        assert image[props.BASE_ID] == base.base_id and image[props.BASE_NAME] == 'boot-base'
        assert fake_images.read_data(image['id']) == fakes.read_file(base.boot_files()[file_name])
    # The disk image still comes last.
    assert [name for method, name in fake_images.calls if method == 'create'][-1] == 'boot-base'


def test_a_base_without_boot_files_names_no_kernel(fake_images, package):
    model.import_base_package(fake_images, package[1])
    disk = _by_type(fake_images)[props.BASE_DISK]
    assert not {props.KERNEL_ID, props.RAMDISK_ID, props.OS_COMMAND_LINE} & set(disk)


def test_failed_boot_file_upload_leaves_no_image(fake_images, boot_package):
    def fail(image):
        if image[props.CLOUDLET_TYPE] == props.BASE_RAMDISK:
            raise errors.ImageServiceError('injected failure')
    fake_images.before_upload = fail
    with pytest.raises(errors.ImageServiceError, match='injected'):
        model.import_base_package(fake_images, boot_package[1])
    assert fake_images.images == {}


def test_import_with_boot_files_does_not_settle_for_a_base_without(
        fake_images, boot_package, boot_package_without_boot_files):
    without = model.import_base_package(fake_images, boot_package_without_boot_files[1])
    assert without.kernel_id is None and len(fake_images.images) == 4
    with_boot = model.import_base_package(fake_images, boot_package[1])
    assert with_boot.base_id == without.base_id and with_boot.disk_id != without.disk_id
    assert with_boot.kernel_id and with_boot.ramdisk_id
    # Both are complete bases; who needs the boot companions gets the one that has them.
    assert model.find_complete_base(fake_images, without.base_id) == without
    assert model.find_complete_base(fake_images, without.base_id, ('kernel', 'initrd')) == with_boot
    assert model.import_base_package(fake_images, boot_package[1]) == with_boot


def test_a_base_whose_kernel_image_is_gone_is_incomplete(fake_images, boot_package):
    imported = model.import_base_package(fake_images, boot_package[1])
    fake_images.delete(imported.kernel_id)
    assert model.find_complete_base(fake_images, imported.base_id) is None


def test_export_brings_the_boot_files_back(fake_images, boot_package, tmp_path):
    base = boot_package[0]
    model.import_base_package(fake_images, boot_package[1])
    out = model.export_base_package(fake_images, 'boot-base', str(tmp_path / 'exported.zip'),
                                    workdir=str(tmp_path))
    rebuilt = basevm.import_package(basestore.BaseStore(str(tmp_path / 'store')), out)
    assert rebuilt.base_id == base.base_id and rebuilt.manifest['version'] == 2
    for file_name in (basevm.KERNEL, basevm.INITRD):
        assert fakes.read_file(rebuilt.boot_files()[file_name]) == fakes.read_file(base.boot_files()[file_name])
    assert rebuilt.kernel_cmdline == base.kernel_cmdline


def test_delete_base_deletes_its_boot_companions(fake_images, boot_package):
    imported = model.import_base_package(fake_images, boot_package[1])
    assert model.delete_base(fake_images, imported.disk_id) == [
        imported.disk_id, imported.memory_id, imported.disk_hash_id, imported.memory_hash_id,
        imported.kernel_id, imported.ramdisk_id]
    assert fake_images.images == {}


def test_a_base_captured_through_nova_before_boot_files(fake_images, boot_package_without_boot_files,
                                                        tmp_path):
    # Its disk image inherited kernel_id/ramdisk_id from the image the server was booted from.
    imported = model.import_base_package(fake_images, boot_package_without_boot_files[1])
    kernel, ramdisk = _add_shared_boot_images(fake_images)
    fake_images.update(imported.disk_id, {props.KERNEL_ID: kernel, props.RAMDISK_ID: ramdisk})
    links = model.linked_images(fake_images, fake_images.get(imported.disk_id), require_active=True)
    assert links == imported                        # shared images are not its companions
    assert model.find_complete_base(fake_images, imported.base_id) == imported

    # Exported, it carries them as its boot files: a package that restores anywhere.
    out = model.export_base_package(fake_images, imported.disk_id, str(tmp_path / 'out.zip'))
    rebuilt = basevm.import_package(basestore.BaseStore(str(tmp_path / 'store')), out)
    assert rebuilt.base_id == imported.base_id
    assert fakes.read_file(rebuilt.boot_files()[basevm.KERNEL]) == b'shared kernel'
    assert fakes.read_file(rebuilt.boot_files()[basevm.INITRD]) == b'shared ramdisk'

    # Deleted, it leaves the shared images to the image they belong to.
    assert model.delete_base(fake_images, imported.disk_id) == [
        imported.disk_id, imported.memory_id, imported.disk_hash_id, imported.memory_hash_id]
    assert set(fake_images.images) == {kernel, ramdisk}


def test_export_without_kernel_images_gives_a_package_without_boot_files(
        fake_images, boot_package_without_boot_files, tmp_path):
    imported = model.import_base_package(fake_images, boot_package_without_boot_files[1])
    fake_images.update(imported.disk_id, {props.KERNEL_ID: 'nokernel'})     # nova's "none"
    out = model.export_base_package(fake_images, imported.disk_id, str(tmp_path / 'out.zip'))
    rebuilt = basevm.import_package(basestore.BaseStore(str(tmp_path / 'store')), out)
    assert rebuilt.base_id == imported.base_id and rebuilt.boot_files() == {}


def test_a_shared_kernel_image_must_be_active_for_a_complete_base(fake_images,
                                                                  boot_package_without_boot_files):
    imported = model.import_base_package(fake_images, boot_package_without_boot_files[1])
    kernel, _ = _add_shared_boot_images(fake_images)
    fake_images.update(imported.disk_id, {props.KERNEL_ID: kernel})
    fake_images.images[kernel]['status'] = 'deactivated'
    with pytest.raises(engine_errors.BaseVMError, match='kernel of base .* is deactivated'):
        model.linked_images(fake_images, fake_images.get(imported.disk_id), require_active=True)
    assert model.find_complete_base(fake_images, imported.base_id) is None
