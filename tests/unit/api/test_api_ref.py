"""api-ref/: parameters.yaml is what tools/api_ref_params.py writes from the
schemas, the samples pass the schemas, and every parameter the .inc files name
exists (tox -e api-ref builds it with -W)."""

import json
import pathlib
import re
import sys

import pytest
import yaml

from nova.api.validation import validators
from nova import exception

from api_extensions import schemas

REPO = pathlib.Path(__file__).resolve().parents[3]
SOURCE = REPO / 'api-ref' / 'source'
sys.path.insert(0, str(REPO / 'tools'))

import api_ref_params  # noqa: E402

SAMPLES = {
    'server-action-create-base-req.json': schemas.create_base,
    'server-action-create-base-resp.json': schemas.capture_response,
    'server-action-create-overlay-req.json': schemas.create_overlay,
    'server-action-create-overlay-resp.json': schemas.capture_response,
    'server-action-handoff-req.json': schemas.handoff,
    'server-action-handoff-resp.json': schemas.handoff_response,
    'server-action-heartbeat-req.json': schemas.heartbeat,
    'server-action-heartbeat-resp.json': schemas.heartbeat_response,
    'cloudlet-discovery-resp.json': schemas.discovery_response,
    'base-import-req.json': schemas.base_import,
    'base-import-resp.json': schemas.base_import_response,
    'base-list-resp.json': schemas.base_list_response,
    'base-show-resp.json': schemas.base_show_response,
    'negotiate-req.json': schemas.negotiate,
    'negotiate-url-req.json': schemas.negotiate,
    'negotiate-resp.json': schemas.negotiate_response,
    'negotiate-refused-resp.json': schemas.negotiate_response,
    'residue-status-resp.json': schemas.residue_status_response,
}


def test_parameters_yaml_is_current():
    written = (SOURCE / 'parameters.yaml').read_text()
    assert written == api_ref_params.render(schemas), (
        'api-ref/source/parameters.yaml is out of date with api_extensions/schemas.py: run '
        'PYTHONPATH=. OS_NOVA_DISABLE_EVENTLET_PATCHING=1 python tools/api_ref_params.py')


def test_every_schema_is_documented_or_skipped_on_purpose():
    assert api_ref_params.undocumented(schemas) == []


def test_a_new_schema_field_needs_a_description(monkeypatch):
    field = {'type': 'string'}
    monkeypatch.setitem(schemas.base_import['properties']['base']['properties'], 'checksum', field)
    with pytest.raises(ValueError, match=r'request\.base\.checksum: no description'):
        api_ref_params.render(schemas)
    field['description'] = 'The package\'s SHA-256.'
    assert 'request.base.checksum:' in api_ref_params.render(schemas)


def test_required_and_enums_come_from_the_schemas():
    params = yaml.safe_load(api_ref_params.render(schemas))
    assert params['request.base.url']['required'] is True
    assert params['request.base.visibility']['required'] is False
    # oneOf: a key of one branch only is optional.
    assert params['request.cloudlet-handoff.destination.auth_url']['required'] is False
    assert params['request.cloudlet-handoff.credential.application_credential.id']['required']
    assert '``zstd``, ``xz``' in params['request.cloudlet-create-overlay.options.codec']['description']


@pytest.mark.parametrize('name', sorted(SAMPLES))
def test_sample_passes_its_schema(name):
    body = json.loads((SOURCE / 'samples' / name).read_text())
    try:
        validators._SchemaValidator(SAMPLES[name]).validate(body)
    except exception.ValidationError as error:
        pytest.fail('%s: %s' % (name, error.format_message()))


def test_every_sample_is_checked_and_used():
    on_disk = {p.name for p in (SOURCE / 'samples').glob('*.json')}
    assert on_disk == set(SAMPLES)
    included = set()
    for inc in SOURCE.glob('*.inc'):
        included |= set(re.findall(r'literalinclude:: samples/(\S+)', inc.read_text()))
    assert included == set(SAMPLES)


def test_every_parameter_named_in_the_inc_files_exists():
    params = yaml.safe_load((SOURCE / 'parameters.yaml').read_text())
    named = set()
    for inc in SOURCE.glob('*.inc'):
        for block in re.findall(r'rest_parameters:: parameters.yaml\n\n((?: +- .*\n)+)', inc.read_text()):
            named |= set(re.findall(r'^ +- [\w-]+: (\S+)$', block, re.M))
    assert named and named - set(params) == set()
