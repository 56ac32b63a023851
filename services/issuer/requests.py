"""The issuer API's request bodies, validated before anything is written."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field
from schwifty import BIC, IBAN
from stdnum.fr import siret as siret_rule


def _siret(value: str) -> str:
    try:
        return str(siret_rule.validate(value))
    except Exception as exc:
        raise ValueError(f"not a valid SIRET: {exc}") from exc


def _iban(value: str) -> str:
    try:
        return IBAN(value).compact
    except Exception as exc:
        raise ValueError(f"not a valid IBAN: {exc}") from exc


def _bic(value: str) -> str:
    try:
        return str(BIC(value))
    except Exception as exc:
        raise ValueError(f"not a valid BIC: {exc}") from exc


Siret = Annotated[str, AfterValidator(_siret)]
Iban = Annotated[str, AfterValidator(_iban)]
Bic = Annotated[str, AfterValidator(_bic)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewFunder(Body):
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=50, examples=["region", "state", "departement", "enedis"])


class ShareIn(Body):
    funder_id: UUID
    share_bp: int = Field(strict=True, gt=0, le=10_000)


class NewProgramme(Body):
    name: str = Field(min_length=1, max_length=200)
    territory: str = Field(min_length=1, max_length=200)
    face_value_cents: int = Field(strict=True, gt=0, examples=[1000])
    passes_per_booklet: int = Field(strict=True, ge=1, le=100)
    valid_from: date
    valid_until: date
    grace_days: int = Field(default=31, ge=0, le=366)
    learning_paths: list[str] = Field(min_length=1)
    funders: list[ShareIn] = Field(min_length=1, max_length=6)


class NewSite(Body):
    name: str = Field(min_length=1, max_length=200)
    siret: Siret
    iban: Iban
    bic: Bic
    contact_email: EmailStr


class NewQualification(Body):
    programme_id: UUID


class NewOrder(Body):
    programme_id: UUID
    booklets: int = Field(strict=True, ge=1, le=100_000)


class NewPayment(Body):
    amount_cents: int = Field(strict=True, gt=0)
    bank_reference: str = Field(min_length=1, max_length=140)
    funder_id: UUID | None = Field(default=None, description="finance only: the funder who paid")
