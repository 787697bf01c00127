"""Fixtures of the registrar's integration tests."""

from tests.integration.bundler.services import fresh_nats  # noqa: F401 - a fixture
