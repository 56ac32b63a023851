"""Event payloads: the contract between services.

Rules every model keeps: frozen, `extra="forbid"`, money in integer cents, shares in basis
points, ids and pseudonyms only — no beneficiary name, birth date or e-mail, no IBAN.
Each model names its `TYPE` and `VERSION`; `parse_payload` picks the model from the envelope.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.envelope import Envelope

Cents = Annotated[int, Field(strict=True)]
PositiveCents = Annotated[int, Field(strict=True, gt=0)]
BasisPoints = Annotated[int, Field(strict=True, ge=0, le=10_000)]
TOTAL_BASIS_POINTS = 10_000


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class FunderShare(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    funder_id: UUID
    share_bp: BasisPoints


def _shares_are_whole(funders: tuple[FunderShare, ...]) -> None:
    if not 1 <= len(funders) <= 6:
        raise ValueError("a programme has between 1 and 6 funders")
    if sum(f.share_bp for f in funders) != TOTAL_BASIS_POINTS:
        raise ValueError("funder shares must sum to exactly 10000 basis points")
    if len({f.funder_id for f in funders}) != len(funders):
        raise ValueError("a funder appears twice in the shares")


# --- issuer -------------------------------------------------------------------------------


class FunderRegistered(Payload):
    TYPE = "FunderRegistered"
    funder_id: UUID
    name: str
    kind: str


class ProgrammeRegistered(Payload):
    TYPE = "ProgrammeRegistered"
    programme_id: UUID
    name: str
    territory: str
    face_value_cents: PositiveCents
    passes_per_booklet: Annotated[int, Field(ge=1, le=100)]
    valid_from: date
    valid_until: date
    grace_days: Annotated[int, Field(ge=0)]
    learning_paths: tuple[str, ...]
    funders: tuple[FunderShare, ...]
    # Added after v1 shipped, with defaults so that earlier events keep parsing.
    min_age: Annotated[int, Field(ge=0, le=150)] | None = None
    max_age: Annotated[int, Field(ge=0, le=150)] | None = None
    version: Annotated[int, Field(ge=1)] = 1
    supersedes: UUID | None = None

    @model_validator(mode="after")
    def _check(self) -> ProgrammeRegistered:
        _shares_are_whole(self.funders)
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        if self.min_age is not None and self.max_age is not None and self.max_age < self.min_age:
            raise ValueError("max_age is below min_age")
        return self


class SiteRegistered(Payload):
    TYPE = "SiteRegistered"
    site_id: UUID
    name: str
    siret: str


class SiteQualificationGranted(Payload):
    TYPE = "SiteQualificationGranted"
    site_id: UUID
    programme_id: UUID


class SiteQualificationWithdrawn(Payload):
    TYPE = "SiteQualificationWithdrawn"
    site_id: UUID
    programme_id: UUID


class OrderPlaced(Payload):
    TYPE = "OrderPlaced"
    order_id: UUID
    programme_id: UUID
    booklets: Annotated[int, Field(ge=1)]
    face_value_total_cents: PositiveCents
    funder_dues: tuple[FunderDue, ...]


class FunderDue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    funder_id: UUID
    amount_cents: Cents


class FunderPaymentRecorded(Payload):
    TYPE = "FunderPaymentRecorded"
    payment_id: UUID
    order_id: UUID
    programme_id: UUID
    funder_id: UUID
    amount_cents: PositiveCents
    bank_reference: str


class PassIssued(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    pass_id: UUID
    code: str


class BookletActivated(Payload):
    TYPE = "BookletActivated"
    booklet_id: UUID
    order_id: UUID
    programme_id: UUID
    face_value_cents: PositiveCents
    valid_until: date
    grace_days: Annotated[int, Field(ge=0)]
    passes: tuple[PassIssued, ...]


class PassCancelled(Payload):
    TYPE = "PassCancelled"
    pass_id: UUID
    programme_id: UUID
    reason: str


class PrescriberRegistered(Payload):
    """A prescriber (Mission locale, France Services desk, association…): an organisation."""

    TYPE = "PrescriberRegistered"
    prescriber_id: UUID
    name: str
    kind: str


class BookletAllocated(Payload):
    """An active booklet handed to a prescriber, who will distribute it."""

    TYPE = "BookletAllocated"
    booklet_id: UUID
    programme_id: UUID
    prescriber_id: UUID


class BookletDistributed(Payload):
    """A prescriber handed a booklet to a beneficiary. The beneficiary is a keyed pseudonym
    (HMAC of the identity, with a key only the issuer holds): never a name or a birth date."""

    TYPE = "BookletDistributed"
    booklet_id: UUID
    programme_id: UUID
    prescriber_id: UUID
    beneficiary_pseudonym: Annotated[str, Field(min_length=16, max_length=128)]
    distributed_on: date


class PassExpired(Payload):
    """A pass past its programme's validity plus grace, not redeemed: it can no longer be."""

    TYPE = "PassExpired"
    pass_id: UUID
    programme_id: UUID
    expired_on: date


