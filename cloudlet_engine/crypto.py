"""Overlay encryption (format version 2): keys, the per-file key, AES-256-GCM.

The construction is specified in doc/overlay-format.md ("Version 2:
encryption"). A master key (32 random bytes, held by the overlay's owner)
never touches a file: each overlay gets its own key, HKDF-SHA256 of the master
key with a random per-file salt that the metadata carries. Every sealed part
of a file has its own nonce, built from (segment index, part), so a derived
key never sees a nonce twice.

Key bytes never appear in a message, a repr or a log.
"""

import os
import struct

from cryptography import exceptions as crypto_exceptions
from cryptography.hazmat.primitives.ciphers import aead
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf import hkdf

from cloudlet_engine import errors

KEY_BYTES = 32
SALT_BYTES = 32
TAG_BYTES = 16
ALGORITHM = 'AES-256-GCM'
KDF = 'HKDF-SHA256'
HKDF_INFO = b'openstack-cloudlet overlay v2'
# What a nonce seals: a segment's item table, its data area, the trailer's end.
PART_ITEMS, PART_DATA, PART_END = 0, 1, 2
_NONCE = struct.Struct('<QI')      # segment index (the segment count for PART_END), part


def new_key():
    """A fresh master key: 32 random bytes."""
    return os.urandom(KEY_BYTES)


def check_key(key):
    """`key` as bytes if it is a 32-byte key; BadKey otherwise (the message never shows it)."""
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise errors.BadKey('an overlay key is %d bytes, not a %s' % (KEY_BYTES, type(key).__name__))
    key = bytes(key)
    if len(key) != KEY_BYTES:
        raise errors.BadKey('an overlay key is %d bytes, this one has %d' % (KEY_BYTES, len(key)))
    return key


def read_key_file(path):
    """The master key in `path` (exactly 32 raw bytes)."""
    try:
        with open(path, 'rb') as f:
            key = f.read(KEY_BYTES + 1)
    except OSError as exc:
        raise errors.BadKey('cannot read the key file %s: %s' % (path, exc.strerror))
    if len(key) != KEY_BYTES:
        raise errors.BadKey('the key file %s does not hold exactly %d bytes' % (path, KEY_BYTES))
    return key


def write_new_key_file(path):
    """Write a fresh master key to `path` (mode 0600, never over an existing file); return it."""
    key = new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise errors.BadKey('cannot create the key file %s: %s' % (path, exc.strerror))
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(key)
    except BaseException:
        os.unlink(path)
        raise
    return key


def new_salt():
    return os.urandom(SALT_BYTES)


def nonce(index, part):
    return _NONCE.pack(index, part)


class FileCipher:
    """AES-256-GCM under one overlay's derived key; it keeps no master key."""

    def __init__(self, master_key, salt):
        derived = hkdf.HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt,
                            info=HKDF_INFO).derive(check_key(master_key))
        self._aead = aead.AESGCM(derived)

    def __repr__(self):
        return '<FileCipher %s>' % ALGORITHM

    def seal(self, index, part, plaintext, aad):
        """`plaintext` encrypted, followed by its 16-byte tag."""
        return self._aead.encrypt(nonce(index, part), plaintext, aad)

    def open(self, index, part, sealed, aad, what):
        """The plaintext of `sealed`; DecryptionFailed if its tag does not match."""
        try:
            return self._aead.decrypt(nonce(index, part), sealed, aad)
        except crypto_exceptions.InvalidTag:
            raise errors.DecryptionFailed('%s does not decrypt: wrong key, or the overlay was altered'
                                          % what) from None
