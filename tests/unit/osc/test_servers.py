"""openstack cloudlet server synthesize | resume-base: what reaches POST /servers, and the failures."""

import base64
import io
import re

from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives import hashes
from osc_lib import exceptions
import pytest

from cloudlet_engine import errors as engine_errors
from cloudlet_engine import format as overlay_format
from cloudlet_engine import source
from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_osc.v1 import servers
from tests.fixtures import http_server
from tests.fixtures import signing
from tests.unit.osc.conftest import bodies
from tests.unit.osc.conftest import flavor
from tests.unit.osc.conftest import NOVA
from tests.unit.osc.conftest import run
from tests.unit.osc.conftest import server
from tests.unit.osc.conftest import SERVER_ID
from tests.unit.osc.conftest import write_overlay

NET_A = '1e0c7d4e-5a7f-4d57-9a0b-6c2f0f4b1a01'
NET_B = '1e0c7d4e-5a7f-4d57-9a0b-6c2f0f4b1a02'
FLAVORS = [flavor('big', 'c1.big', 64, 2, 20), flavor('fit', 'c1.base', 64, 2, 1),
           flavor('m1', 'm1.small', 2048, 1, 20)]


@pytest.fixture
def boot(nova, base):
    """nova answers the flavor list, the server creation and the server; returns the base's images."""
    nova.get(NOVA + '/flavors/detail', json={'flavors': FLAVORS})
    nova.post(NOVA + '/servers', status_code=202, json={'server': {'id': SERVER_ID, 'links': []}})
    nova.get(NOVA + '/servers/' + SERVER_ID, json={'server': server(image={'id': base[1].disk_id})})
    return base[1]


def _server_request(nova):
    requests = bodies(nova, 'POST', NOVA + '/servers')
    assert len(requests) == 1
    return requests[0]['server']


def _overlay_images(fake_images):
    return [i for i in fake_images.images.values() if i.get(props.CLOUDLET_TYPE) == props.OVERLAY]


def test_synthesize_from_a_local_file_uploads_it_first(app, nova, fake_images, base, boot, tmp_path):
    path = write_overlay(tmp_path / 'app.clo', base[0])
    app.stderr.tty = True
    shown = run(app, servers.SynthesizeServer, path, '--name', 'app', '--property', 'app=demo',
                '-f', 'json')
    [uploaded] = _overlay_images(fake_images)
    assert (uploaded['name'], uploaded[props.BASE_ID], uploaded['os_hidden']) == \
        ('app.clo', base[0].base_id, True)
    assert _server_request(nova) == {
        'name': 'app', 'imageRef': boot.disk_id, 'flavorRef': 'fit', 'networks': 'auto',
        'metadata': {'app': 'demo', props.META_OVERLAY_ID: uploaded['id']}}
    assert shown == {'id': SERVER_ID, 'name': 'app', 'status': 'BUILD', 'flavor': 'c1.base',
                     'base': 'demo-base', 'base_image_id': boot.disk_id, 'overlay': None, 'fault': None}
    assert '\ruploading overlay [' in app.stderr.getvalue()


def test_synthesize_from_a_url_reads_only_the_header(app, nova, fake_images, base, boot, tmp_path,
                                                      monkeypatch):
    write_overlay(tmp_path / 'app.clo', base[0], padding=8 << 20)
    opened = []

    def spy(*args, **kwargs):
        opened.append(real_open(*args, **kwargs))
        return opened[-1]
    real_open = source.open_overlay
    monkeypatch.setattr(source, 'open_overlay', spy)
    with http_server.DirectoryHTTPServer(str(tmp_path)) as web:
        url = web.url('app.clo')
        run(app, servers.SynthesizeServer, url, '--name', 'app', '--network', 'auto', '-f', 'json')
    assert _server_request(nova)['metadata'] == {props.META_OVERLAY_URL: url}
    assert _server_request(nova)['networks'] == 'auto'
    assert 0 < opened[0].count < 4096          # of an 8 MiB overlay
    assert _overlay_images(fake_images) == []


