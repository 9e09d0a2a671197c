"""Engine errors -> nova exceptions, at the driver boundary, once.

nova shows an instance fault's message to the server's owner, truncated to
255 characters (nova.compute.utils.exception_to_dict), so every message here
is one short sentence that names the cause. What each exception makes the
compute manager do:

- CloudletSpawnFailed (an ImageUnacceptable): raised from spawn(), nova aborts
  the build without rescheduling (BuildAbortException): instance ERROR, fault
  "Build of instance <uuid> aborted: <reason>". Overlays, bases and flavors
  are wrong everywhere, so trying another host would only hide the cause.
- CloudletOperationRefused: a lifecycle operation this driver will not do on
  a cloudlet instance; raised before anything changed, so the instance keeps
  its state and gets the fault (see doc/nova-driver.md for the table).
- CloudletCaptureFailed: create-base / create-overlay failed; the manager
  deletes the target image and records the fault, the VM keeps running.
"""

import contextlib
import re

from nova import exception

from cloudlet_engine import errors
from cloudlet_engine import urls

REFUSAL_ADVICE = 'their state lives in memory; create an overlay instead'


class CloudletSpawnFailed(exception.ImageUnacceptable):
    msg_fmt = '%(reason)s'


class CloudletFlavorMismatch(CloudletSpawnFailed):
    """The flavor's memory or vCPUs differ from the base VM's."""


class CloudletOperationRefused(exception.Invalid):
    msg_fmt = 'cloudlet instances cannot be %(action)s: %(advice)s'

    def __init__(self, action, advice=REFUSAL_ADVICE):
        super().__init__(action=action, advice=advice)


class CloudletCaptureFailed(exception.NovaException):
    msg_fmt = 'cloudlet capture failed: %(reason)s'


# Engine exception class -> what the problem is, from the user's side.
_KINDS = (
    (errors.WrongBase, 'overlay does not fit the base'),
    (errors.SignatureInvalid, 'overlay signature does not verify'),
    (errors.DecryptionFailed, 'overlay cannot be decrypted'),
    (errors.KeyRequired, 'overlay key missing (server metadata cloudlet_overlay_key_id)'),
    (errors.NotEncrypted, 'overlay refused'),
    (errors.BadKey, 'overlay key unusable'),
    (errors.TruncatedOverlay, 'overlay is truncated'),
    (errors.CorruptOverlay, 'overlay is corrupt'),
    (errors.UnsupportedVersion, 'overlay format not supported'),
    (errors.LimitExceeded, 'overlay exceeds a limit'),
    (errors.SourceError, 'cannot fetch the overlay'),
    (errors.SaveImageError, 'memory snapshot unusable'),
    (errors.BaseVMError, 'base VM unusable'),
    (errors.HypervisorError, 'libvirt refused'),
)


_LONG_ID = re.compile(r'\b([0-9a-f]{12})[0-9a-f]{52}\b')


def describe(exc):
    """One line naming the cause of a CloudletError.

    URL credentials are removed and 64-digit base ids shortened to 12: nova
    keeps 255 characters of a fault message.
    """
    text = str(exc) or exc.__class__.__name__
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            text = '%s: %s' % (kind, text)
            break
    return _LONG_ID.sub(r'\1', urls.redact_credentials(text))


@contextlib.contextmanager
def spawn_errors(prefix='cloudlet spawn failed'):
    """Turn engine errors raised inside into CloudletSpawnFailed."""
    try:
        yield
    except errors.CloudletError as exc:
        raise CloudletSpawnFailed(reason='%s: %s' % (prefix, describe(exc))) from exc


@contextlib.contextmanager
def capture_errors():
    """Turn engine errors raised inside into CloudletCaptureFailed."""
    try:
        yield
    except errors.CloudletError as exc:
        raise CloudletCaptureFailed(reason=describe(exc)) from exc
