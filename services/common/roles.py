"""The roles a bearer token can carry (kept apart from `auth`, which needs FastAPI, so the CLI
can name them without importing a web framework)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    FINANCE = "finance"  # finance / programme administration: sees everything
    FUNDER = "funder"
    PRESCRIBER = "prescriber"
    SITE = "site"
    SERVICE = "service"  # another passclear service
    AUDITOR = "auditor"
