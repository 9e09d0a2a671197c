import os

# nova 34 services run in native threads; so do these tests unless told otherwise.
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

# nova's functional package first: it picks the concurrency mode (native
# threads with OS_NOVA_DISABLE_EVENTLET_PATCHING=1) before anything else
# imports nova, as nova's own tests do.
import nova.tests.functional  # noqa: F401,E402
