"""What the handoff shares about the other cloud: its error, its Keystone URL,
which credential values must never be shown, and the residue calls' header.

Small and free of HTTP clients, so that the API (redacting a request) and the
CLI (normalizing --destination) need not import the client in
destination.py.
"""

import re

# The handoff id on the destination's GET/PUT /servers/{id}/cloudlet-residue.
RESIDUE_HEADER = 'X-Cloudlet-Handoff-Id'

# Shorter credential values are not masked in messages (they would mangle text).
MIN_SECRET_LENGTH = 4


def credential_secrets(credential):
    """The string values of a credential (token, application credential id and secret),
    longest first: what must never appear in a message, a log or a record.
    """
    found = []

    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
            found.append(value)

    walk(credential)
    return sorted(set(found), key=len, reverse=True)


class HandoffDestinationError(Exception):
    """The destination failed or refused; str() is safe to show users (no credential in it).

    `refused` is True when the destination answered and said no (4xx, no
    matching base, no fitting flavor, a build that ended in ERROR), False when
    it could not be reached, timed out or stalled.
    """

    def __init__(self, message, refused=False):
        super().__init__(message)
        self.refused = bool(refused)

    def __reduce__(self):
        return self.__class__, (str(self), self.refused)


def response_message(response):
    """The service's own message of a failed response (nova, Glance, Keystone), one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    # nova: {"badRequest": {"message": ...}}; Keystone: {"error": {"message": ...}}
    if isinstance(body, dict) and isinstance(body.get('message'), str):
        return ' '.join(body['message'].split())[:500]
    if isinstance(body, dict) and len(body) == 1:
        fault = next(iter(body.values()))
        if isinstance(fault, dict) and fault.get('message'):
            return ' '.join(str(fault['message']).split())[:500]
    text = ' '.join(re.sub(r'<[^>]*>', ' ', response.text or '').split())[:500]
    return text or response.reason or 'HTTP %d' % response.status_code


def keystone_v3_url(url):
    """A Keystone URL as the v3 API's root: https://host:5000 -> https://host:5000/v3."""
    url = url.strip().rstrip('/')
    if url.endswith('/v3'):
        return url
    if url.endswith('/v2.0'):
        url = url[:-len('/v2.0')]
    return url + '/v3'
