"""The cloud's key manager (Barbican) as the device side uses it: overlay keys and certificates.

python-barbicanclient on the caller's keystoneauth session: a key or a
certificate stored here belongs to the caller's project, and only that
project's users (and the compute host acting for them) can read it back
(doc/trust.md). Keys are AES-256 keys for encrypted overlays
(`cloudlet_engine.crypto`); certificates are X.509 (DER) certificates whose
private keys sign overlays (`cloudlet_glance.signatures`).
"""

import functools

from barbicanclient import client as barbican_client
from barbicanclient import exceptions as barbican_exc
from cryptography.hazmat.primitives import serialization
from cryptography import x509
from keystoneauth1 import exceptions as ksa_exc

from cloudlet_engine import crypto
from cloudlet_glance import signatures

from cloudlet_client import errors


def secret_id(secret_ref):
    """The id at the end of a secret's href (https://host:9311/v1/secrets/<id>)."""
    return secret_ref.rstrip('/').rsplit('/', 1)[-1]


class KeyManager:
    """Barbican of one cloud, reached through `session` (region and interface as the caller's)."""

    def __init__(self, session, region_name=None, interface=None):
        self._session, self._region, self._interface = session, region_name, interface or 'public'

    @functools.cached_property
    def _client(self):
        try:
            return barbican_client.Client(session=self._session, region_name=self._region,
                                          interface=self._interface)
        except ksa_exc.EndpointNotFound:
            raise errors.ClientError('this cloud has no key manager (no key-manager service in its '
                                     'catalog): it cannot keep overlay keys') from None
        except (ksa_exc.ClientException, ValueError) as exc:
            raise errors.ClientError('cannot reach the key manager: %s' % exc) from None

    def _store(self, what, **secret):
        try:
            return secret_id(self._client.secrets.create(**secret).store())
        except (barbican_exc.HTTPError, barbican_exc.BarbicanException, ksa_exc.ClientException) as exc:
            raise errors.ClientError('the key manager did not store the %s: %s' % (what, exc)) from None

    def store_key(self, key, name):
        """Store an AES-256 overlay key; its id (cloudlet_overlay_key_id)."""
        crypto.check_key(key)
        return self._store('overlay key', name=name, payload=key, secret_type='symmetric',
                           algorithm='aes', bit_length=256, mode='gcm')

    def new_key(self, name):
        """(key bytes, id): a new random AES-256 key, stored."""
        key = crypto.new_key()
        return key, self.store_key(key, name)

    def store_certificate(self, certificate, name):
        """Store an X.509 certificate (PEM or DER bytes); its id (img_signature_certificate_uuid).

        Stored as PEM: castellan (nova's and Glance's reader) expects PEM in
        Barbican and hands DER to cursive.
        """
        if not certificate.lstrip().startswith(b'-----BEGIN'):
            try:
                certificate = x509.load_der_x509_certificate(certificate).public_bytes(
                    serialization.Encoding.PEM)
            except ValueError:
                raise errors.ClientError('%s is not an X.509 certificate (PEM or DER)' % name) from None
        return self._store('certificate', name=name, payload=certificate, secret_type='certificate')

    def delete(self, ref):
        """Delete a key or certificate (its id or href); a missing one is not an error."""
        try:
            self._client.secrets.delete(ref)
        except barbican_exc.HTTPClientError as exc:
            if getattr(exc, 'status_code', None) != 404:
                raise errors.ClientError('the key manager did not delete %s: %s' % (ref, exc)) from None
        except ValueError:
            raise errors.ClientError('%r is not a key manager id' % ref) from None


class Signer:
    """Signs the overlay files a session uploads, with the device's key and certificate.

    The certificate (PEM or DER bytes) is stored in each cloud's key manager the
    first time the cloud needs it (the compute host reads it from there);
    `forget()` deletes the copies stored.
    """

    def __init__(self, private_key_pem, certificate, password=None):
        self._key = signatures.load_private_key(private_key_pem, password)
        self._certificate = certificate
        self._stored = {}            # id(cloud) -> (KeyManager, certificate id)

    def certificate_id(self, cloud):
        if id(cloud) not in self._stored:
            manager = KeyManager(cloud.session, cloud.region_name, cloud.interface)
            self._stored[id(cloud)] = (manager, manager.store_certificate(self._certificate,
                                                                          'overlay signing certificate'))
        return self._stored[id(cloud)][1]

    def properties(self, cloud, path):
        """The img_signature* image properties of the file at `path`, for `cloud`."""
        return signatures.sign_file(path, self._key, self.certificate_id(cloud))

    def forget(self):
        for manager, certificate_id in self._stored.values():
            manager.delete(certificate_id)
        self._stored = {}
