from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class RedemptionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDEMPTION_")
    # How long a site may reverse its own redemption; finance may reverse at any time.
    site_reversal_hours: int = 72
    # "monthly": windows close at the end of each calendar month (Europe/Paris); "manual": only
    # when finance closes them.
    window_period: str = "monthly"
    window_check_seconds: float = 30.0
