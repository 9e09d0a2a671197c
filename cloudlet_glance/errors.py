"""Errors of the Glance model.

They join the engine's hierarchy (`CloudletError`), so the nova driver and the
cloudlet API translate them at the same single boundary as engine errors.
Content problems (a base whose bytes do not match its id) stay engine errors
(`BaseVMError`, `WrongBase`); these are about the image service itself.
"""

from cloudlet_engine.errors import CloudletError


class ImageServiceError(CloudletError):
    """The image service refused or failed a request."""


class ImageNotFound(ImageServiceError):
    """No image (visible to the caller) answers to this id or reference."""


class AmbiguousImage(CloudletError):
    """A name or id prefix that matches more than one base or overlay."""


class SigningError(CloudletError):
    """An overlay cannot be signed with the key given (unreadable, or of no supported kind)."""
