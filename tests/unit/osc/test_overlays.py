"""openstack cloudlet overlay create | list | show | download | delete."""

import logging
import os

from osc_lib import exceptions
from osc_lib import utils
import pytest

from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_osc.v1 import overlays
from cloudlet_osc import wait
from tests.unit.osc.conftest import bodies
from tests.unit.osc.conftest import FakeBinaryStdout
from tests.unit.osc.conftest import NOVA
from tests.unit.osc.conftest import run
from tests.unit.osc.conftest import server
from tests.unit.osc.conftest import SERVER_ID
from tests.unit.osc.conftest import write_overlay

ACTION = NOVA + '/servers/%s/action' % SERVER_ID


@pytest.fixture
def overlay(fake_images, base, tmp_path):
    """An overlay file of the base uploaded as an overlay image: (image id, file bytes)."""
    path = write_overlay(tmp_path / 'app.clo', base[0], padding=300000)
    image_id = model.upload_overlay(fake_images, path, 'app-overlay', base[0].base_id)
    with open(path, 'rb') as f:
        return image_id, f.read()


def _capture_image(fake_images, base_id):
    """The image nova-api's snapshot creates for the action (queued, filled by the compute host)."""
    return fake_images.create('app-overlay', {props.CLOUDLET_TYPE: props.OVERLAY, props.BASE_ID: base_id,
                                              props.CODEC: 'zstd'})


def test_create_by_server_name_asks_nova_for_the_action(app, nova, fake_images, base):
    image_id = _capture_image(fake_images, base[0].base_id)
    nova.get(NOVA + '/servers/detail', json={'servers': [server()]})
    nova.post(ACTION, status_code=202, json={'image_id': image_id})
    shown = run(app, overlays.CreateOverlay, 'app', '--name', 'app-overlay', '--codec', 'zstd',
                '--property', 'app=demo', '-f', 'json')
    assert bodies(nova, 'POST', ACTION) == [{'cloudlet-create-overlay': {
        'name': 'app-overlay', 'metadata': {'app': 'demo'}, 'options': {'codec': 'zstd'}}}]
    assert (shown['id'], shown['status'], shown['base_id'], shown['codec']) == \
        (image_id, 'queued', base[0].base_id, 'zstd')


def test_create_wait_polls_glance_until_active(app, nova, fake_images, base, tmp_path, monkeypatch):
    image_id = _capture_image(fake_images, base[0].base_id)
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, status_code=202, json={'image_id': image_id})
    path = write_overlay(tmp_path / 'captured.clo', base[0])
    # The compute host uploads while the command sleeps between two polls.
    polls = []

    def capture_finishes(seconds):
        polls.append(seconds)
        if len(polls) == 2:
            model.upload_file(fake_images, image_id, path, 'uploading overlay', None)
    monkeypatch.setattr(wait, 'sleep', capture_finishes)
    shown = run(app, overlays.CreateOverlay, SERVER_ID, '--name', 'app-overlay', '--wait', '-f', 'json')
    assert shown['status'] == 'active' and shown['size'] == os.path.getsize(path)
    assert len(polls) == 2


def test_create_wait_when_nova_deleted_the_image(app, nova, fake_images, base, monkeypatch):
    image_id = _capture_image(fake_images, base[0].base_id)
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, status_code=202, json={'image_id': image_id})
    monkeypatch.setattr(wait, 'sleep', lambda s: fake_images.images.pop(image_id))
    with pytest.raises(exceptions.CommandError,
                       match='^overlay image %s is gone: capturing server %s failed' % (image_id, SERVER_ID)):
        run(app, overlays.CreateOverlay, SERVER_ID, '--name', 'app-overlay', '--wait')


def test_create_on_a_server_nova_refuses(app, nova):
    message = ('server %s was not booted from a cloudlet base VM image (image property '
               'cloudlet_type=cloudlet_base_disk), so it has no base to make an overlay against; use '
               'cloudlet-create-base to capture it as a base VM' % SERVER_ID)
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, status_code=409, json={'conflictingRequest': {'code': 409, 'message': message}})
    with pytest.raises(exceptions.CommandError) as caught:
        run(app, overlays.CreateOverlay, SERVER_ID, '--name', 'x')
    assert str(caught.value) == message + ' (HTTP 409)'


