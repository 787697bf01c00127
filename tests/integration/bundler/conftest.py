"""Fixtures of the bundler's integration tests (shared with the registrar's)."""

from tests.integration.bundler.services import fresh_nats  # noqa: F401 - a fixture