# --- redemption ---------------------------------------------------------------------------


class PassRedeemed(Payload):
    """A site accepted a pass. Carries the programme's shares in force so that clearing and the
    auditor need nothing but the redemption log to compute a statement."""

    TYPE = "PassRedeemed"
    redemption_id: UUID
    pass_id: UUID
    site_id: UUID
    programme_id: UUID
    window_id: Annotated[int, Field(ge=1)]
    face_value_cents: PositiveCents
    funders: tuple[FunderShare, ...]
    learning_path: str
    workshop_date: date
    accepted_at: datetime


class RedemptionReversed(Payload):
    TYPE = "RedemptionReversed"
    reversal_id: UUID
    redemption_id: UUID
    pass_id: UUID
    site_id: UUID
    programme_id: UUID
    window_id: Annotated[int, Field(ge=1)]
    face_value_cents: PositiveCents
    funders: tuple[FunderShare, ...]
    reason: str
    reversed_at: datetime


class WindowClosed(Payload):
    """Marker published on every partition of the redemptions topic after the window's last event."""

    TYPE = "WindowClosed"
    window_id: Annotated[int, Field(ge=1)]
    partition: Annotated[int, Field(ge=0)]
    partition_count: Annotated[int, Field(ge=1)]
    opened_at: datetime
    closed_at: datetime
    next_window_id: Annotated[int, Field(ge=2)]


# --- clearing -----------------------------------------------------------------------------


class StatementLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: str  # "redemption" | "reversal"
    ref_id: UUID
    pass_id: UUID
    programme_id: UUID
    amount_cents: Cents


