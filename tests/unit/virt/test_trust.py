"""cloudlet_nova.virt.trust: the overlay's key from the key manager, its signature verifier."""

import os
import types
from unittest import mock
import uuid

from castellan.common import exception as castellan_exc
from castellan.common.objects import symmetric_key
from castellan.common.objects import x_509
from cryptography import exceptions as cryptography_exc
import nova.conf
from nova import objects
from nova import test

from cloudlet_glance import properties as props
from cloudlet_nova import conf as cloudlet_conf
from cloudlet_nova.virt import faults
from cloudlet_nova.virt import trust
from tests.fixtures import fake_key_manager
from tests.fixtures import signing

CONF = nova.conf.CONF
DATA = b'overlay bytes ' * 1000


def instance(metadata=None, trusted=None):
    certs = objects.TrustedCerts(ids=trusted) if trusted else None
    return types.SimpleNamespace(uuid='uuid-1', metadata=metadata or {}, trusted_certs=certs)


class TrustTestCase(test.NoDBTestCase):

    def setUp(self):
        cloudlet_conf.register_opts(CONF)
        super().setUp()
        self.manager = fake_key_manager.FakeKeyManager()
        patcher = mock.patch('castellan.key_manager.API', return_value=self.manager)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.context = object()

    def store(self, managed):
        ref = str(uuid.uuid4())
        self.manager.objects[ref] = managed
        return ref


class KeyTest(TrustTestCase):

    def test_metadata_first_then_the_image(self):
        self.assertEqual('m', trust.key_ref(instance({props.OVERLAY_KEY_ID: 'm'}), {props.OVERLAY_KEY_ID: 'i'}))
        self.assertEqual('i', trust.key_ref(instance(), {props.OVERLAY_KEY_ID: 'i'}))
        self.assertIsNone(trust.key_ref(instance(), None))

    def test_reads_a_256_bit_key_with_the_users_context(self):
        key = os.urandom(32)
        ref = self.store(symmetric_key.SymmetricKey('AES', 256, key))
        self.assertEqual(key, trust.fetch_key(self.context, ref))
        self.assertEqual([(self.context, ref)], self.manager.reads)

    def test_missing_or_someone_elses_key(self):
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.fetch_key, self.context, 'k-1')
        self.assertEqual('the overlay key k-1 is not in the key manager, or not readable by this project',
                         exc.format_message())

    def test_another_projects_key_is_like_a_missing_one(self):
        class BarbicanForbidden(Exception):
            status_code = 403

        def get(context, ref, metadata_only=False):
            try:
                raise BarbicanForbidden('Forbidden: secret retrieval attempt not allowed')
            except BarbicanForbidden as exc:
                raise castellan_exc.KeyManagerError(reason=exc)
        self.manager.get = get
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.fetch_key, self.context, 'k-1')
        self.assertEqual('the overlay key k-1 is not in the key manager, or not readable by this project',
                         exc.format_message())

    def test_not_a_256_bit_key(self):
        ref = self.store(symmetric_key.SymmetricKey('AES', 128, os.urandom(16)))
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.fetch_key, self.context, ref)
        self.assertIn('is not a 256-bit symmetric key', exc.format_message())

    def test_key_manager_unavailable(self):
        self.manager.error = castellan_exc.KeyManagerError(reason='connection refused to 10.0.0.9')
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.fetch_key, self.context, 'k-1')
        self.assertEqual('cannot read the overlay key k-1: the key manager is unavailable', exc.format_message())

    def test_forbidden(self):
        self.manager.error = castellan_exc.Forbidden(reason='missing auth_token')
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.fetch_key, self.context, 'k-1')
        self.assertIn('refused to read the overlay key k-1', exc.format_message())


class SignatureTest(TrustTestCase):

    def setUp(self):
        super().setUp()
        self.ca_key, self.ca = signing.certificate('e2e CA', ca=True)
        self.ca_id = self.store(x_509.X509(signing.der(self.ca)))
        self.key, cert = signing.certificate('signer', issuer=(self.ca_key, self.ca))
        self.cert_id = self.store(x_509.X509(signing.der(cert)))

    def properties(self, data=DATA, key=None, cert_id=None):
        return signing.signature_properties(key or self.key, data, cert_id or self.cert_id)

    def test_unsigned_and_not_required(self):
        self.assertIsNone(trust.verifier(self.context, instance(), {}))

    def test_unsigned_but_required_by_the_cloud(self):
        self.flags(verify_overlay_signatures=True, group='cloudlet_trust')
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.verifier, self.context, instance(), {})
        self.assertIn('the overlay is not signed, and this server requires a signed overlay',
                      exc.format_message())

    def test_unsigned_but_required_by_the_servers_trusted_certificates(self):
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.verifier, self.context,
                                instance(trusted=[self.ca_id]), {})
        self.assertIn('not signed', exc.format_message())

    def test_good_signature_verifies_while_streaming(self):
        verifier = trust.verifier(self.context, instance(trusted=[self.ca_id]), self.properties())
        for start in range(0, len(DATA), 4096):
            verifier.update(DATA[start:start + 4096])
        verifier.verify()

    def test_signature_of_other_bytes_does_not_verify(self):
        verifier = trust.verifier(self.context, instance(), self.properties(data=b'other'))
        verifier.update(DATA)
        self.assertRaises(cryptography_exc.InvalidSignature, verifier.verify)

    def test_incomplete_signature(self):
        signed = self.properties()
        del signed[props.SIGNATURE_KEY_TYPE]
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.verifier, self.context, instance(), signed)
        self.assertIn('signature is incomplete: img_signature_key_type missing', exc.format_message())

    def test_certificate_not_issued_by_a_trusted_one(self):
        rogue_key, rogue = signing.certificate('rogue')
        rogue_id = self.store(x_509.X509(signing.der(rogue)))
        signed = self.properties(key=rogue_key, cert_id=rogue_id)
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.verifier, self.context,
                                instance(trusted=[self.ca_id]), signed, 'overlay image i-1')
        self.assertIn('the overlay image i-1 signature cannot be verified', exc.format_message())

    def test_default_trusted_certificates_with_validation_enabled(self):
        self.flags(enable_certificate_validation=True, default_trusted_certificate_ids=[self.ca_id],
                   group='cloudlet_trust')
        rogue_key, rogue = signing.certificate('rogue')
        rogue_id = self.store(x_509.X509(signing.der(rogue)))
        self.assertRaises(faults.CloudletSpawnFailed, trust.verifier, self.context, instance(),
                          self.properties(key=rogue_key, cert_id=rogue_id))
        self.assertIsNotNone(trust.verifier(self.context, instance(), self.properties()))

    def test_unknown_certificate(self):
        exc = self.assertRaises(faults.CloudletSpawnFailed, trust.verifier, self.context, instance(),
                                self.properties(cert_id='no-such-cert'))
        self.assertIn('Certificate not found with ID: no-such-cert', exc.format_message())

    def test_malformed_signature(self):
        signed = dict(self.properties(), img_signature='not base64!')
        self.assertRaises(faults.CloudletSpawnFailed, trust.verifier, self.context, instance(), signed)
