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
    min_age: int | None = Field(default=None, ge=0, le=150, examples=[16])
    max_age: int | None = Field(default=None, ge=0, le=150, examples=[25])


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


class NewPrescriber(Body):
    name: str = Field(min_length=1, max_length=200)
    kind: str = Field(
        min_length=1, max_length=50, examples=["mission-locale", "france-services", "association"]
    )


class NewAllocation(Body):
    programme_id: UUID
    booklets: int = Field(strict=True, ge=1, le=100_000)


class NewDistribution(Body):
    """Who receives the booklet. Kept in the issuer's tables only; events carry a pseudonym."""

    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    birth_date: date
    email: EmailStr | None = None
    distributed_on: date


class NewCancellation(Body):
    reason: str = Field(min_length=1, max_length=200, examples=["booklet reported stolen"])


class NewExpiryRun(Body):
    as_of: date = Field(description="passes whose validity plus grace ended before this day expire")


class NewProgrammeVersion(Body):
    """A new version of a programme: new shares (and optionally new validity), same terms otherwise."""

    funders: list[ShareIn] = Field(min_length=1, max_length=6)
    valid_from: date | None = None
    valid_until: date | None = None
