"""api_extensions.handoff: validation errors never quote the credential."""

from unittest import mock

import pytest

from nova import exception

from api_extensions import handoff

SECRET = 'sup3r-s3cret-value'
TOKEN = 'gAAAAABtoken-value-0123'


class FakeRequest:
    """What nova's validation helper reads from a request."""

    api_version_request = mock.Mock(matches=lambda *a: True)

    @staticmethod
    def is_legacy_v2():
        return False


@handoff.schema_without_secrets(handoff.schemas.handoff)
def action(req, id, body):
    return 'called'


def body(credential, **extra):
    entity = {'destination': {'auth_url': 'https://edge-b.example/v3'}, 'credential': credential,
              'name': 'app-b'}
    entity.update(extra)
    return {'cloudlet-handoff': entity}


def refuse(request_body):
    with pytest.raises(exception.ValidationError) as info:
        action(req=FakeRequest(), id='server', body=request_body)
    return info.value.format_message()


def test_valid_body_reaches_the_action():
    assert action(req=FakeRequest(), id='s', body=body({'token': TOKEN})) == 'called'


@pytest.mark.parametrize('credential', [
    {'token': TOKEN, 'application_credential': {'id': 'app-id-1', 'secret': SECRET}},  # both
    {'application_credential': {'id': 'app-id-1', 'secret': SECRET, 'extra': 'x'}},
    {'token': TOKEN, 'password': SECRET},
    {'token': [TOKEN, SECRET]},
])
def test_refused_credentials_are_not_echoed(credential):
    message = refuse(body(credential))
    assert 'Invalid input' in message or 'is not valid' in message
    assert SECRET not in message and TOKEN not in message
    assert '***' in message


def test_other_errors_with_a_credential_around_are_masked_too():
    message = refuse(body({'token': TOKEN}, name=''))
    assert TOKEN not in message
    message = refuse(body({'token': TOKEN}, options={'codec': 'lz4'}))
    assert 'lz4' in message and TOKEN not in message


def test_escaped_secret_is_masked():
    odd = "it's-a\\secret"
    message = refuse(body({'token': odd, 'x': 1}))
    assert odd not in message and repr(odd)[1:-1] not in message


@pytest.mark.parametrize('request_body, found', [
    (body({'token': TOKEN}), [TOKEN]),
    (body({'application_credential': {'id': 'app-id-1', 'secret': SECRET}}), [SECRET, 'app-id-1']),
    (body({'token': 'abc'}), []),                     # too short to mask meaningfully
    ({'cloudlet-handoff': 'x'}, []),
    (None, []),
])
def test_credential_values(request_body, found):
    assert handoff.credential_values(request_body) == found
