# nova's concurrency mode and the pytest shim, before any nova import (also for stestr).
from tests.functional.api import nova_harness  # noqa: F401
