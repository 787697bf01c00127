"""Root conftest: registers the shared server fixtures (and the `integration` auto-marker)."""

pytest_plugins = ["tests.support.fixtures"]
