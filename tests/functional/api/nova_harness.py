"""Running nova's own test classes from tests/functional/api and tests/unit/api.

Imported by both packages' __init__.py (and conftest.py) before anything else:

* nova's test packages call `nova.monkey_patch.patch()` at import; nova 34's
  API and our code run on native threads, so the threading backend is the
  default here (`OS_NOVA_DISABLE_EVENTLET_PATCHING=1`; the environment may
  still say otherwise) and the patch runs before the rest of nova is imported.
* pytest + `nova.test.TestCase` needs a shim (nova's `_clear_attrs` deletes the
  bound test method pytest then `delattr()`s); the project's one copy is
  `tests.functional.pytest_shim`.
"""

import os

os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')

from nova import monkey_patch  # noqa: E402

monkey_patch.patch()

from tests.functional import pytest_shim  # noqa: E402

pytest_shim.install()
