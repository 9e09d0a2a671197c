"""Fixtures shared by the engine tests of a base's RAM file (test_ramfile, test_streamed_apply)."""

import pytest

from cloudlet_engine import ramfile
from tests.unit.engine.test_engine import Scenario


@pytest.fixture(scope='module')
def ram_scenario(tmp_path_factory):
    """A base and a changed VM (test_engine.Scenario), one per module."""
    return Scenario(str(tmp_path_factory.mktemp('ramfile')))


@pytest.fixture(scope='module')
def ram(ram_scenario):
    """The base's RAM file."""
    return ramfile.convert(ram_scenario.base)
