"""Encrypted and signed overlays through the whole nova stack (nova's fake libvirt).

The key manager is a fake (castellan's API patched): what is real here is
nova's compute manager, our driver reading keys and certificates with the
request's context, cursive verifying while the overlay streams, and the
engine decrypting. The real Barbican is exercised by tests/e2e/test_trust.py.
"""

import io
import os
from unittest import mock

from castellan.common import exception as castellan_exc
from castellan.common.objects import symmetric_key
from castellan.common.objects import x_509
import fixtures

from cloudlet_engine import crypto
from cloudlet_engine import format as overlay_format
from cloudlet_glance import properties as props
from cloudlet_glance import signatures
from tests.fixtures import fake_key_manager
from tests.fixtures import overlay_bytes
from tests.fixtures import signing
from tests.functional import cloudlet_base
from tests.functional import test_capture


class TrustedOverlayTestBase(cloudlet_base.CloudletTestBase):

    def setUp(self):
        super().setUp()
        self.keys = fake_key_manager.FakeKeyManager()
        self.useFixture(fixtures.MockPatch('castellan.key_manager.API', return_value=self.keys))
        self.key = crypto.new_key()
        self.key_id = self.keys.add(symmetric_key.SymmetricKey('AES', 256, self.key))
        self.disk, self.pages = self.synthetic.changed()
        self.plain = self.synthetic.make_overlay(os.path.join(self.work, 'app.clo'), self.disk, self.pages)
        self.encrypted = os.path.join(self.work, 'app-encrypted.clo')
        with open(self.plain, 'rb') as src, open(self.encrypted, 'wb') as out:
            overlay_format.encrypt_copy(src, out, self.key)
        ca_key, ca = signing.certificate('CA', ca=True)
        self.ca_id = self.keys.add(x_509.X509(signing.der(ca)))
        self.signer_key, signer = signing.certificate('signer', issuer=(ca_key, ca))
        self.signer_id = self.keys.add(x_509.X509(signing.der(signer)))

    def upload(self, path, **properties):
        return cloudlet_base.model.upload_overlay(self.images, path, 'overlay', self.synthetic.base.base_id,
                                                  extra_properties=properties)

    def signed(self, path, key=None, cert_id=None):
        return signatures.sign_file(path, key or self.signer_key, cert_id or self.signer_id)

    def create(self, metadata, expected_state='ACTIVE', trusted=None):
        body = self._build_server(image_uuid=self.base_images.disk_id, flavor_id=self.flavor_id,
                                  networks='none')
        body['metadata'] = metadata
        if trusted:
            body['trusted_image_certificates'] = trusted
        return self._wait_for_state_change(self.api.post_server({'server': body}), expected_state)

    def refused(self, metadata, message, trusted=None):
        server = self.create(metadata, 'ERROR', trusted)
        self.assertIn(message, server['fault']['message'])
        self.assertEqual([], self.restores_of(server))
        self.assert_no_launch_files(server)
        return server


