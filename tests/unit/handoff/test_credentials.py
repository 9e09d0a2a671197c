"""cloudlet_nova.handoff.credentials: the destination credential in the key manager
(castellan's API patched with tests/fixtures/fake_key_manager.py).
"""

import json
import logging
from unittest import mock

from castellan.common import exception as castellan_exc
from castellan.common.objects import opaque_data
from castellan.common.objects import symmetric_key
from keystoneauth1 import exceptions as ks_exc
import pytest

from cloudlet_nova.handoff import credentials
from tests.fixtures import fake_key_manager

HANDOFF_ID = '6b1c7a52-1d3e-4f5a-9b8c-7d6e5f4a3b2c'
SECRET = 'the-application-credential-secret-0123456789'
APP_ID = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'
TOKEN = 'gAAAAABfake-keystone-token-value-xyz'
APP_CREDENTIAL = {'application_credential': {'id': APP_ID, 'secret': SECRET}}
CONTEXT = object()


@pytest.fixture
def keys():
    manager = fake_key_manager.FakeKeyManager()
    with mock.patch('castellan.key_manager.API', return_value=manager) as api:
        manager.api = api
        yield manager


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_secret(*texts):
    for text in texts:
        assert SECRET not in text and APP_ID not in text and TOKEN not in text


# -- store -------------------------------------------------------------------------

@pytest.mark.parametrize('credential', [APP_CREDENTIAL, {'token': TOKEN}])
def test_store_keeps_the_credential_as_opaque_data_and_returns_its_reference(keys, credential):
    reference = credentials.store(CONTEXT, credential, HANDOFF_ID)
    [(context, ref)] = keys.stored
    assert reference == {'secret_ref': ref}
    assert credentials.is_reference(reference)
    assert context is CONTEXT                       # the user's request context, not an admin one
    managed = keys.objects[ref]
    assert isinstance(managed, opaque_data.OpaqueData)
    assert managed.name == 'cloudlet-handoff-%s-credential' % HANDOFF_ID
    assert json.loads(managed.get_encoded().decode()) == credential
    # The reference itself carries nothing of the credential.
    assert_no_secret(json.dumps(reference))


def test_store_uses_nova_s_configuration(keys):
    credentials.store(CONTEXT, APP_CREDENTIAL, HANDOFF_ID)
    keys.api.assert_called_once_with(credentials.CONF)


@pytest.mark.parametrize('error', [
    castellan_exc.KeyManagerError(reason='barbican said no to %s' % SECRET),
    castellan_exc.Forbidden(reason='no token'),
    OSError('connection refused while sending %s' % SECRET),
    ks_exc.ConnectFailure('Unable to establish connection to https://barbican.example:9311'),
])
def test_store_failure_is_credential_unavailable_without_the_secret(keys, logs, error):
    keys.error = error
    with pytest.raises(credentials.CredentialUnavailable) as info:
        credentials.store(CONTEXT, APP_CREDENTIAL, HANDOFF_ID)
    assert str(info.value) == 'the key manager could not keep the destination credential'
    # Not chained to the key manager's error (whose text may quote what it was given).
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert keys.objects == {}
    assert_no_secret(str(info.value), logs.text)
    assert HANDOFF_ID in logs.text and type(error).__name__ in logs.text


def test_store_with_a_key_manager_that_cannot_be_loaded(logs):
    # nova's default backend without [key_manager] fixed_key raises ValueError when made.
    with mock.patch('castellan.key_manager.API', side_effect=ValueError('keymgr.fixed_key not defined')):
        with pytest.raises(credentials.CredentialUnavailable):
            credentials.store(CONTEXT, APP_CREDENTIAL, HANDOFF_ID)
    assert 'ValueError' in logs.text


# -- read --------------------------------------------------------------------------

@pytest.mark.parametrize('credential', [APP_CREDENTIAL, {'token': TOKEN}, None, {}])
def test_read_of_a_message_credential_returns_it_unchanged(keys, credential):
    assert credentials.read(CONTEXT, credential) is credential
    assert keys.contexts == []                      # the key manager is not asked
    keys.api.assert_not_called()


def test_read_returns_the_stored_credential(keys):
    reference = credentials.store(CONTEXT, APP_CREDENTIAL, HANDOFF_ID)
    other_context = object()
    assert credentials.read(other_context, reference) == APP_CREDENTIAL
    assert keys.reads == [(other_context, reference['secret_ref'])]
    assert reference['secret_ref'] in keys.objects          # read does not delete


