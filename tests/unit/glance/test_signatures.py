"""cloudlet_glance.signatures: what the CLI and the client library sign, nova's cursive verifies."""

import io
from unittest import mock

from castellan.common.objects import x_509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from cursive import signature_utils
import pytest

from cloudlet_glance import errors
from cloudlet_glance import properties as props
from cloudlet_glance import signatures
from tests.fixtures import fake_key_manager
from tests.fixtures import signing

DATA = bytes(range(256)) * 5000


def verify(properties, certificate, data):
    manager = fake_key_manager.FakeKeyManager(
        {properties[props.SIGNATURE_CERTIFICATE]: x_509.X509(signing.der(certificate))})
    with mock.patch('castellan.key_manager.API', return_value=manager):
        verifier = signature_utils.get_verifier(
            None, properties[props.SIGNATURE_CERTIFICATE], properties[props.SIGNATURE_HASH_METHOD],
            properties[props.SIGNATURE], properties[props.SIGNATURE_KEY_TYPE])
    verifier.update(data)
    verifier.verify()


def test_rsa_signature_verifies_with_cursive():
    key, cert = signing.certificate('signer')
    signed = signatures.sign_stream(io.BytesIO(DATA), key, 'cert-1')
    assert (signed[props.SIGNATURE_HASH_METHOD], signed[props.SIGNATURE_KEY_TYPE],
            signed[props.SIGNATURE_CERTIFICATE]) == ('SHA-256', 'RSA-PSS', 'cert-1')
    verify(signed, cert, DATA)
    with pytest.raises(Exception):
        verify(signed, cert, DATA + b'x')


def test_ecc_signature_verifies_with_cursive():
    key = ec.generate_private_key(ec.SECP384R1())
    ca_key, ca = signing.certificate('ca', ca=True)
    cert = (x509.CertificateBuilder().subject_name(ca.subject).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(ca.not_valid_before_utc).not_valid_after(ca.not_valid_after_utc)
            .sign(ca_key, hashes.SHA256()))
    signed = signatures.sign_stream(io.BytesIO(DATA), key, 'cert-2')
    assert signed[props.SIGNATURE_KEY_TYPE] == 'ECC_SECP384R1'
    verify(signed, cert, DATA)


def test_sign_file_is_one_pass_over_the_file(tmp_path):
    key, cert = signing.certificate('signer')
    path = tmp_path / 'overlay.clo'
    path.write_bytes(DATA)
    verify(signatures.sign_file(path, key, 'cert-1'), cert, DATA)


def test_unreadable_key():
    with pytest.raises(errors.SigningError, match='cannot load the signing key'):
        signatures.load_private_key(b'-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n')


def test_pem_round_trip():
    key, _ = signing.certificate('signer')
    loaded = signatures.load_private_key(signing.pem_private_key(key))
    assert loaded.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo) == \
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
