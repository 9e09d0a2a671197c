"""What the client library raises: one base class, one subclass per situation a caller handles."""


class ClientError(Exception):
    """Any failure of the library; the message says what and where."""


class HTTPError(ClientError):
    """A cloud answered a request with an error: `status` and the service's own message."""

    def __init__(self, status, message, method=None, url=None):
        super().__init__('%s (HTTP %d)' % (message, status))
        self.status = status
        self.message = message
        self.method = method
        self.url = url


class Untrusted(ClientError):
    """The caller's Credentials do not cover this cloudlet: nothing was sent to it."""


class NotAcceptable(ClientError):
    """A cloudlet's negotiation said no; `negotiation` holds its answer (reason, base...)."""

    def __init__(self, message, negotiation=None):
        super().__init__(message)
        self.negotiation = negotiation


class NoCloudlet(ClientError):
    """No cloudlet (and no fallback cloud) accepted the overlay; `tried` says why, per target."""

    def __init__(self, message, tried=()):
        super().__init__(message)
        self.tried = list(tried)


class ServerFailed(ClientError):
    """The server went to ERROR (the message has nova's fault) or did not become ACTIVE in time."""


class Unreachable(ClientError):
    """The app did not answer in time."""


class LeaseLost(ClientError):
    """The cloud no longer knows the server (deleted, lease run out, or not the caller's)."""


class HandoffFailed(ClientError):
    """A handoff ended in error, or did not end in time (the app keeps running where it was)."""
