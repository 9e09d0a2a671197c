from tests.functional import pytest_shim

pytest_shim.install()
