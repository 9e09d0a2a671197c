"""openstack cloudlet base import | export | list | show | delete (fake Glance, mocked nova)."""

import logging

from osc_lib import exceptions
import pytest

from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_osc.v1 import bases
from tests.unit.glance import fakes
from tests.unit.osc.conftest import bodies
from tests.unit.osc.conftest import FakeOSCApp
from tests.unit.osc.conftest import FakeStream
from tests.unit.osc.conftest import NOVA
from tests.unit.osc.conftest import run

IMPORT_ID = '0c3f3b44-7b83-4f4e-9d6e-7d3b9a1e2f10'
URL = 'https://packages.example/demo-base.zip'


def _record(status, **fields):
    record = {'id': IMPORT_ID, 'name': 'demo', 'url': URL, 'visibility': 'private', 'status': status,
              'progress': {'stage': status, 'bytes_done': 0, 'bytes_total': None}, 'error': None,
              'base_id': None, 'image_id': None, 'companion_image_ids': {},
              'created_at': '2026-01-01T00:00:00.000000Z', 'updated_at': '2026-01-01T00:00:01.000000Z'}
    record.update(fields)
    return record


def test_import_local_package_uploads_to_glance_and_shows_the_base(app, fake_images, package):
    base_vm, path = package
    app.stderr = FakeStream(tty=True)
    shown = run(app, bases.ImportBase, path, '--name', 'demo', '--public', '-f', 'json')
    disk_image = fake_images.images[shown['id']]
    assert disk_image['name'] == 'demo' and disk_image['visibility'] == 'public'
    assert shown['base_id'] == base_vm.base_id
    assert (shown['memory_mb'], shown['vcpus'], shown['min_disk_gb']) == (64, 2, 1)
    assert shown['disk_size'] == base_vm.disk_size
    assert shown['memory_size'] == fake_images.images[shown['memory_image_id']]['size'] > 0
    assert shown['status'] == 'active'
    assert len(fake_images.images) == 4
    # A progress bar on the terminal: the model's stages, each ended at 100%.
    assert '\ruploading disk [' + '=' * 30 + '] 100%' in app.stderr.getvalue()


def test_import_local_package_is_quiet_when_stderr_is_no_terminal(app, package):
    run(app, bases.ImportBase, package[1], '-f', 'json')
    assert app.stderr.getvalue() == ''


def test_import_of_a_missing_file(app):
    with pytest.raises(exceptions.CommandError, match='^nope.zip: no such file'):
        run(app, bases.ImportBase, 'nope.zip')


def test_import_of_a_damaged_package_is_one_line(app, tmp_path):
    bad = tmp_path / 'bad.zip'
    bad.write_bytes(b'PK\x03\x04 not really a zip')
    with pytest.raises(exceptions.CommandError) as caught:
        run(app, bases.ImportBase, str(bad))
    assert str(bad) in str(caught.value) and '\n' not in str(caught.value)


def test_import_by_url_without_wait_shows_the_import_record(app, nova):
    nova.post(NOVA + '/os-cloudlet/bases', status_code=202, json={'base': _record('queued')})
    shown = run(app, bases.ImportBase, URL, '--name', 'demo', '-f', 'json')
    assert bodies(nova, 'POST', NOVA + '/os-cloudlet/bases') == [
        {'base': {'url': URL, 'name': 'demo', 'visibility': 'private'}}]
    assert shown['id'] == IMPORT_ID and shown['status'] == 'queued'
    assert shown['progress'] == {'stage': 'queued', 'bytes_done': 0, 'bytes_total': None}


def test_import_by_url_with_wait_polls_then_shows_the_base(app, nova, base, no_real_waiting):
    base_vm, images_of_base = base
    nova.post(NOVA + '/os-cloudlet/bases', status_code=202, json={'base': _record('queued')})
    nova.get(NOVA + '/os-cloudlet/bases/' + IMPORT_ID, [
        {'json': {'base': _record('downloading', progress={'stage': 'downloading', 'bytes_done': 500,
                                                           'bytes_total': 1000})}},
        {'json': {'base': _record('active', base_id=base_vm.base_id, image_id=images_of_base.disk_id)}},
    ])
    shown = run(app, bases.ImportBase, URL, '--wait', '--progress', '-f', 'json')
    assert shown['import_id'] == IMPORT_ID
    assert shown['id'] == images_of_base.disk_id and shown['base_id'] == base_vm.base_id
    assert len(no_real_waiting) == 1
    assert '\rdownloading [' + '=' * 15 + '>' in app.stderr.getvalue()


