"""Settings read from the environment, one class per concern.

No secret has a default outside the dev profile: `PASSCLEAR_PROFILE=dev` (the local stack and the
tests) allows the well-known development secret; any other profile must set its own.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-secret-never-in-production-0123456789"


def dev_default(value: str, *, profile: str, env_var: str, dev_value: str) -> str:
    """`value` when set; unset, `dev_value` in the dev profile and an error in any other."""
    if value:
        return value
    if profile != "dev":
        raise ValueError(f"{env_var} must be set outside the dev profile")
    return dev_value


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKA_")
    bootstrap_servers: str = "127.0.0.1:19092"
    topic_prefix: str = "passclear."


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="")
    database_url: str = Field(default="postgresql://postgres@127.0.0.1:15432/passclear")
    db_pool_min: int = 1
    db_pool_max: int = 10


class OutboxSettings(BaseSettings):
    """How long a service's outbox keeps an event once the broker has acknowledged it.

    The outbox is the hand-off to Kafka, not a second copy of the log: the topics keep every event
    forever and are what consumers and the auditor read. By default a published row goes within
    about a second (the relay prunes once a second), so the outbox stays the size of its backlog
    and, vacuumed, reuses its pages instead of growing by ~1.1 kB per event forever. A longer
    retention keeps recent events in the database, to look at or to send again by hand.
    """

    model_config = SettingsConfigDict(env_prefix="PASSCLEAR_OUTBOX_")
    retention_seconds: float = Field(default=0.0, ge=0)


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASSCLEAR_")
    profile: str = "prod"
    auth_secret: str = ""

    @model_validator(mode="after")
    def _secret_required_outside_dev(self) -> AuthSettings:
        secret = dev_default(
            self.auth_secret, profile=self.profile, env_var="PASSCLEAR_AUTH_SECRET", dev_value=DEV_SECRET
        )
        object.__setattr__(self, "auth_secret", secret)
        return self


class ServiceUrls(BaseSettings):
    """Where the HTTP APIs of the other services answer (for the few synchronous calls)."""

    model_config = SettingsConfigDict(env_prefix="PASSCLEAR_")
    issuer_url: str = "http://127.0.0.1:8101"
    redemption_url: str = "http://127.0.0.1:8102"
    clearing_url: str = "http://127.0.0.1:8103"
    notifier_url: str = "http://127.0.0.1:8104"


class PseudonymSettings(BaseSettings):
    """The key of the beneficiary pseudonyms (HMAC): whoever holds it can link a person to a
    pseudonym, so it lives with the issuer only, and a dev default exists in the dev profile only."""

    model_config = SettingsConfigDict(env_prefix="PASSCLEAR_")
    profile: str = "prod"
    pseudonym_secret: str = ""

    @model_validator(mode="after")
    def _secret_required_outside_dev(self) -> PseudonymSettings:
        secret = dev_default(
            self.pseudonym_secret,
            profile=self.profile,
            env_var="PASSCLEAR_PSEUDONYM_SECRET",
            dev_value="dev-only-pseudonym-key-" + DEV_SECRET,
        )
        object.__setattr__(self, "pseudonym_secret", secret)
        return self