def test_synthesize_from_an_overlay_image(app, nova, fake_images, base, boot, tmp_path):
    image_id = model.upload_overlay(fake_images, write_overlay(tmp_path / 'a.clo', base[0]), 'app-overlay',
                                    base[0].base_id)
    run(app, servers.SynthesizeServer, 'app-overlay', '--name', 'app', '--network', NET_A,
        '--network', NET_B, '-f', 'json')
    request = _server_request(nova)
    assert request['metadata'] == {props.META_OVERLAY_ID: image_id}
    assert request['networks'] == [{'uuid': NET_A}, {'uuid': NET_B}]


def test_synthesize_on_a_cloud_without_the_base(app, nova, fake_images, base, other_package, tmp_path):
    other_vm = other_package[0]
    path = write_overlay(tmp_path / 'app.clo', other_vm)
    with pytest.raises(exceptions.CommandError) as caught:
        run(app, servers.SynthesizeServer, path, '--name', 'app')
    assert str(caught.value) == (
        'overlay %s was made against base other-base (%s), which this cloud does not have (base ID %s): '
        'import its base package first (openstack cloudlet base import)'
        % (path, other_vm.base_id[:12], other_vm.base_id))
    assert _overlay_images(fake_images) == [] and bodies(nova, 'POST', NOVA + '/servers') == []


def test_synthesize_with_a_flavor_the_driver_would_refuse(app, nova, fake_images, base, tmp_path):
    nova.get(NOVA + '/flavors/m1', json={'flavor': FLAVORS[2]})
    path = write_overlay(tmp_path / 'app.clo', base[0])
    with pytest.raises(exceptions.CommandError,
                       match='^flavor m1.small has 2048 MB / 1 vCPUs; base demo-base needs 64 MB / 2 vCPUs$'):
        run(app, servers.SynthesizeServer, path, '--name', 'app', '--flavor', 'm1')
    assert _overlay_images(fake_images) == [] and bodies(nova, 'POST', NOVA + '/servers') == []


def test_synthesize_refused_by_nova_deletes_the_uploaded_overlay(app, nova, fake_images, base, boot,
                                                                 tmp_path):
    message = 'Quota exceeded for instances: Requested 1, but already used 10 of 10 instances'
    nova.post(NOVA + '/servers', status_code=403, json={'forbidden': {'code': 403, 'message': message}})
    path = write_overlay(tmp_path / 'app.clo', base[0])
    with pytest.raises(exceptions.CommandError, match='^%s \\(HTTP 403\\)$' % message):
        run(app, servers.SynthesizeServer, path, '--name', 'app')
    assert fake_images.count('create') == 5 and _overlay_images(fake_images) == []


def test_synthesize_wait_reports_the_fault_of_an_error(app, nova, base, boot, tmp_path):
    fault = {'code': 500, 'message': 'Build of instance %s aborted: overlay was made for base abc, not '
                                     'for base def' % SERVER_ID}
    nova.get(NOVA + '/servers/' + SERVER_ID, [{'json': {'server': server()}},
                                             {'json': {'server': server('ERROR', fault=fault)}}])
    path = write_overlay(tmp_path / 'app.clo', base[0])
    with pytest.raises(exceptions.CommandError) as caught:
        run(app, servers.SynthesizeServer, path, '--name', 'app', '--wait')
    assert str(caught.value) == 'server app (%s) is in ERROR: %s' % (SERVER_ID, fault['message'])


def test_synthesize_wait_until_active(app, nova, base, boot, tmp_path, no_real_waiting):
    nova.get(NOVA + '/servers/' + SERVER_ID, [
        {'json': {'server': server()}},
        {'json': {'server': server('ACTIVE', metadata={props.META_OVERLAY_URL: 'http://o/a.clo'})}}])
    shown = run(app, servers.SynthesizeServer, write_overlay(tmp_path / 'a.clo', base[0]), '--name', 'app',
                '--wait', '-f', 'json')
    assert (shown['status'], shown['overlay']) == ('ACTIVE', 'http://o/a.clo')
    assert len(no_real_waiting) == 1