def test_import_by_url_failure_shows_the_records_error(app, nova):
    nova.post(NOVA + '/os-cloudlet/bases', status_code=202, json={'base': _record('queued')})
    error = 'cannot reach https://packages.example/demo-base.zip: [Errno 111] Connection refused'
    nova.get(NOVA + '/os-cloudlet/bases/' + IMPORT_ID, json={'base': _record('error', error=error)})
    with pytest.raises(exceptions.CommandError) as caught:
        run(app, bases.ImportBase, URL, '--wait')
    assert str(caught.value) == 'base import %s failed: %s' % (IMPORT_ID, error)


def test_import_by_url_refused_by_nova_shows_novas_message(app, nova):
    message = "base package URL refused: host 'packages.example' is not in the allowed hosts"
    nova.post(NOVA + '/os-cloudlet/bases', status_code=400,
              json={'badRequest': {'code': 400, 'message': message}})
    with pytest.raises(exceptions.CommandError, match='^%s \\(HTTP 400\\)$' % message):
        run(app, bases.ImportBase, URL)


def test_list_and_show(app, base):
    base_vm, images_of_base = base
    listed = run(app, bases.ListBase, '-f', 'json')
    assert listed == [{'ID': images_of_base.disk_id, 'Name': 'demo-base', 'Base ID': base_vm.base_id,
                       'Memory (MB)': 64, 'vCPUs': 2, 'Disk Size': base_vm.disk_size,
                       'Status': 'active', 'Visibility': 'private'}]
    for ref in ('demo-base', images_of_base.disk_id, base_vm.base_id, base_vm.base_id[:8]):
        assert run(app, bases.ShowBase, ref, '-f', 'json')['id'] == images_of_base.disk_id


def test_show_unknown_base_is_one_line(app, base):
    with pytest.raises(exceptions.CommandError, match="^no base image matches 'nope'$"):
        run(app, bases.ShowBase, 'nope')


def test_show_ambiguous_name(app, fake_images, package, other_package):
    for _, path in (package, other_package):
        model.import_base_package(fake_images, path, name='twin')
    with pytest.raises(exceptions.CommandError, match="^'twin' names 2 bases .*use an image id$"):
        run(app, bases.ShowBase, 'twin')


def test_show_falls_back_to_an_import_record(app, nova, base):
    nova.get(NOVA + '/os-cloudlet/bases/' + IMPORT_ID, json={'base': _record('validating')})
    assert run(app, bases.ShowBase, IMPORT_ID, '-f', 'json')['status'] == 'validating'
    nova.get(NOVA + '/os-cloudlet/bases/' + IMPORT_ID, status_code=404,
             json={'itemNotFound': {'code': 404, 'message': 'base import %s not found' % IMPORT_ID}})
    with pytest.raises(exceptions.CommandError, match="^no base image matches '%s'$" % IMPORT_ID):
        run(app, bases.ShowBase, IMPORT_ID)


def test_list_imports(app, nova):
    nova.get(NOVA + '/os-cloudlet/bases', json={'bases': [_record('error', error='boom')]})
    assert run(app, bases.ListBase, '--imports', '-f', 'json') == [{
        'ID': IMPORT_ID, 'Name': 'demo', 'Status': 'error',
        'Progress': {'stage': 'error', 'bytes_done': 0, 'bytes_total': None},
        'Base ID': None, 'Image ID': None, 'Error': 'boom'}]


def test_delete_reports_each_failure_and_deletes_the_rest(app, fake_images, base, caplog):
    with pytest.raises(exceptions.CommandError, match='^Failed to delete 1 of 2 bases.$'):
        with caplog.at_level(logging.ERROR):
            run(app, bases.DeleteBase, 'nope', 'demo-base')
    assert fake_images.images == {}
    assert "Failed to delete base with name or ID 'nope': no base image matches 'nope'" in caplog.text


def test_delete_an_import_record(app, nova, base):
    nova.delete(NOVA + '/os-cloudlet/bases/' + IMPORT_ID, status_code=204)
    run(app, bases.DeleteBase, IMPORT_ID)
    assert nova.last_request.method == 'DELETE'


def test_export_then_import_elsewhere_gives_the_same_base(app, base, tmp_path, cloudlet):
    base_vm, _ = base
    target = tmp_path / 'exported.zip'
    run(app, bases.ExportBase, 'demo-base', str(target), '--tmp-dir', str(tmp_path))
    other_glance = fakes.FakeImageService(tmp_path / 'other-glance')
    cloudlet.images = other_glance
    shown = run(FakeOSCApp(cloudlet), bases.ImportBase, str(target), '-f', 'json')
    assert shown['base_id'] == base_vm.base_id
    assert other_glance.images[shown['id']][props.BASE_ID] == base_vm.base_id