def test_read_of_an_unknown_reference(keys, logs):
    ref = '00000000-0000-4000-8000-999999999999'
    with pytest.raises(credentials.CredentialUnavailable) as info:
        credentials.read(CONTEXT, {'secret_ref': ref})
    assert str(info.value) == ('the destination credential could not be read from the key manager (%s)'
                               % ref)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert 'ManagedObjectNotFoundError' in logs.text


@pytest.mark.parametrize('error', [
    castellan_exc.KeyManagerError(reason='503 from barbican while reading %s' % SECRET),
    castellan_exc.Forbidden(reason='token expired'),
    OSError('connection reset'),
])
def test_read_failure_is_credential_unavailable_without_the_secret(keys, logs, error):
    reference = credentials.store(CONTEXT, APP_CREDENTIAL, HANDOFF_ID)
    keys.error = error
    with pytest.raises(credentials.CredentialUnavailable) as info:
        credentials.read(CONTEXT, reference)
    assert reference['secret_ref'] in str(info.value)
    assert_no_secret(str(info.value), logs.text)
    assert type(error).__name__ in logs.text


@pytest.mark.parametrize('managed', [
    opaque_data.OpaqueData(b'not json at all'),
    opaque_data.OpaqueData(b'\xff\xfe'),                             # not UTF-8
    symmetric_key.SymmetricKey('AES', 256, b'k' * 32),               # someone's key, not ours
    object(),                                                        # no get_encoded()
])
def test_read_of_something_else_than_a_credential(keys, managed):
    ref = keys.add(managed)
    with pytest.raises(credentials.CredentialUnavailable) as info:
        credentials.read(CONTEXT, {'secret_ref': ref})
    assert ref in str(info.value)


# -- forget ------------------------------------------------------------------------

def test_forget_deletes_the_secret(keys):
    reference = credentials.store(CONTEXT, APP_CREDENTIAL, HANDOFF_ID)
    other_context = object()
    assert credentials.forget(other_context, reference) is None
    assert keys.objects == {}
    assert keys.deleted == [(other_context, reference['secret_ref'])]
    with pytest.raises(credentials.CredentialUnavailable):
        credentials.read(CONTEXT, reference)


@pytest.mark.parametrize('credential', [APP_CREDENTIAL, {'token': TOKEN}, None,
                                        {'secret_ref': 'x', 'token': TOKEN}])
def test_forget_of_a_message_credential_does_nothing(keys, credential):
    keys.add(opaque_data.OpaqueData(b'{}'))
    credentials.forget(CONTEXT, credential)
    assert len(keys.objects) == 1 and keys.contexts == []
    keys.api.assert_not_called()


def test_forget_of_an_already_deleted_secret_is_quiet(keys, logs):
    reference = credentials.store(CONTEXT, APP_CREDENTIAL, HANDOFF_ID)
    credentials.forget(CONTEXT, reference)
    logs.clear()
    credentials.forget(CONTEXT, reference)
    assert [r for r in logs.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize('error', [
    castellan_exc.KeyManagerError(reason='barbican is down'),
    castellan_exc.Forbidden(reason='token expired'),
    OSError('connection refused'),
    RuntimeError('anything at all'),
    ks_exc.ConnectFailure('Unable to establish connection'),
])
def test_forget_never_raises_and_names_the_failure(keys, logs, error):
    reference = credentials.store(CONTEXT, APP_CREDENTIAL, HANDOFF_ID)
    keys.error = error
    credentials.forget(CONTEXT, reference)
    [warning] = [r for r in logs.records if r.levelno >= logging.WARNING]
    assert reference['secret_ref'] in warning.getMessage()
    assert type(error).__name__ in warning.getMessage()
    assert_no_secret(logs.text)


def test_forget_with_a_key_manager_that_cannot_be_loaded(logs):
    with mock.patch('castellan.key_manager.API', side_effect=ValueError('keymgr.fixed_key not defined')):
        credentials.forget(CONTEXT, {'secret_ref': 'ref-1'})
    assert 'ref-1' in logs.text


# -- references --------------------------------------------------------------------

@pytest.mark.parametrize('credential, expected', [
    ({'secret_ref': 'ref-1'}, True),
    ({'secret_ref': 'ref-1', 'token': TOKEN}, False),
    ({'token': TOKEN}, False),
    (APP_CREDENTIAL, False),
    ({}, False),
    (None, False),
    ('secret_ref', False),
    (['secret_ref'], False),
])
def test_is_reference(credential, expected):
    assert credentials.is_reference(credential) is expected
