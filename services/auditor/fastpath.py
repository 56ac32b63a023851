"""The replay's hot path: redemption events read as typed JSON, not as models.

Parsing a million envelopes with pydantic costs ~50 µs per redemption; one msgspec decoding of
envelope and payload, checked here, costs a few µs and gives the same `core.Line` clearing's pure core
builds from the model (the unit tests compare both on varied logs: reversals, several programmes
and funders, sub-second timestamps). The statements are then the core's own (`core.issue_all`).
Any event whose shape it does not recognise goes back to the pydantic path (`None` below).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import date, datetime
from functools import partial
from sys import intern
from typing import Any, NamedTuple

import msgspec

from schemas.events import FunderAmount, PassRedeemed, RedemptionReversed, StatementIssued, WindowClosed
from services.clearing.domain import statements as core

_UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID = re.compile(_UUID_RE)
# Hex digits to "x", "-" and NUL to themselves, any other byte to "?": six canonical UUIDs joined
# by NULs translate to exactly `_SIX_SHAPES`.
_SHAPE = bytes(
    ord("x") if chr(b) in "0123456789abcdef" else b if b in b"-\x00" else ord("?") for b in range(256)
)
_SIX_SHAPES = b"\x00".join([b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"] * 6)
# Digits to "d", the separators of a UTC RFC 3339 timestamp to themselves, any other byte to "?".
_TIME = bytes(ord("d") if chr(b) in "0123456789" else b if b in b"-:.TZ" else ord("?") for b in range(256))
# The UTC timestamps pydantic writes (up to microseconds, "Z"): on these, and only these of the
# forms tried, `datetime.fromisoformat` and pydantic accept the same strings as the same instants
# (fromisoformat also takes week dates, basic formats, offsets of 60 minutes, which pydantic refuses).
_UTC_TIMES = frozenset(b"dddd-dd-ddTdd:dd:dd" + (b"." + b"d" * k if k else b"") + b"Z" for k in range(7))


def six_canonical_uuids(joined: str) -> bool:
    """Are these six NUL-separated strings canonical (lower-case, hyphenated) UUIDs?

    The regex says the same (the unit tests check both agree) at four times the cost, and this
    runs for every redemption. ASCII first: `encode` would fail on a lone surrogate."""
    return joined.isascii() and joined.encode().translate(_SHAPE) == _SIX_SHAPES


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """The envelope's exact keys; the payload left undecoded until its type is known. The fields
    the replay does not use are decoded as whatever they hold, as the dict path did."""

    event_id: str
    type: str
    schema_version: int
    occurred_at: Any
    producer: Any
    key: Any
    payload: msgspec.Raw


class Share(msgspec.Struct, forbid_unknown_fields=True):
    funder_id: str
    share_bp: int


class Redeemed(msgspec.Struct, forbid_unknown_fields=True):
    """`PassRedeemed`'s exact fields, typed as JSON: anything else goes to pydantic. The funders
    stay undecoded: a log repeats its programmes' share tables, compared as bytes (`FundersCache`)."""

    redemption_id: str
    pass_id: str
    site_id: str
    programme_id: str
    window_id: int
    face_value_cents: int
    funders: msgspec.Raw
    learning_path: str
    workshop_date: date  # as pydantic's: "YYYY-MM-DD", a real day
    accepted_at: str


class Reversed(msgspec.Struct, forbid_unknown_fields=True):
    reversal_id: str
    redemption_id: str
    pass_id: str
    site_id: str
    programme_id: str
    window_id: int
    face_value_cents: int
    funders: msgspec.Raw
    reason: str
    reversed_at: str


# A redemption or a reversal, envelope and payload in one decoding, told apart by the envelope's
# `type`: the envelope's exact keys as `Envelope` has them.
class RedeemedEvent(msgspec.Struct, forbid_unknown_fields=True, tag_field="type", tag="PassRedeemed"):
    event_id: str
    schema_version: int
    occurred_at: Any
    producer: Any
    key: Any
    payload: Redeemed


class ReversedEvent(msgspec.Struct, forbid_unknown_fields=True, tag_field="type", tag="RedemptionReversed"):
    event_id: str
    schema_version: int
    occurred_at: Any
    producer: Any
    key: Any
    payload: Reversed


class _SiteOnly(msgspec.Struct):
    site_id: str


class _StatementSite(msgspec.Struct):
    type: str
    payload: _SiteOnly


class _StatementId(msgspec.Struct):
    statement_id: str


ENVELOPE = msgspec.json.Decoder(Envelope)
_HOT = msgspec.json.Decoder(RedeemedEvent | ReversedEvent)
_SHARES = msgspec.json.Decoder(list[Share])
_STATEMENT_SITE = msgspec.json.Decoder(_StatementSite)
_STATEMENT_ID = msgspec.json.Decoder(_StatementId)
JsonDict = dict[str, Any]