class EncryptedOverlayTest(TrustedOverlayTestBase):

    def assert_synthesized(self, server):
        self.assertEqual(1, len(self.restores_of(server)))
        self.assertEqual(self.pages, self.domain(server)._fake_pages)
        self.assertEqual(self.disk, self.disk_bytes(os.path.join(self.instance_dir(server), 'disk')))

    def test_key_named_on_the_overlay_image(self):
        overlay_id = self.upload(self.encrypted, **{props.OVERLAY_KEY_ID: self.key_id})
        server = self.create({props.META_OVERLAY_ID: overlay_id})
        self.assert_synthesized(server)
        # Read with the request's context: the server owner's project, not an admin one.
        self.assertEqual([server['tenant_id']], [c.project_id for c in self.keys.contexts])
        self.assertEqual([False], [c.is_admin for c in self.keys.contexts])

    def test_key_named_in_the_server_metadata_for_a_url(self):
        http = self.useFixture(cloudlet_base.OverlayHTTPServer(self.work))
        self.assert_synthesized(self.create({props.META_OVERLAY_URL: http.url('app-encrypted.clo'),
                                             props.OVERLAY_KEY_ID: self.key_id}))

    def test_signed_and_encrypted_with_trusted_certificates(self):
        overlay_id = self.upload(self.encrypted, **dict(self.signed(self.encrypted),
                                                        **{props.OVERLAY_KEY_ID: self.key_id}))
        self.assert_synthesized(self.create({props.META_OVERLAY_ID: overlay_id}, trusted=[self.ca_id]))

    def test_wrong_key(self):
        other = self.keys.add(symmetric_key.SymmetricKey('AES', 256, crypto.new_key()))
        overlay_id = self.upload(self.encrypted)
        self.refused({props.META_OVERLAY_ID: overlay_id, props.OVERLAY_KEY_ID: other},
                     'overlay cannot be decrypted')

    def test_deleted_or_foreign_key(self):
        overlay_id = self.upload(self.encrypted)
        self.refused({props.META_OVERLAY_ID: overlay_id,
                      props.OVERLAY_KEY_ID: '00000000-0000-4000-8000-999999999999'},
                     'is not in the key manager, or not readable by this project')

    def test_key_manager_unreachable(self):
        overlay_id = self.upload(self.encrypted, **{props.OVERLAY_KEY_ID: self.key_id})
        with mock.patch.object(self.keys, 'get', side_effect=castellan_exc.KeyManagerError(reason='down')):
            self.refused({props.META_OVERLAY_ID: overlay_id}, 'the key manager is unavailable')

    def test_no_key_for_an_encrypted_overlay(self):
        self.refused({props.META_OVERLAY_ID: self.upload(self.encrypted)}, 'overlay key missing')

    def test_a_plain_overlay_where_a_key_is_named(self):
        overlay_id = self.upload(self.plain)
        self.refused({props.META_OVERLAY_ID: overlay_id, props.OVERLAY_KEY_ID: self.key_id},
                     'overlay refused: a key was given but the overlay is not encrypted')

    def test_tampered_ciphertext(self):
        overlay_id = self.upload(self.encrypted, **{props.OVERLAY_KEY_ID: self.key_id})
        blob = bytearray(self.image_data(overlay_id))
        offset, length = overlay_bytes.walk(bytes(blob))[0][0]
        blob[offset + length - 1] ^= 0x01       # the last byte of segment 0's ciphertext
        self.glance._imagedata[overlay_id] = overlay_bytes.rechecksum(bytes(blob))
        self.refused({props.META_OVERLAY_ID: overlay_id}, 'overlay cannot be decrypted')


class SignedOverlayTest(TrustedOverlayTestBase):

    def test_unsigned_overlay_when_the_cloud_requires_signatures(self):
        self.flags(verify_overlay_signatures=True, group='cloudlet_trust')
        self.refused({props.META_OVERLAY_ID: self.upload(self.plain)}, 'is not signed')

    def test_signed_overlay_when_the_cloud_requires_signatures(self):
        self.flags(verify_overlay_signatures=True, group='cloudlet_trust')
        overlay_id = self.upload(self.plain, **self.signed(self.plain))
        self.create({props.META_OVERLAY_ID: overlay_id})

    def test_signature_of_other_bytes(self):
        overlay_id = self.upload(self.plain, **self.signed(self.encrypted))
        self.refused({props.META_OVERLAY_ID: overlay_id}, 'overlay signature does not verify')

    def test_untrusted_certificate(self):
        rogue_key, rogue = signing.certificate('rogue')
        rogue_id = self.keys.add(x_509.X509(signing.der(rogue)))
        overlay_id = self.upload(self.plain, **self.signed(self.plain, rogue_key, rogue_id))
        self.refused({props.META_OVERLAY_ID: overlay_id}, 'signature cannot be verified', trusted=[self.ca_id])

    def test_trusted_certificates_require_a_signature(self):
        self.refused({props.META_OVERLAY_ID: self.upload(self.plain)}, 'is not signed', trusted=[self.ca_id])


class EncryptedCaptureTest(TrustedOverlayTestBase):
    """cloudlet-create-overlay with a key: the overlay rests encrypted in Glance."""

    def test_captured_overlay_is_encrypted_with_the_named_key(self):
        server = self.create_cloudlet_server()
        disk, pages = test_capture.CaptureTest.change_guest(self, server)
        image_id = self.create_image_ok(server, 'app-overlay', {props.CLOUDLET_TYPE: props.OVERLAY,
                                                                props.OVERLAY_KEY_ID: self.key_id})
        blob = self.image_data(image_id)
        reader = overlay_format.OverlayReader(io.BytesIO(blob), key=self.key)
        self.assertTrue(reader.encrypted)
        clone = self.create_cloudlet_server(metadata={props.META_OVERLAY_ID: image_id})
        self.assertEqual(pages, self.domain(clone)._fake_pages)
        self.assertEqual(disk, self.disk_bytes(os.path.join(self.instance_dir(clone), 'disk')))
