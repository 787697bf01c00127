"""Bundler settings and bundle-index keys."""

from __future__ import annotations

import pytest

from modelops_bundler.errors import SettingsError
from modelops_bundler.records import digest_key, latest_key
from modelops_bundler.settings import Settings


def test_defaults_use_the_embedded_layout_store() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.bundle_store.startswith("oci-layout:")
    assert settings.build_on_register is False


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "MODELOPS_BUNDLE_STORE": "registry.example:5000",
            "MODELOPS_BUNDLE_STORE_INSECURE": "false",
            "MODELOPS_BUNDLER_BUILD_ON_REGISTER": "yes",
            "MODELOPS_BUNDLER_REPOSITORY": "team/sir",
        }
    )
    assert settings.bundle_store == "registry.example:5000"
    assert settings.store_insecure is False
    assert settings.build_on_register is True
    assert settings.auto_repository == "team/sir"


@pytest.mark.parametrize(
    ("name", "value"),
    [("MODELOPS_BUNDLER_BUILD_ON_REGISTER", "maybe"), ("MODELOPS_BUNDLER_MAX_DELIVER", "x")],
)
def test_unusable_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_index_keys_are_valid_kv_keys() -> None:
    assert digest_key("sha256:" + "0" * 64) == "sha256." + "0" * 64
    assert latest_key("team/sir") == "team/sir/latest"
