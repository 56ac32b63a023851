"""No secret has a default outside the dev profile."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.settings import DEV_SECRET, AuthSettings, PseudonymSettings

SECRETS = [
    (AuthSettings, "PASSCLEAR_AUTH_SECRET", "auth_secret"),
    (PseudonymSettings, "PASSCLEAR_PSEUDONYM_SECRET", "pseudonym_secret"),
]


@pytest.mark.parametrize(("settings", "env_var", "field"), SECRETS)
def test_a_secret_must_be_set_outside_the_dev_profile(settings, env_var, field, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PASSCLEAR_PROFILE", "prod")
    monkeypatch.delenv(env_var, raising=False)
    with pytest.raises(ValidationError, match=f"{env_var} must be set outside the dev profile"):
        settings()
    monkeypatch.setenv(env_var, "a-real-secret")
    assert getattr(settings(), field) == "a-real-secret"


@pytest.mark.parametrize(("settings", "env_var", "field"), SECRETS)
def test_the_dev_profile_has_a_development_secret_unless_one_is_set(
    settings, env_var, field, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PASSCLEAR_PROFILE", "dev")
    monkeypatch.delenv(env_var, raising=False)
    assert DEV_SECRET in getattr(settings(), field)
    monkeypatch.setenv(env_var, "mine")
    assert getattr(settings(), field) == "mine"
