from tests.functional.api import nova_harness  # noqa: F401  (must come before nova)
