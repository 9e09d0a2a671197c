"""Signing an overlay the way Glance images are signed: the img_signature* properties.

The signature is over the overlay's bytes exactly as uploaded (for an
encrypted overlay: the ciphertext), hashed with SHA-256 and signed with the
user's private key; the certificate of that key is in the key manager
(Barbican) under `certificate_id`. The compute host verifies it with nova's
library for this (`cursive`), hashing while the overlay streams in
(doc/trust.md). What `openssl dgst -sha256 -sigopt rsa_padding_mode:pss
-sign key.pem overlay.clo | base64 -w0` makes is the same RSA-PSS signature.
"""

import base64

from cryptography.hazmat.primitives.asymmetric import dsa
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization

from cloudlet_glance import errors
from cloudlet_glance import properties as props

HASH_METHOD = 'SHA-256'
READ_BLOCK = 1 << 20


def load_private_key(pem, password=None):
    """A private key from PEM bytes; GlanceModelError when it is not one."""
    try:
        return serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise errors.SigningError('cannot load the signing key: %s' % exc) from None


def key_type(key):
    """cursive's name of the signature scheme for `key` (img_signature_key_type)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return 'RSA-PSS'
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return 'ECC_%s' % key.curve.name.upper()
    if isinstance(key, dsa.DSAPrivateKey):
        return 'DSA'
    raise errors.SigningError('signing keys are RSA, ECC or DSA keys, not %s' % type(key).__name__)


def _sign_digest(key, digest):
    prehashed = asym_utils.Prehashed(hashes.SHA256())
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                            salt_length=padding.PSS.MAX_LENGTH), prehashed)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(digest, ec.ECDSA(prehashed))
    return key.sign(digest, prehashed)


def sign_stream(fileobj, key, certificate_id):
    """The img_signature* properties of everything `fileobj` reads (one pass)."""
    kind = key_type(key)
    hasher = hashes.Hash(hashes.SHA256())
    while True:
        block = fileobj.read(READ_BLOCK)
        if not block:
            break
        hasher.update(block)
    signature = _sign_digest(key, hasher.finalize())
    return {props.SIGNATURE: base64.b64encode(signature).decode('ascii'),
            props.SIGNATURE_HASH_METHOD: HASH_METHOD,
            props.SIGNATURE_KEY_TYPE: kind,
            props.SIGNATURE_CERTIFICATE: certificate_id}


def sign_file(path, key, certificate_id):
    with open(path, 'rb') as f:
        return sign_stream(f, key, certificate_id)
