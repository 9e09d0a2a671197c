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


class SaveImageError(CloudletError):
    """A libvirt save image (memory snapshot) that cannot be used."""


class BaseVMError(CloudletError):
    """A base VM or base VM package that is missing, corrupt or incompatible."""


class HypervisorError(CloudletError):
    """libvirt or QEMU refused an operation."""
