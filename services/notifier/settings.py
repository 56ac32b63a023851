from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_")
    # Seconds to wait before each retry after a failed attempt (Standard Webhooks' usual ladder).
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000)
    timeout_seconds: float = 5.0
    poll_seconds: float = 0.1
    batch_size: int = 100