class FunderAmount(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    funder_id: UUID
    amount_cents: Cents


class StatementIssued(Payload):
    TYPE = "StatementIssued"
    statement_id: UUID
    window_id: Annotated[int, Field(ge=1)]
    site_id: UUID
    period_start: datetime
    period_end: datetime
    redemptions: Annotated[int, Field(ge=0)]
    reversals: Annotated[int, Field(ge=0)]
    total_cents: Cents
    funder_amounts: tuple[FunderAmount, ...]
    lines: tuple[StatementLine, ...]
    digest: str
    expected_payout_date: date


class FunderStatementIssued(Payload):
    TYPE = "FunderStatementIssued"
    funder_statement_id: UUID
    window_id: Annotated[int, Field(ge=1)]
    funder_id: UUID
    amount_cents: Cents
    statements: Annotated[int, Field(ge=0)]
    digest: str


# --- notifier -----------------------------------------------------------------------------


class NotificationDelivered(Payload):
    TYPE = "NotificationDelivered"
    notification_id: str
    statement_id: UUID
    site_id: UUID
    channel: str
    attempts: Annotated[int, Field(ge=1)]


class NotificationFailed(Payload):
    TYPE = "NotificationFailed"
    notification_id: str
    statement_id: UUID
    site_id: UUID
    channel: str
    attempts: Annotated[int, Field(ge=1)]
    reason: str


class FunderNotificationDelivered(Payload):
    """A funder's finance team received its call for funds (e-mail with CSV and PDF)."""

    TYPE = "FunderNotificationDelivered"
    notification_id: str
    funder_statement_id: UUID
    funder_id: UUID
    window_id: Annotated[int, Field(ge=1)]
    channel: str
    attempts: Annotated[int, Field(ge=1)]


class FunderNotificationFailed(Payload):
    TYPE = "FunderNotificationFailed"
    notification_id: str
    funder_statement_id: UUID
    funder_id: UUID
    window_id: Annotated[int, Field(ge=1)]
    channel: str
    attempts: Annotated[int, Field(ge=1)]
    reason: str


class ReversalNotificationDelivered(Payload):
    """A site was told of a reversal made after its redemption's window had closed: the amount
    already in a statement is deducted from the window named here (the one the reversal was
    stamped with)."""

    TYPE = "ReversalNotificationDelivered"
    notification_id: str
    reversal_id: UUID
    redemption_id: UUID
    site_id: UUID
    window_id: Annotated[int, Field(ge=1)]  # the window the amount is deducted from
    channel: str
    attempts: Annotated[int, Field(ge=1)]


class ReversalNotificationFailed(Payload):
    TYPE = "ReversalNotificationFailed"
    notification_id: str
    reversal_id: UUID
    redemption_id: UUID
    site_id: UUID
    window_id: Annotated[int, Field(ge=1)]
    channel: str
    attempts: Annotated[int, Field(ge=1)]
    reason: str


# --- dead letters -------------------------------------------------------------------------


class DeadLetterRecorded(Payload):
    """A message a consumer could not apply. The raw bytes are kept (our own topics carry no
    personal data) so that it can be inspected and replayed once the cause is fixed."""

    TYPE = "DeadLetterRecorded"
    consumer: str
    source_topic: str
    source_partition: Annotated[int, Field(ge=0)]
    source_offset: Annotated[int, Field(ge=0)]
    reason: str
    raw: str


PAYLOAD_MODELS: tuple[type[Payload], ...] = (
    FunderRegistered,
    ProgrammeRegistered,
    SiteRegistered,
    SiteQualificationGranted,
    SiteQualificationWithdrawn,
    OrderPlaced,
    FunderPaymentRecorded,
    BookletActivated,
    PassCancelled,
    PrescriberRegistered,
    BookletAllocated,
    BookletDistributed,
    PassExpired,
    PassRedeemed,
    RedemptionReversed,
    WindowClosed,
    StatementIssued,
    FunderStatementIssued,
    NotificationDelivered,
    NotificationFailed,
    DeadLetterRecorded,
    FunderNotificationDelivered,
    FunderNotificationFailed,
    ReversalNotificationDelivered,
    ReversalNotificationFailed,
)
REGISTRY: dict[tuple[str, int], type[Payload]] = {(m.TYPE, m.VERSION): m for m in PAYLOAD_MODELS}


class UnknownEventType(ValueError):
    pass


def parse_payload(envelope: Envelope) -> Payload:
    """The typed payload of an envelope; raises ValueError (a poison message) if it does not fit."""
    model = REGISTRY.get((envelope.type, envelope.schema_version))
    if model is None:
        raise UnknownEventType(f"unknown event type {envelope.type} v{envelope.schema_version}")
    return model.model_validate(envelope.payload)


# --- credit notes (clearing) -------------------------------------------------------------------


class ExpiryCreditNoteIssued(Payload):
    """The passes of a programme that expired unused, credited back to its funders by share:
    once per programme, after its last redemption day. A pass the issuer cancelled is credited by
    the programme's CancellationCreditNoteIssued instead, never by both. The digest covers the
    sorted pass ids."""

    TYPE = "ExpiryCreditNoteIssued"
    credit_note_id: UUID
    programme_id: UUID
    expired_after: date  # the last day a pass of the programme could be redeemed
    passes: Annotated[int, Field(ge=0)]
    face_value_cents: PositiveCents
    total_cents: Cents
    funder_amounts: tuple[FunderAmount, ...]
    digest: str


PAYLOAD_MODELS = (*PAYLOAD_MODELS, ExpiryCreditNoteIssued)
REGISTRY[(ExpiryCreditNoteIssued.TYPE, ExpiryCreditNoteIssued.VERSION)] = ExpiryCreditNoteIssued


class CancellationCreditNoteIssued(Payload):
    """The passes of a programme that the issuer cancelled (lost or stolen booklets) and that were
    never used, credited back to its funders by share: once per programme, in the same run as its
    expiry credit note (when every redemption and reversal of its passes is final), for the passes
    that note leaves out. The digest covers the sorted pass ids."""

    TYPE = "CancellationCreditNoteIssued"
    credit_note_id: UUID
    programme_id: UUID
    cleared_after: date  # the programme's last redemption day
    passes: Annotated[int, Field(ge=0)]
    face_value_cents: PositiveCents
    total_cents: Cents
    funder_amounts: tuple[FunderAmount, ...]
    digest: str


PAYLOAD_MODELS = (*PAYLOAD_MODELS, CancellationCreditNoteIssued)
REGISTRY[(CancellationCreditNoteIssued.TYPE, CancellationCreditNoteIssued.VERSION)] = (
    CancellationCreditNoteIssued
)
