"""Fixtures of the deployment tests (the box, the devstack plugin)."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / 'tools'))
from cloudlet_box import layout  # noqa: E402


@pytest.fixture
def box_roots(tmp_path, monkeypatch):
    """Boxes keep their files under tmp_path instead of /var/lib, /var/log, /run."""
    monkeypatch.setattr(layout.Box, 'root', property(lambda self: tmp_path / 'lib' / self.name))
    monkeypatch.setattr(layout.Box, 'logs', property(lambda self: tmp_path / 'log' / self.name))
    monkeypatch.setattr(layout.Box, 'run', property(lambda self: tmp_path / 'run' / self.name))
    return tmp_path
