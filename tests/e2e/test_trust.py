"""Signed and encrypted overlays on the box, with keys and certificates in its Barbican.

The user's way (the CLI encrypts and signs a file, nova's trusted_image_certificates
require the signature) runs the app; each bad case ends in ERROR with a fault naming
it, no domain and nothing written (test_bad_input.assert_refused_without_residue).
"""

import pytest

from cloudlet_box import services
from cloudlet_client import keys as client_keys
from cloudlet_client import overlays as client_overlays
from cloudlet_engine import crypto
from cloudlet_glance import images as glance_images
from cloudlet_glance import model
from cloudlet_glance import properties as props
from cloudlet_glance import signatures
from tests.e2e.conftest import app_get
from tests.e2e.conftest import RAM_STATE
from tests.e2e.test_bad_input import assert_refused_without_residue
from tests.fixtures import overlay_bytes
from tests.fixtures import signing


def key_manager(conn):
    return client_keys.KeyManager(conn.session, conn.config.get_region_name(), 'public')


class Vault:
    """Keys and certificates a test stored; deleted at the end."""

    def __init__(self, conn):
        self.manager, self.ids = key_manager(conn), []

    def key(self, name):
        key, key_id = self.manager.new_key('e2e-%s' % name)
        self.ids.append(key_id)
        return key, key_id

    def certificate(self, cert, name):
        self.ids.append(self.manager.store_certificate(signing.der(cert), 'e2e-%s' % name))
        return self.ids[-1]

    def cleanup(self):
        for ref in self.ids:
            self.manager.delete(ref)


@pytest.fixture(scope='module')
def vault(demo):
    made = Vault(demo)
    yield made
    made.cleanup()


@pytest.fixture(scope='module')
def pki(vault):
    """A CA, a signing certificate it issued, and a self-signed (untrusted) one, in Barbican."""
    ca_key, ca = signing.certificate('e2e CA', ca=True)
    signer_key, signer = signing.certificate('e2e signer', issuer=(ca_key, ca))
    rogue_key, rogue = signing.certificate('e2e rogue')
    return {'ca': vault.certificate(ca, 'ca'),
            'signer': (signer_key, vault.certificate(signer, 'signer')),
            'rogue': (rogue_key, vault.certificate(rogue, 'rogue'))}


def test_signed_encrypted_overlay_runs_the_app(demo, demo_cli, base, app_overlay, pki, servers, tmp_path):
    signer_key, signer_id = pki['signer']
    pem = tmp_path / 'signer.pem'
    pem.write_bytes(signing.pem_private_key(signer_key))
    server = demo_cli.json('cloudlet', 'server', 'synthesize', app_overlay['path'], '--name', 'e2e-trusted',
                           '--encrypt', '--sign-key', pem, '--signing-certificate', signer_id,
                           '--trusted-image-certificate', pki['ca'], '--wait')
    servers.track(server['id'])
    assert server['status'] == 'ACTIVE', server
    image = demo.image.get_image(demo.compute.get_server(server['id']).metadata[props.META_OVERLAY_ID])
    key_id = image.properties[props.OVERLAY_KEY_ID]
    try:
        assert image.properties[props.SIGNATURE_CERTIFICATE] == signer_id
        # What rests in Glance is the encrypted overlay (format version 2).
        head = b''.join(demo.image.download_image(image, stream=True).iter_content(64))[:16]
        assert overlay_bytes.header(head)[0] == 2
        assert app_get(demo, server['id'], '/cgi-bin/state')['ram'] == RAM_STATE
    finally:
        key_manager(demo).delete(key_id)


