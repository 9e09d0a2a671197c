"""Fixtures of the driver glue's unit tests."""

from unittest import mock

from oslo_config import fixture as config_fixture
import pytest

import nova.conf
from nova import objects

from cloudlet_glance import images as glance_images
from cloudlet_glance import model
from cloudlet_nova import conf as cloudlet_conf
from tests.functional import pytest_shim
from tests.unit.glance import conftest as glance_conftest
from tests.unit.glance import fakes

pytest_shim.install()
CONF = nova.conf.CONF


@pytest.fixture
def conf(tmp_path):
    """nova's and our options: instances and the base store under tmp_path, full-image restores."""
    cloudlet_conf.register_opts(CONF)
    objects.register_all()
    fixture = config_fixture.Config(CONF)
    fixture.setUp()
    fixture.config(instances_path=str(tmp_path / 'instances'))
    fixture.config(state_dir=str(tmp_path / 'state'), memory_restore='full_image', group='cloudlet')
    yield fixture
    fixture.cleanUp()


@pytest.fixture(scope='module')
def package(tmp_path_factory):
    return glance_conftest.make_package(tmp_path_factory.mktemp('package'), seed=1, name='demo-base')


@pytest.fixture
def glance(tmp_path, package, conf):
    """A fake Glance holding the package's base, as nova's image API for the code under test."""
    images = fakes.FakeImageService(tmp_path / 'glance')
    imported = model.import_base_package(images, package[1])
    with mock.patch.object(glance_images, 'NovaImages', lambda context: images):
        yield images, imported
