"""Horizon's test helpers need Django configured before they are imported: this does it once.

Horizon's test data also rewrites __init__ and __str__ of the clients' exception
classes (keystoneauth's, openstacksdk's, ...) for every test, and never puts them
back; the rest of our unit tests, in the same process, then see other messages.
`horizon_exceptions_restored` puts them back after each test. Its test settings set
a process-wide socket timeout of 1 s, which is put back here too.
"""

import os
import socket

import django
from django.test import utils as django_test_utils
import pytest

horizon = pytest.importorskip('horizon')   # the dashboard's own tests: Horizon from test-requirements.txt

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.unit.dashboard.settings')
_timeout = socket.getdefaulttimeout()
django.setup()
socket.setdefaulttimeout(_timeout)
# What Django's test runner does first (ALLOWED_HOSTS gets 'testserver', a locmem mailbox).
django_test_utils.setup_test_environment()

from openstack_dashboard.test.test_data import exceptions as horizon_test_exceptions  # noqa: E402

_STUBBED = ('__init__', '__str__', 'silence_logging')
_MISSING = object()


@pytest.fixture(autouse=True)
def horizon_exceptions_restored(monkeypatch):
    saved = {}
    stub = horizon_test_exceptions.create_stubbed_exception

    def recording(cls, *args, **kwargs):
        saved.setdefault(cls, {name: cls.__dict__.get(name, _MISSING) for name in _STUBBED})
        return stub(cls, *args, **kwargs)
    monkeypatch.setattr(horizon_test_exceptions, 'create_stubbed_exception', recording)
    yield
    for cls, attributes in saved.items():
        for name, value in attributes.items():
            if value is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, value)