def test_synthesize_with_base_given_does_not_fetch_the_url(app, nova, base, boot):
    url = 'http://127.0.0.1:9/unreachable-from-here.clo'
    run(app, servers.SynthesizeServer, url, '--base', 'demo-base', '--name', 'app', '-f', 'json')
    assert _server_request(nova)['metadata'] == {props.META_OVERLAY_URL: url}
    with pytest.raises(exceptions.CommandError, match='^cannot reach %s: ' % url):
        run(app, servers.SynthesizeServer, url, '--name', 'app')


def test_synthesize_with_the_wrong_base_given(app, base, other_package, fake_images, tmp_path):
    model.import_base_package(fake_images, other_package[1])
    path = write_overlay(tmp_path / 'a.clo', base[0])
    with pytest.raises(exceptions.CommandError, match='not against base other-base$'):
        run(app, servers.SynthesizeServer, path, '--base', 'other-base', '--name', 'app')


def test_synthesize_from_something_that_is_no_overlay(app, base, tmp_path):
    missing = str(tmp_path / 'typo.clo')
    with pytest.raises(exceptions.CommandError,
                       match='^%s is neither an http\\(s\\) URL, a local file nor an overlay image$' % missing):
        run(app, servers.SynthesizeServer, missing, '--name', 'app')


