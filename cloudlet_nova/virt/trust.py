"""Before an overlay runs: its key and its signature (doc/trust.md).

- **Key.** An encrypted overlay (format version 2) names its AES-256 key with
  `cloudlet_overlay_key_id`, in the server metadata or on the overlay image.
  The key is read from the key manager (castellan; Barbican in a deployment)
  with the user's own context, so a user can only use keys their project
  holds. It stays in this process's memory for the apply, is never written
  or logged, and the caller drops it afterwards.
- **Signature**, the way nova verifies signed Glance images: the overlay
  image's img_signature* properties (for an overlay_url: the same keys in the
  server metadata); the signing certificate comes from the key manager and
  `cursive` builds the verifier. The engine feeds it every byte as the overlay
  streams (no second pass) and calls verify() after the trailer, before the
  launch files count as complete.

A present signature is always verified. One is required when
`[cloudlet_trust] verify_overlay_signatures` is set or the server was created
with nova's trusted_image_certificates; the signing certificate must then be
issued by one of those (or by `default_trusted_certificate_ids` with
`enable_certificate_validation`).
"""

from castellan.common import exception as castellan_exc
from castellan import key_manager
from cursive import certificate_utils
from cursive import exception as cursive_exc
from cursive import signature_utils
from oslo_log import log as logging

import nova.conf

from cloudlet_engine import crypto
from cloudlet_engine import errors
from cloudlet_glance import properties as props
from cloudlet_nova.virt import faults

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


def key_ref(instance, overlay_image=None):
    """The key manager id of the overlay's key (server metadata first), or None."""
    ref = (instance.metadata or {}).get(props.OVERLAY_KEY_ID)
    if not ref and overlay_image:
        ref = overlay_image.get(props.OVERLAY_KEY_ID)
    return ref or None


def fetch_key(context, ref, what='overlay', fault=faults.CloudletSpawnFailed):
    """The raw bytes of the AES-256 key `ref`, read with the user's context.

    `fault` (CloudletSpawnFailed; a capture's CloudletCaptureFailed) naming
    the problem: a key that does not exist or is not the user's (the key
    manager answers both alike), one that is not a 256-bit symmetric key, a
    key manager that cannot be reached.
    """
    not_yours = 'the %s key %s is not in the key manager, or not readable by this project' % (what, ref)
    try:
        managed = key_manager.API(CONF).get(context, ref)
    except castellan_exc.ManagedObjectNotFoundError:
        raise fault(reason=not_yours)
    except castellan_exc.Forbidden:
        raise fault(reason='the key manager refused to read the %s key %s' % (what, ref))
    except (castellan_exc.CastellanException, OSError) as exc:
        if _refused_by_barbican(exc):
            raise fault(reason=not_yours)
        LOG.warning('reading %s key %s from the key manager failed: %s', what, ref, exc)
        raise fault(reason='cannot read the %s key %s: the key manager is unavailable' % (what, ref))
    raw = managed.get_encoded() if hasattr(managed, 'get_encoded') else None
    try:
        crypto.check_key(raw)
    except errors.BadKey:
        raise fault(
            reason='the key manager secret %s is not a 256-bit symmetric key' % ref) from None
    return raw


def _refused_by_barbican(exc):
    """Did Barbican answer 403 (another project's secret)?

    castellan reports only a 404 as not found; it wraps other answers in
    KeyManagerError, raised while the client's error (its status_code) is
    being handled.
    """
    return getattr(exc.__context__, 'status_code', None) == 403


def _trusted_certificates(instance):
    """The certificates a signing certificate must be issued by, or None (no validation)."""
    certs = getattr(instance, 'trusted_certs', None)
    if certs is not None and certs.ids:
        return list(certs.ids)
    if CONF.cloudlet_trust.enable_certificate_validation:
        return list(CONF.cloudlet_trust.default_trusted_certificate_ids)
    return None


def signature_required(instance):
    return CONF.cloudlet_trust.verify_overlay_signatures or bool(_trusted_certificates(instance))


def verifier(context, instance, signed_properties, what='overlay'):
    """A verifier (update(bytes), verify()) of the overlay's signature, or None.

    `signed_properties`: the overlay image's properties, or the server
    metadata for an overlay_url. CloudletSpawnFailed when a signature is
    required and absent, or cannot be checked (unknown certificate, untrusted
    issuer, malformed signature).
    """
    signed_properties = signed_properties or {}
    present = [key for key in props.SIGNATURE_PROPERTIES if signed_properties.get(key)]
    if not present:
        if signature_required(instance):
            raise faults.CloudletSpawnFailed(
                reason='the %s is not signed, and this server requires a signed overlay (%s)'
                       % (what, ', '.join(props.SIGNATURE_PROPERTIES)))
        return None
    if len(present) != len(props.SIGNATURE_PROPERTIES):
        missing = sorted(set(props.SIGNATURE_PROPERTIES) - set(present))
        raise faults.CloudletSpawnFailed(reason='the %s signature is incomplete: %s missing'
                                                % (what, ', '.join(missing)))
    certificate = signed_properties[props.SIGNATURE_CERTIFICATE]
    trusted = _trusted_certificates(instance)
    try:
        if trusted is not None:
            certificate_utils.verify_certificate(context, certificate, trusted)
        return signature_utils.get_verifier(
            context, certificate, signed_properties[props.SIGNATURE_HASH_METHOD],
            signed_properties[props.SIGNATURE], signed_properties[props.SIGNATURE_KEY_TYPE])
    except cursive_exc.SignatureVerificationError as exc:
        raise faults.CloudletSpawnFailed(reason='the %s signature cannot be verified: %s'
                                                % (what, _one_line(exc.format_message())))
    except (castellan_exc.CastellanException, OSError) as exc:
        LOG.warning('reading certificate %s failed: %s', certificate, exc)
        raise faults.CloudletSpawnFailed(
            reason='cannot read the %s signing certificate %s: the key manager is unavailable'
                   % (what, certificate))


def _one_line(text):
    return ' '.join(str(text).split()).rstrip('.')[:200]