def statement_site(raw: bytes) -> str | None:
    """The site of a StatementIssued event, read without decoding its lines; None for any other
    record. Only routes the event to the process holding that site's ledger, which reads it in full."""
    try:
        found = _STATEMENT_SITE.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    return found.payload.site_id if found.type == "StatementIssued" else None


def statement_id(payload: msgspec.Raw) -> str | None:
    """A statement payload's id when it is a string, read without decoding the lines; else None."""
    try:
        return _STATEMENT_ID.decode(payload).statement_id
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def is_uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


class FundersCache:
    """The share tables the pydantic path has accepted, and the last one seen as bytes (most
    events of a log share their programme's table: equal bytes are an equal table)."""

    def __init__(self) -> None:
        self.known: set[tuple[tuple[str, int], ...]] = set()
        self.last_raw: msgspec.Raw | None = None
        self.last_key: tuple[tuple[str, int], ...] = ()

    def key(self, raw: msgspec.Raw) -> tuple[tuple[str, int], ...] | None:
        if raw == self.last_raw:
            return self.last_key
        try:
            key = tuple((f.funder_id, f.share_bp) for f in _SHARES.decode(raw))
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        if key not in self.known:
            return None
        self.last_raw, self.last_key = raw, key
        return key


class Hot(NamedTuple):
    """A redemption or reversal read by the fast path: what the fold needs of it."""

    event_id: str
    redemption_id: str
    window_id: int
    line: core.Line


# A NamedTuple's own __new__ is Python code (~0.3 µs a call): the fast path builds them as tuples.
_line = partial(tuple.__new__, core.Line)
_hot = partial(tuple.__new__, Hot)


def hot(value: bytes, funders: FundersCache) -> Hot | None:
    """A redemption or reversal event as the fold needs it, or None when only pydantic can judge it
    (any other type, another schema version, an id not canonical, a share table pydantic has not
    accepted yet, a naive timestamp...)."""
    try:
        event = _HOT.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    r = event.payload
    if isinstance(r, Reversed):
        ref, at, amount, kind = r.reversal_id, r.reversed_at, -r.face_value_cents, "reversal"
    else:
        ref, at, amount, kind = r.redemption_id, r.accepted_at, r.face_value_cents, "redemption"
    if event.schema_version != 1 or not six_canonical_uuids(
        "\x00".join((ref, r.redemption_id, r.pass_id, r.site_id, r.programme_id, event.event_id))
    ):
        return None
    if r.window_id < 1 or r.face_value_cents <= 0:
        return None
    if not at.isascii() or at.encode().translate(_TIME) not in _UTC_TIMES:
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:  # no such day or time: pydantic says so too
        return None
    shares = funders.key(r.funders)
    if shares is None:
        return None
    # A log names a few thousand sites and programmes a million times: one string each
    # (`sys.intern`) keeps ~160 bytes a line off the memory the replay holds until the close.
    line = _line((intern(r.site_id), when, ref, kind, r.pass_id, intern(r.programme_id), amount, shares))
    return _hot((event.event_id, r.redemption_id, r.window_id, line))


def line_of(event: PassRedeemed | RedemptionReversed) -> Hot:
    """The same from a validated model (the slow path), but for the event id."""
    line = core.line_of(core.ledger_line(event))
    return Hot("", str(event.redemption_id), event.window_id, line)


def statements(marker: WindowClosed, lines: Iterable[core.Line]) -> list[core.Issued]:
    """The statements clearing issues when `marker` closes a partition holding these lines of its
    window: the clearing service's own call."""
    return core.issue_all(core.Window(marker), lines)


class _Amounts(NamedTuple):
    """A statement as JSON, as far as the call for funds needs it (`core.HasFunderAmounts`)."""

    statement_id: uuid.UUID
    funder_amounts: tuple[FunderAmount, ...]


def funder_statements(window_id: int, statements: Iterable[JsonDict]) -> list[JsonDict]:
    """`core.funder_statements(...)` as JSON, from statements as JSON."""
    amounts = [
        _Amounts(
            uuid.UUID(st["statement_id"]),
            tuple(
                FunderAmount.model_construct(
                    funder_id=uuid.UUID(fa["funder_id"]), amount_cents=fa["amount_cents"]
                )
                for fa in st["funder_amounts"]
            ),
        )
        for st in statements
    ]
    return [fs.model_dump(mode="json") for fs in core.funder_statements(window_id, amounts)]


def own_digest_holds(issued: JsonDict) -> bool:
    """Does an issued statement's digest match its own lines (as pydantic would dump them)?"""
    try:
        lines = StatementIssued.model_validate(issued).lines
    except ValueError:
        return False
    return bool(issued.get("digest") == core.digest(line.model_dump(mode="json") for line in lines))