def test_synthesize_from_a_file_that_is_no_overlay(app, base, tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('hello')
    with pytest.raises(exceptions.CommandError, match='^overlay truncated'):
        run(app, servers.SynthesizeServer, str(path), '--name', 'app')


@pytest.mark.parametrize('argv,message', [
    (['--property', 'overlay_url=http://x/y'], '--property overlay_url: set by this command'),
    (['--network', 'none', '--network', NET_A], '--network takes none or auto (alone) or network IDs, not none'),
    (['--network', 'private-net'], 'not private-net'),
])
def test_bad_requests_are_refused_before_anything_happens(app, nova, fake_images, base, tmp_path, argv,
                                                          message):
    path = write_overlay(tmp_path / 'a.clo', base[0])
    with pytest.raises(exceptions.CommandError, match=re.escape(message)):
        run(app, servers.SynthesizeServer, path, '--name', 'app', *argv)
    assert _overlay_images(fake_images) == [] and nova.request_history == []


def test_resume_base(app, nova, boot):
    shown = run(app, servers.ResumeBaseServer, 'demo-base', '--name', 'app', '-f', 'json')
    assert _server_request(nova) == {'name': 'app', 'imageRef': boot.disk_id, 'flavorRef': 'fit',
                                     'networks': 'auto'}
    assert (shown['base'], shown['overlay']) == ('demo-base', None)


def test_resume_base_without_ports(app, nova, boot):
    run(app, servers.ResumeBaseServer, 'demo-base', '--name', 'app', '--network', 'none')
    assert _server_request(nova)['networks'] == 'none'


def test_resume_base_without_a_fitting_flavor(app, nova, base):
    nova.get(NOVA + '/flavors/detail', json={'flavors': FLAVORS[2:]})
    with pytest.raises(exceptions.CommandError, match='^no flavor available to you has 64 MB RAM, 2 vCPUs'):
        run(app, servers.ResumeBaseServer, 'demo-base', '--name', 'app')


# ---------------------------------------------------------------- encrypted and signed overlays

def _signing_key(tmp_path):
    key, cert = signing.certificate('signer')
    path = tmp_path / 'signer.pem'
    path.write_bytes(signing.pem_private_key(key))
    return str(path), cert


def test_synthesize_encrypts_and_signs_the_file_before_upload(app, nova, fake_images, base, boot, tmp_path,
                                                              key_manager):
    path = write_overlay(tmp_path / 'app.clo', base[0])
    pem, cert = _signing_key(tmp_path)
    run(app, servers.SynthesizeServer, path, '--name', 'app', '--encrypt', '--sign-key', pem,
        '--signing-certificate', 'cert-1', '--trusted-image-certificate', 'ca-1', '-f', 'json')
    [uploaded] = _overlay_images(fake_images)
    [(key_id, key)] = key_manager.keys.items()
    assert uploaded[props.OVERLAY_KEY_ID] == key_id
    data = fake_images.read_data(uploaded['id'])
    # What left this machine is the encrypted overlay; it reads back with the key.
    reader = overlay_format.OverlayReader(io.BytesIO(data), key=key)
    assert reader.encrypted and list(reader.segments()) == []
    with pytest.raises(engine_errors.KeyRequired):
        list(overlay_format.OverlayReader(io.BytesIO(data)).segments())
    # The signature is over the uploaded (encrypted) bytes.
    signed = {k: uploaded[k] for k in props.SIGNATURE_PROPERTIES}
    assert signed[props.SIGNATURE_CERTIFICATE] == 'cert-1'
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    cert.public_key().verify(base64.b64decode(signed[props.SIGNATURE]), digest.finalize(),
                             padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
                             asym_utils.Prehashed(hashes.SHA256()))
    request = _server_request(nova)
    assert request['trusted_image_certificates'] == ['ca-1']
    assert request['metadata'] == {props.META_OVERLAY_ID: uploaded['id']}
    assert key_manager.deleted == []


def test_a_refused_synthesis_deletes_the_new_key_and_the_upload(app, nova, fake_images, base, boot, tmp_path,
                                                                key_manager):
    nova.post(NOVA + '/servers', status_code=400, json={'badRequest': {'code': 400, 'message': 'no'}})
    path = write_overlay(tmp_path / 'app.clo', base[0])
    with pytest.raises(exceptions.CommandError):
        run(app, servers.SynthesizeServer, path, '--name', 'app', '--encrypt')
    assert _overlay_images(fake_images) == []
    assert key_manager.deleted == list(key_manager.keys)


def test_a_url_overlay_names_its_key_in_the_server_metadata(app, nova, base, boot, key_manager):
    run(app, servers.SynthesizeServer, 'https://overlays.test/app.clo', '--base', base[1].disk_id,
        '--name', 'app', '--key-id', 'key-9')
    assert _server_request(nova)['metadata'] == {props.META_OVERLAY_URL: 'https://overlays.test/app.clo',
                                                 props.OVERLAY_KEY_ID: 'key-9'}


@pytest.mark.parametrize('argv,message', [
    (['--sign-key', 'key.pem'], '--sign-key and --signing-certificate go together'),
    (['--encrypt', '--key-id', 'k'], 'not allowed with argument'),
    (['--property', 'cloudlet_overlay_key_id=k'], '--property cloudlet_overlay_key_id: set by this command'),
])
def test_bad_trust_arguments_are_refused_before_anything_happens(app, nova, fake_images, base, tmp_path,
                                                                 key_manager, argv, message):
    path = write_overlay(tmp_path / 'a.clo', base[0])
    with pytest.raises((exceptions.CommandError, SystemExit)) as caught:
        run(app, servers.SynthesizeServer, path, '--name', 'app', *argv)
    if isinstance(caught.value, exceptions.CommandError):
        assert message in str(caught.value)
    assert _overlay_images(fake_images) == [] and nova.request_history == [] and key_manager.keys == {}


def test_only_a_local_file_can_be_encrypted_or_signed_here(app, nova, base, key_manager, tmp_path):
    pem, _ = _signing_key(tmp_path)
    for argv in (['--encrypt'], ['--sign-key', pem, '--signing-certificate', 'c']):
        with pytest.raises(exceptions.CommandError, match='apply to a local overlay file'):
            run(app, servers.SynthesizeServer, 'https://overlays.test/app.clo', '--base', base[1].disk_id,
                '--name', 'app', *argv)
    assert nova.request_history == [] and key_manager.keys == {}
