"""Registrar settings from the environment."""

from __future__ import annotations

import pytest

from modelops_registrar.errors import SettingsError
from modelops_registrar.settings import Settings


def test_defaults_suit_the_embedded_stack() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.nats_url.startswith("nats://127.0.0.1")


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "MODELOPS_NATS_URL": "nats://bus:4222",
            "MODELOPS_REGISTRAR_DURABLE": "reg-2",
            "MODELOPS_REGISTRAR_MAX_DELIVER": "7",
            "MODELOPS_REGISTRAR_ACK_WAIT_S": "12.5",
        }
    )
    assert (settings.nats_url, settings.durable, settings.max_deliver, settings.ack_wait_s) == (
        "nats://bus:4222",
        "reg-2",
        7,
        12.5,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODELOPS_REGISTRAR_MAX_DELIVER", "three"),
        ("MODELOPS_REGISTRAR_MAX_DELIVER", "0"),
        ("MODELOPS_REGISTRAR_NAK_DELAY_S", "-1"),
    ],
)
def test_unusable_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
