"""cloudlet_nova.handoff.records: the handoff record file, atomic and without secrets."""

import json
import os

import pytest

from cloudlet_nova.handoff import records

HANDOFF_ID = '0f0e0d0c-0b0a-4909-8807-060504030201'
SECRET = 'app-credential-secret-value'


def test_new_record_is_written_on_the_first_change(tmp_path):
    record = records.HandoffRecord(str(tmp_path), HANDOFF_ID, 'inst-1', server_name='app-b')
    assert not os.path.exists(record.path)
    record.save()
    data = records.load(str(tmp_path), HANDOFF_ID)
    assert record.path == str(tmp_path / 'handoffs' / ('%s.json' % HANDOFF_ID))
    assert data['result'] == records.RUNNING
    assert data['instance_uuid'] == 'inst-1'
    assert data['destination_server_name'] == 'app-b'
    assert data['version'] == records.VERSION
    assert data['started_at'].endswith('Z') and data['ended_at'] is None


def test_phases_with_times_and_results(tmp_path):
    record = records.HandoffRecord(str(tmp_path), HANDOFF_ID, 'inst-1')
    with record.phase('destination'):
        assert records.load(str(tmp_path), HANDOFF_ID)['phases'][0]['result'] == records.RUNNING
    with pytest.raises(RuntimeError):
        with record.phase('residue'):
            raise RuntimeError('link cut')
    record.finish(records.ERROR, 'link cut')
    data = records.load(str(tmp_path), HANDOFF_ID)
    assert [(p['name'], p['result']) for p in data['phases']] == [
        ('destination', records.OK), ('residue', records.ERROR)]
    for phase in data['phases']:
        assert phase['seconds'] >= 0 and phase['started_at'] and phase['ended_at']
    assert (data['result'], data['error']) == (records.ERROR, 'link cut')
    assert data['ended_at']


def test_destination_url_without_credentials(tmp_path):
    record = records.HandoffRecord(str(tmp_path), HANDOFF_ID, 'inst-1')
    record.set_destination(auth_url='https://user:%s@edge-b.example:5000/v3?token=x#f' % SECRET,
                           cloud=None, region_name='RegionTwo', flavor_id='f1')
    data = records.load(str(tmp_path), HANDOFF_ID)
    assert data['destination'] == {'auth_url': 'https://edge-b.example:5000/v3',
                                   'region_name': 'RegionTwo', 'flavor_id': 'f1'}
    assert SECRET not in open(record.path).read()


@pytest.mark.parametrize('url, public', [
    ('https://h/v3', 'https://h/v3'),
    ('http://u:p@[::1]:5000/identity/v3', 'http://[::1]:5000/identity/v3'),
    (None, None),
])
def test_public_url(url, public):
    assert records.public_url(url) == public


def test_forbidden_strings_are_masked(tmp_path):
    record = records.HandoffRecord(str(tmp_path), HANDOFF_ID, 'inst-1')
    record.forbid(SECRET, 'tok"en\\with-quotes')
    record.finish(records.ERROR, 'destination said: bad secret %s and tok"en\\with-quotes' % SECRET)
    text = open(record.path).read()
    assert SECRET not in text and 'with-quotes' not in text
    assert json.loads(text)['error'] == 'destination said: bad secret *** and ***'


def test_unknown_field_refused(tmp_path):
    record = records.HandoffRecord(str(tmp_path), HANDOFF_ID, 'inst-1')
    with pytest.raises(KeyError):
        record.update(credential={'token': SECRET})
    record.update(bytes_sent=123, codecs={'zstd': 3}, downtime_seconds=0.25)
    data = records.load(str(tmp_path), HANDOFF_ID)
    assert (data['bytes_sent'], data['codecs'], data['downtime_seconds']) == (123, {'zstd': 3}, 0.25)


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    record = records.HandoffRecord(str(tmp_path), HANDOFF_ID, 'inst-1')
    for i in range(3):
        record.update(bytes_sent=i)
    assert os.listdir(tmp_path / 'handoffs') == ['%s.json' % HANDOFF_ID]


def test_bad_ids_refused(tmp_path):
    for bad in ('', '../x', '.hidden', 'a/b'):
        with pytest.raises(ValueError):
            records.path(str(tmp_path), bad)


def test_missing_record_loads_as_none(tmp_path):
    assert records.load(str(tmp_path), HANDOFF_ID) is None


def test_running_records_marked_interrupted_at_start(tmp_path):
    running = records.HandoffRecord(str(tmp_path), HANDOFF_ID, 'inst-1')
    running.save()
    done = records.HandoffRecord(str(tmp_path), 'other-id', 'inst-2')
    done.finish(records.OK)
    (tmp_path / 'handoffs' / 'junk.json').write_text('{not json')
    changed = records.mark_interrupted(str(tmp_path))
    assert [c['handoff_id'] for c in changed] == [HANDOFF_ID]
    assert records.load(str(tmp_path), HANDOFF_ID)['result'] == records.INTERRUPTED
    assert records.load(str(tmp_path), 'other-id')['result'] == records.OK
    assert records.mark_interrupted(str(tmp_path)) == []
    assert records.mark_interrupted(str(tmp_path / 'nowhere')) == []
