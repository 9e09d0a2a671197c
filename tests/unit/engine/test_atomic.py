"""cloudlet_engine.atomic: whole files or none."""

import json
import os
import stat

import pytest

from cloudlet_engine import atomic


def test_json_replaces_the_file_whole(tmp_path):
    target = tmp_path / 'record.json'
    target.write_text('old')
    atomic.write_json(str(target), {'b': 1, 'a': [2]})
    assert target.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    assert os.listdir(tmp_path) == ['record.json']


def test_mode_is_set_before_the_file_appears(tmp_path):
    target = tmp_path / 'secrets.json'
    atomic.write_json(str(target), {'k': 'v'}, indent=1, mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == {'k': 'v'}


def test_default_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_text(str(tmp_path / 'f'), 'x')
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / 'f').stat().st_mode) == 0o640


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / 'record.json'
    target.write_text('old')
    with pytest.raises(TypeError):
        atomic.write_json(str(target), {'not json': object()})
    assert target.read_text() == 'old'
    assert os.listdir(tmp_path) == ['record.json']
    with pytest.raises(TypeError):
        atomic.write_text(str(target), 42)
    assert os.listdir(tmp_path) == ['record.json']
