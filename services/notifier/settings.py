from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_")
    # Seconds to wait before each retry after a failed attempt (Standard Webhooks' usual ladder).
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000)
    timeout_seconds: float = 5.0
    poll_seconds: float = 0.1
    batch_size: int = 100
    # Concurrent sender loops per process (deliveries are claimed with SKIP LOCKED): while one
    # batch waits on its receivers, the next is already on its way.
    senders: int = 2
    # An endpoint whose last N notifications all ended failed (every retry spent) is disabled.
    disable_after_failures: int = 3
    # How long the previous secret keeps signing after a rotation.
    rotation_overlap_seconds: float = 86400.0


class SmtpSettings(BaseSettings):
    """The SMTP server e-mails go through (tests: aiosmtpd on loopback)."""

    model_config = SettingsConfigDict(env_prefix="SMTP_")
    host: str = "127.0.0.1"
    port: int = 1025
    sender: str = "Pass Numérique <no-reply@passclear.fr>"
    starttls: bool = False
    username: str = ""
    password: str = ""
    timeout_seconds: float = 10.0