def test_create_for_an_unknown_server(app, nova):
    nova.get(NOVA + '/servers/detail', json={'servers': []})
    with pytest.raises(exceptions.CommandError, match="^no server with a name or ID of 'ghost' exists \\(HTTP 404\\)$"):
        run(app, overlays.CreateOverlay, 'ghost', '--name', 'x')


def test_list_show_and_list_by_base(app, fake_images, base, overlay, other_package):
    image_id, data = overlay
    other = model.import_base_package(fake_images, other_package[1])
    expected = {'ID': image_id, 'Name': 'app-overlay', 'Base ID': base[0].base_id, 'Size': len(data),
                'Status': 'active', 'Codec': None}
    assert run(app, overlays.ListOverlay, '-f', 'json') == [expected]
    assert run(app, overlays.ListOverlay, '--base', 'demo-base', '-f', 'json') == [expected]
    assert run(app, overlays.ListOverlay, '--base', base[0].base_id, '-f', 'json') == [expected]
    assert run(app, overlays.ListOverlay, '--base', other.disk_id, '-f', 'json') == []
    shown = run(app, overlays.ShowOverlay, 'app-overlay', '-f', 'json')
    assert (shown['id'], shown['base_id'], shown['size']) == (image_id, base[0].base_id, len(data))


def test_show_an_image_that_is_no_overlay(app, base):
    with pytest.raises(exceptions.CommandError, match='^image %s is not a cloudlet overlay$' % base[1].disk_id):
        run(app, overlays.ShowOverlay, base[1].disk_id)


def test_download_to_a_file(app, overlay, tmp_path):
    image_id, data = overlay
    target = tmp_path / 'downloads' / 'out.clo'
    target.parent.mkdir()
    run(app, overlays.DownloadOverlay, 'app-overlay', '--file', str(target), '--progress')
    assert target.read_bytes() == data
    size = utils.format_size(len(data))
    assert app.stderr.getvalue().endswith('100%% %s/%s\n' % (size, size))
    assert os.listdir(target.parent) == ['out.clo']


def test_failed_download_leaves_no_file(app, fake_images, overlay, tmp_path):
    image_id, _ = overlay
    fake_images.images[image_id]['status'] = 'queued'     # no data: the fake refuses to download
    downloads = tmp_path / 'downloads'
    downloads.mkdir()
    with pytest.raises(exceptions.CommandError, match='has no data'):
        run(app, overlays.DownloadOverlay, image_id, '--file', str(downloads / 'out.clo'))
    assert os.listdir(downloads) == []


def test_download_to_stdout_but_never_to_a_terminal(app, overlay):
    _, data = overlay
    app.stdout = FakeBinaryStdout()
    run(app, overlays.DownloadOverlay, 'app-overlay')
    assert app.stdout.buffer.getvalue() == data
    app.stdout.isatty = lambda: True
    with pytest.raises(exceptions.CommandError, match='^not writing an overlay to a terminal'):
        run(app, overlays.DownloadOverlay, 'app-overlay')


def test_delete_several(app, fake_images, overlay, caplog):
    image_id, _ = overlay
    with pytest.raises(exceptions.CommandError, match='^Failed to delete 1 of 2 overlays.$'):
        with caplog.at_level(logging.ERROR):
            run(app, overlays.DeleteOverlay, image_id, 'missing')
    assert image_id not in fake_images.images
    assert "'missing': no overlay image matches 'missing'" in caplog.text


def test_create_encrypted_stores_a_new_key_and_names_it_in_the_action(app, nova, fake_images, base,
                                                                      key_manager):
    image_id = _capture_image(fake_images, base[0].base_id)
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, status_code=202, json={'image_id': image_id})
    run(app, overlays.CreateOverlay, SERVER_ID, '--name', 'app-overlay', '--encrypt', '-f', 'json')
    [key_id] = key_manager.keys
    assert bodies(nova, 'POST', ACTION) == [{'cloudlet-create-overlay': {
        'name': 'app-overlay', 'options': {'encryption_key_id': key_id}}}]
    assert key_manager.deleted == []


def test_create_encrypted_refused_by_nova_deletes_the_key(app, nova, key_manager):
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server()})
    nova.post(ACTION, status_code=409, json={'conflictingRequest': {'code': 409, 'message': 'busy'}})
    with pytest.raises(exceptions.CommandError, match='busy'):
        run(app, overlays.CreateOverlay, SERVER_ID, '--name', 'x', '--encrypt')
    assert key_manager.deleted == list(key_manager.keys) and len(key_manager.deleted) == 1
