"""api_extensions.schemas, checked with nova's own validator and schema rules."""

import pytest

from nova.api.validation import Schemas
from nova.api.validation import validators
from nova import exception

from api_extensions import schemas

REQUEST_SCHEMAS = [schemas.create_base, schemas.create_base_alias, schemas.create_overlay,
                   schemas.base_import, schemas.discovery_query, schemas.base_list_query]
RESPONSE_SCHEMAS = [schemas.capture_response, schemas.discovery_response,
                    schemas.base_show_response, schemas.base_list_response]


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
