"""The engine's exceptions: one hierarchy, messages that name the problem.

The nova driver and the API translate these once, at their boundary, into
instance faults and HTTP codes.
"""


class CloudletError(Exception):
    """Base of every error the engine raises on purpose."""


class OverlayError(CloudletError):
    """An overlay cannot be read or applied."""


class CorruptOverlay(OverlayError):
    """Bytes that do not parse, fail a checksum, or point outside bounds."""


class TruncatedOverlay(CorruptOverlay):
    """The overlay ended before its trailer."""


class UnsupportedVersion(OverlayError):
    """A format version (or feature) this engine does not implement."""


class WrongBase(OverlayError):
    """The overlay was made against another base VM."""


class LimitExceeded(OverlayError):
    """A size or count beyond the configured limits."""


class SourceError(OverlayError):
    """The overlay source (file or URL) cannot be opened or read."""


class KeyRequired(OverlayError):
    """The overlay is encrypted and no key was given."""

    def __init__(self, message='the overlay is encrypted: a key is needed'):
        super().__init__(message)


class NotEncrypted(OverlayError):
    """A key was given for a plain overlay: refused, so that a plain overlay cannot
    stand in where an encrypted one is expected.
    """

    def __init__(self, message='a key was given but the overlay is not encrypted'):
        super().__init__(message)


class DecryptionFailed(OverlayError):
    """A GCM tag does not match: wrong key, or the overlay was altered."""


class BadKey(OverlayError):
    """A key (or key file) that is not 32 bytes. Messages never show key bytes."""


class SignatureInvalid(OverlayError):
    """The overlay's signature does not verify (apply_overlay's verifier refused it)."""


class SaveImageError(CloudletError):
    """A libvirt save image (memory snapshot) that cannot be used."""


class LaunchAbandoned(CloudletError):
    """The launch files' writer was stopped by its reader's side (a streamed restore that failed)."""


class BaseVMError(CloudletError):
    """A base VM or base VM package that is missing, corrupt or incompatible."""


class HypervisorError(CloudletError):
    """libvirt or QEMU refused an operation."""
