"""Settings come from the environment and a bad one is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runtime.settings import Settings, SettingsError


def test_environment_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "NRM_NATS_URL": "nats://127.0.0.1:4333",
            "NRM_DATA_DIR": "/srv/nrm",
            "NRM_MAX_DELIVER": "7",
            "NRM_RETRY_BACKOFF_SECONDS": "1,2.5,10",
        }
    )
    assert settings.nats_url == "nats://127.0.0.1:4333"
    assert settings.data_dir == Path("/srv/nrm")
    assert settings.max_deliver == 7
    assert settings.retry_backoff_seconds == (1.0, 2.5, 10.0)
    assert settings.key_encryption_key_file == Path("/srv/nrm/keys/kek")


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"NRM_NATS_URL": "nats://a:1"}, nats_url="nats://b:2")
    assert settings.nats_url == "nats://b:2"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NRM_MAX_DELIVER": "many"}, "NRM_MAX_DELIVER"),
        ({"NRM_NATS_URL": "http://x"}, "NRM_NATS_URL"),
        ({"NRM_COUNTRY": "KGZ"}, "NRM_COUNTRY"),
        ({"NRM_REFERRAL_RESPONSE_SECONDS": "-1"}, "NRM_REFERRAL_RESPONSE_SECONDS"),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
