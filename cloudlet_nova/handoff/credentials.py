"""The destination's credential, kept in this cloud's key manager while a handoff runs.

The user's credential for the other cloud is a secret: nova-api stores it
(castellan, with the user's own token: Barbican in a deployment) as an
opaque secret of the user's project, and the `handoff` RPC message carries
only its reference. The source compute host reads it when the handoff
starts, holds it in memory for the handoff only, and deletes the secret when
the handoff ends, whatever the outcome. `[cloudlet_handoff] credential_store
= rpc_message` keeps the credential in the message instead, for clouds
without a key manager.
"""

import json

from castellan.common import exception as castellan_exc
from castellan.common.objects import opaque_data
from castellan import key_manager
from oslo_log import log as logging

import nova.conf

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

KEY_MANAGER, RPC_MESSAGE = 'key_manager', 'rpc_message'
REF = 'secret_ref'          # the message's credential: {"secret_ref": "<key manager id>"}


class CredentialUnavailable(Exception):
    """The key manager could not store, read or hand back the credential (safe to show)."""


def _api():
    return key_manager.API(CONF)


def store(context, credential, handoff_id):
    """Keep `credential` in the key manager; the message's credential ({"secret_ref": ...})."""
    secret = opaque_data.OpaqueData(json.dumps(credential).encode(),
                                    name='cloudlet-handoff-%s-credential' % handoff_id)
    try:
        return {REF: _api().store(context, secret)}
    except Exception as exc:   # noqa: BLE001 - any failure (e.g. keystoneauth's, a bad backend): a 503
        LOG.warning('handoff %s: storing the destination credential failed: %s', handoff_id,
                    type(exc).__name__)
        raise CredentialUnavailable('the key manager could not keep the destination credential') from None


def is_reference(credential):
    return isinstance(credential, dict) and set(credential) == {REF}


def read(context, credential):
    """The credential itself: the message's, or the one its reference names."""
    if not is_reference(credential):
        return credential
    try:
        managed = _api().get(context, credential[REF])
        return json.loads(managed.get_encoded().decode())
    except Exception as exc:   # noqa: BLE001 - any failure (keystoneauth's, a bad secret): named
        LOG.warning('reading the handoff credential %s failed: %s', credential[REF], type(exc).__name__)
        raise CredentialUnavailable('the destination credential could not be read from the key manager '
                                    '(%s)' % credential[REF]) from None


def forget(context, credential):
    """Delete the secret a reference names (best effort: never raises)."""
    if not is_reference(credential):
        return
    try:
        _api().delete(context, credential[REF])
    except castellan_exc.ManagedObjectNotFoundError:
        pass
    except Exception as exc:   # noqa: BLE001 - best effort, named in the log
        LOG.warning('the handoff credential %s could not be deleted from the key manager: %s',
                    credential[REF], type(exc).__name__)