@pytest.fixture(scope='module')
def trust_cases(demo, alt, base, app_overlay, vault, pki, tmp_path_factory):
    """Overlay images for the bad cases: {case: (metadata, trusted certificates, expected fault)}."""
    directory = tmp_path_factory.mktemp('trust')
    images = glance_images.GlanceClientImages(demo.session, region_name=demo.config.get_region_name())
    plain = app_overlay['path']
    key, key_id = vault.key('key')
    encrypted = directory / 'encrypted.clo'
    client_overlays.encrypt_file(plain, encrypted, key)
    blob = encrypted.read_bytes()
    signer_key, signer_id = pki['signer']
    rogue_key, rogue_id = pki['rogue']
    alt_vault = Vault(alt)
    uploaded = []

    def upload(name, path_or_bytes, properties):
        path = path_or_bytes
        if isinstance(path_or_bytes, bytes):
            path = directory / ('%s.clo' % name)
            path.write_bytes(path_or_bytes)
        # Straight into Glance, as anyone can upload bytes (model.upload_overlay would refuse a
        # damaged file before sending it). Signature properties go on after the upload: Glance
        # checks a signature set before (a wrong one never becomes active); what is tested here
        # is the compute host's check.
        signature = {k: v for k, v in properties.items() if k in props.SIGNATURE_PROPERTIES}
        others = {k: v for k, v in properties.items() if k not in signature}
        uploaded.append(images.create('e2e-trust-%s' % name, dict(
            others, **{props.CLOUDLET_TYPE: props.OVERLAY, props.BASE_ID: base['base_id']}), hidden=True))
        with open(path, 'rb') as data:
            images.upload(uploaded[-1], data)
        if signature:
            images.update(uploaded[-1], signature)
        return {props.META_OVERLAY_ID: uploaded[-1]}

    with_key = {props.OVERLAY_KEY_ID: key_id}
    segments, _ = overlay_bytes.walk(blob)
    offset, length = segments[0]
    tampered = bytearray(blob)
    tampered[offset + length - 1] ^= 0x01           # the last byte of segment 0's ciphertext
    other_key_id = vault.key('other')[1]
    gone_key, gone_id = key_manager(demo).new_key('e2e-deleted')
    gone = directory / 'gone.clo'
    client_overlays.encrypt_file(plain, gone, gone_key)
    cases = {
        'wrong-key': (dict(upload('wrong-key', encrypted, with_key), **{props.OVERLAY_KEY_ID: other_key_id}),
                      None, 'overlay cannot be decrypted'),
        'someone-elses-key': (dict(upload('alt-key', encrypted, {}),
                                   **{props.OVERLAY_KEY_ID: alt_vault.key('alt')[1]}),
                              None, 'not in the key manager, or not readable by this project'),
        'tampered-ciphertext': (upload('tampered', overlay_bytes.rechecksum(bytes(tampered)), with_key),
                                None, 'overlay cannot be decrypted'),
        'truncated-tag': (upload('truncated', blob[:-crypto.TAG_BYTES], with_key), None, 'truncated'),
        'deleted-key': (upload('deleted', gone, {props.OVERLAY_KEY_ID: gone_id}), None,
                        'not in the key manager, or not readable by this project'),
        'no-key': (upload('no-key', encrypted, {}), None, 'overlay key missing'),
        'plain-with-a-key': (upload('plain-keyed', plain, with_key), None, 'overlay refused'),
        'untrusted-certificate': (upload('untrusted', encrypted, dict(
            with_key, **signatures.sign_file(encrypted, rogue_key, rogue_id))), [pki['ca']],
            'signature cannot be verified'),
        'unsigned-but-required': (upload('unsigned', encrypted, with_key), [pki['ca']], 'is not signed'),
        'signature-of-other-bytes': (upload('bad-signature', encrypted, dict(
            with_key, **signatures.sign_file(plain, signer_key, signer_id))), [pki['ca']],
            'overlay signature does not verify'),
    }
    key_manager(demo).delete(gone_id)
    yield cases
    model.delete_quietly(images, uploaded)
    alt_vault.cleanup()


CASES = ['wrong-key', 'someone-elses-key', 'tampered-ciphertext', 'truncated-tag', 'deleted-key', 'no-key',
         'plain-with-a-key', 'untrusted-certificate', 'unsigned-but-required', 'signature-of-other-bytes']


@pytest.mark.parametrize('case', CASES)
def test_untrusted_overlay_is_refused(box, demo, base, trust_cases, case):
    metadata, trusted, expected = trust_cases[case]
    assert_refused_without_residue(box, demo, base, metadata, expected, trusted_certificates=trusted)


def test_key_never_reaches_the_compute_hosts_disk_or_logs(box, demo, base, trust_cases):
    """After the cases above: no key bytes in the state directory or nova's log."""
    # The wrong-key case's key is the one the compute host did read (and fail with).
    metadata = trust_cases['wrong-key'][0]
    key_id = metadata[props.OVERLAY_KEY_ID]
    raw = key_manager(demo)._client.secrets.get(key_id).payload
    assert isinstance(raw, bytes) and len(raw) == crypto.KEY_BYTES
    logs = [box.logs / (services.compute_service(box, host).name + '.log')
            for host in (None,) + tuple(box.compute_hosts)]
    for path in logs + [p for state_dir in box.state_dirs for p in state_dir.rglob('*') if p.is_file()]:
        data = path.read_bytes()
        assert raw not in data and raw.hex().encode() not in data, path
