"""api_extensions.schemas, checked with nova's own validator and schema rules."""

import pytest

from nova.api.validation import Schemas
from nova.api.validation import validators
from nova import exception

from api_extensions import schemas

REQUEST_SCHEMAS = [schemas.create_base, schemas.create_base_alias, schemas.create_overlay,
                   schemas.base_import, schemas.discovery_query, schemas.base_list_query,
                   schemas.handoff]
RESPONSE_SCHEMAS = [schemas.capture_response, schemas.discovery_response,
                    schemas.base_show_response, schemas.base_list_response,
                    schemas.handoff_response]


@pytest.mark.parametrize('schema', REQUEST_SCHEMAS + RESPONSE_SCHEMAS)
def test_nova_accepts_the_schema(schema):
    # nova's structural rule: every object declares additionalProperties.
    Schemas._validate_schema(schema)


def _valid(schema, body):
    try:
        validators._SchemaValidator(schema).validate(body)
    except exception.ValidationError:
        return False
    return True


@pytest.mark.parametrize('body', [
    {'cloudlet-create-overlay': {'name': 'o'}},
    {'cloudlet-create-overlay': {'name': 'o', 'metadata': {}, 'options': {}}},
    {'cloudlet-create-overlay': {'name': 'o', 'metadata': {'a.b:c d-e_f': 'v'},
                                 'options': {'codec': 'xz'}}},
    {'cloudlet-create-overlay': {'name': 'x' * 255, 'options': {'codec': 'zstd'}}},
])
def test_create_overlay_valid(body):
    assert _valid(schemas.create_overlay, body)


@pytest.mark.parametrize('body', [
    {},
    {'cloudlet-create-overlay': None},
    {'cloudlet-create-overlay': {}},
    {'cloudlet-create-overlay': {'name': ''}},
    {'cloudlet-create-overlay': {'name': ' leading'}},
    {'cloudlet-create-overlay': {'name': 'x' * 256}},
    {'cloudlet-create-overlay': {'name': 'o', 'options': {'codec': 'lz4'}}},
    {'cloudlet-create-overlay': {'name': 'o', 'options': {'codec': 'xz', 'level': 9}}},
    {'cloudlet-create-overlay': {'name': 'o', 'metadata': {'k': 1}}},
    {'cloudlet-create-overlay': {'name': 'o', 'metadata': {'bad/key': 'v'}}},
    {'cloudlet-create-overlay': {'name': 'o', 'metadata': {'k': 'v' * 256}}},
    {'cloudlet-create-overlay': {'name': 'o'}, 'cloudlet-create-base': {'name': 'b'}},
])
def test_create_overlay_invalid(body):
    assert not _valid(schemas.create_overlay, body)


def test_create_base_has_no_options():
    assert _valid(schemas.create_base, {'cloudlet-create-base': {'name': 'b', 'metadata': {}}})
    assert _valid(schemas.create_base_alias, {'cloudlet-base': {'name': 'b'}})
    assert not _valid(schemas.create_base,
                      {'cloudlet-create-base': {'name': 'b', 'options': {'codec': 'xz'}}})


@pytest.mark.parametrize('body, ok', [
    ({'base': {'url': 'https://h/b.zip'}}, True),
    ({'base': {'url': 'https://h/b.zip', 'name': 'n', 'visibility': 'community'}}, True),
    ({'base': {'url': 'https://h/b.zip', 'visibility': 'hidden'}}, False),
    ({'base': {'url': 'h' * 2049}}, False),
    ({'base': {'name': 'n'}}, False),
    ({'base': {'url': 'https://h/b.zip', 'sha256': 'x'}}, False),
])
def test_base_import(body, ok):
    assert _valid(schemas.base_import, body) is ok


APP_CRED = {'application_credential': {'id': 'a1b2', 'secret': 's3cr3t'}}
AUTH_URL = {'auth_url': 'https://edge-b.example:5000/v3'}


def _handoff(**entity):
    body = {'destination': AUTH_URL, 'credential': APP_CRED, 'name': 'app-b'}
    body.update(entity)
    return {'cloudlet-handoff': {k: v for k, v in body.items() if v is not None}}


@pytest.mark.parametrize('body', [
    _handoff(),
    _handoff(credential={'token': 'gAAAAAB-token'}),
    _handoff(destination={'compute_endpoint': 'http://nova-b:8774/v2.1'}),
    _handoff(destination={'cloud': 'edge-b', 'region_name': 'R2', 'interface': 'internal',
                          'flavor': 'f1'}),
    _handoff(destination=dict(AUTH_URL, interface='public'), options={'codec': 'auto'}),
    _handoff(options={'codec': 'xz'}, name='x' * 255),
    _handoff(options={}),
])
def test_handoff_valid(body):
    assert _valid(schemas.handoff, body)


@pytest.mark.parametrize('body', [
    {},
    {'cloudlet-handoff': {}},
    _handoff(destination=None),                                           # no destination
    _handoff(destination={}),
    _handoff(destination=dict(AUTH_URL, cloud='edge-b')),                 # two kinds
    _handoff(destination={'auth_url': 'ftp://h/v3'}),
    _handoff(destination={'auth_url': ''}),
    _handoff(destination=dict(AUTH_URL, interface='admin')),
    _handoff(destination=dict(AUTH_URL, port=5000)),                     # extra key
    _handoff(credential=None),                                            # no credential
    _handoff(credential={}),
    _handoff(credential=dict(APP_CRED, token='t0k3n')),                   # both kinds
    _handoff(credential={'token': ''}),
    _handoff(credential={'application_credential': {'id': 'a1b2'}}),
    _handoff(credential={'application_credential': {'id': 'a', 'secret': 's', 'name': 'n'}}),
    _handoff(credential={'password': 'p'}),
    _handoff(name=None),
    _handoff(name=''),
    _handoff(name='x' * 256),
    _handoff(options={'codec': 'gzip'}),
    _handoff(options={'codec': 'xz', 'level': 3}),
    _handoff(colour='red'),
    dict(_handoff(), extra=1),
])
def test_handoff_invalid(body):
    assert not _valid(schemas.handoff, body)
