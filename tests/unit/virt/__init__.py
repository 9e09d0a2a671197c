import os

# nova 34 services run in native threads; so do these tests unless told otherwise.
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

# nova's unit test package first: concurrency mode and object registration, as nova's own tests.
import nova.tests.unit  # noqa: F401,E402
