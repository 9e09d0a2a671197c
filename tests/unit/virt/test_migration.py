"""Live migration's destination side (migration.py): the pre-check, the base, the disk, the record; fake Glance."""

import os
from unittest import mock

import pytest

from nova import objects

from cloudlet_engine import errors
from cloudlet_engine import qcow2
from cloudlet_engine import ramfile
from cloudlet_glance import properties as props
from cloudlet_nova.virt import launch
from cloudlet_nova.virt import migration
from cloudlet_nova.virt import state

UUID = '7b0b4a41-2a0c-4a7e-8f7e-0d6c7d5a0002'


def instance_of(imported, host='source'):
    sysmeta = {props.system_metadata_key(props.CLOUDLET_TYPE): props.BASE_DISK,
               props.system_metadata_key(props.BASE_ID): imported.base_id}
    return objects.Instance(uuid=UUID, system_metadata=sysmeta, metadata={}, image_ref=imported.disk_id,
                            host=host)


def test_a_host_that_can_fetch_the_base_may_receive(glance):
    images, imported = glance
    assert migration.cannot_receive('ctx', instance_of(imported)) is None


def test_a_host_that_holds_the_base_asks_nothing_of_glance(glance):
    images, imported = glance
    migration.receive('ctx', instance_of(imported), ram_owner=None)
    images.images[imported.disk_id]['status'] = 'deactivated'
    gets = images.count('get')
    assert migration.cannot_receive('ctx', instance_of(imported)) is None
    assert images.count('get') == gets


def test_a_deactivated_base_image_is_the_reason(glance):
    images, imported = glance
    images.images[imported.disk_id]['status'] = 'deactivated'
    reason = migration.cannot_receive('ctx', instance_of(imported))
    assert 'does not hold base %s and cannot fetch it' % imported.base_id[:12] in reason
    assert 'deactivated' in reason


def test_a_missing_companion_is_the_reason(glance):
    images, imported = glance
    images.delete(imported.memory_id)
    reason = migration.cannot_receive('ctx', instance_of(imported))
    assert imported.memory_id in reason and 'cannot fetch it' in reason


def test_receive_fetches_the_base_into_the_store(glance):
    images, imported = glance
    base, ram = migration.receive('ctx', instance_of(imported), ram_owner=None)
    assert base.base_id == imported.base_id and ram is None        # memory_restore = full_image
    assert launch.base_store().has(imported.base_id)


def test_receive_refuses_an_image_that_now_holds_another_base(glance):
    images, imported = glance
    instance = instance_of(imported)
    instance.system_metadata[props.system_metadata_key(props.BASE_ID)] = 'cd' * 32
    with pytest.raises(errors.BaseVMError, match='not the instance'):
        migration.receive('ctx', instance, ram_owner=None)


def test_the_root_disk_is_an_empty_layer_over_the_base_disk(glance, tmp_path):
    images, imported = glance
    base, _ = migration.receive('ctx', instance_of(imported), ram_owner=None)
    path = str(tmp_path / 'disk')
    migration.create_root_disk(base, path, base.disk_size)
    info = qcow2.top_layer_info(path)
    assert (info['virtual_size'], info['backing_file'], info['backing_format']) == (
        base.disk_size, base.disk_path, 'raw')
    assert list(qcow2.iter_top_layer_chunks(path)) == []
    with pytest.raises(errors.BaseVMError, match='root disk is'):
        migration.create_root_disk(base, str(tmp_path / 'other'), base.disk_size * 2)


def test_the_record_names_the_base_and_where_the_vm_came_from(glance, tmp_path):
    images, imported = glance
    base, _ = migration.receive('ctx', instance_of(imported), ram_owner=None)
    instance_dir = str(tmp_path / 'instances' / UUID)
    os.makedirs(instance_dir)
    migration.record(instance_dir, instance_of(imported), base, object(), 'source')
    record = state.load(instance_dir)
    assert (record['base_id'], record['base_image_id'], record['source'], record['memory_restore']) == (
        imported.base_id, imported.disk_id, {'kind': 'live-migration', 'ref': 'source'}, 'ram_file')


MAPPED = ('<domain xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"><name>i</name>'
          '<qemu:commandline><qemu:arg value="-object"/>'
          '<qemu:arg value="memory-backend-file,id=%s,mem-path=/b/memory.ram,share=off,size=4096"/>'
          '<qemu:arg value="-machine"/><qemu:arg value="memory-backend=%s"/></qemu:commandline></domain>'
          % (ramfile.BACKEND_ID, ramfile.BACKEND_ID))


def test_the_destination_definition_loses_the_ram_file_mapping():
    host = mock.Mock()
    host.get_guest.return_value.get_xml_desc.return_value = MAPPED
    migration.unmap_definition(host, 'instance')
    host.get_guest.return_value.get_xml_desc.assert_called_once_with(dump_inactive=True)
    [(written,), _] = host.write_instance_config.call_args
    assert ramfile.BACKEND_ID not in written and 'commandline' not in written


def test_a_definition_without_the_mapping_is_left_alone():
    host = mock.Mock()
    host.get_guest.return_value.get_xml_desc.return_value = '<domain><name>i</name></domain>'
    migration.unmap_definition(host, 'instance')
    host.write_instance_config.assert_not_called()


@pytest.mark.parametrize('virt_type, version, live_kept', [
    ('kvm', 7002022, True),
    ('qemu', 7002022, False),      # TCG before QEMU 9.0 misses pages in a live migration
    ('qemu', 9002000, True),
])
def test_a_host_whose_precopy_misses_pages_migrates_paused(virt_type, version, live_kept):
    live = 1        # libvirt's VIR_MIGRATE_LIVE
    with mock.patch.object(migration.libvirt_driver, 'libvirt', mock.Mock(VIR_MIGRATE_LIVE=live)):
        flags = migration.exact_migration_flags(virt_type, version, live | 8 | 64, live | 8 | 128)
    expected = (live | 8 | 64, live | 8 | 128) if live_kept else (8 | 64, 8 | 128)
    assert flags == expected
