"""Clearing's own settings: the account payouts are made from."""

from __future__ import annotations

import os

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from schwifty import BIC, IBAN

# The dev profile pays from a well-known test account; any other profile must name its own.
DEV_PAYER = {"name": "Passclear dev payer", "iban": "FR7630006000011234567890189", "bic": "AGRIFRPP"}


class PayerSettings(BaseSettings):
    """The debtor of the SEPA credit transfer file (the programme's treasury account):
    CLEARING_PAYER_NAME, CLEARING_PAYER_IBAN, CLEARING_PAYER_BIC."""

    model_config = SettingsConfigDict(env_prefix="CLEARING_PAYER_")
    name: str = ""
    iban: str = ""
    bic: str = ""

    @model_validator(mode="after")
    def _defaults_only_in_dev(self) -> PayerSettings:
        profile = os.environ.get("PASSCLEAR_PROFILE", "prod")
        for key, value in DEV_PAYER.items():
            if not getattr(self, key):
                if profile != "dev":
                    raise ValueError(f"CLEARING_PAYER_{key.upper()} must be set outside the dev profile")
                object.__setattr__(self, key, value)
        IBAN(self.iban)
        BIC(self.bic)
        return self
