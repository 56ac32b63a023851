"""Redemption-topic messages as rows for the ledger's staging table.

The hot path: a PassRedeemed or RedemptionReversed envelope in the canonical form our producers
write (pydantic's own JSON: lower-case hyphenated UUIDs, RFC 3339 timestamps with an offset, exact
keys) is decoded by msgspec into typed structs, envelope and payload in one pass, their types and
bounds checked in C, the few remaining shapes checked here: ~4 times cheaper than the orjson dict
and its field-by-field checks, ~10 times cheaper than building the pydantic models. Anything else —
another type, another spelling, a malformed message — gets None here and goes through the
schema's models, which stay the authority: what they reject is dead-lettered with their reason.
So this path accepts only what the models accept, with the same values (tests/unit/test_incoming.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Annotated

import msgspec
from pydantic import TypeAdapter, ValidationError

from schemas.events import FunderShare
from services.clearing.domain.statements import LedgerLine
from services.clearing.pg_store import shares_id, shares_json

# event_id, ref_id, kind, site_id, pass_id, programme_id, window_id, amount_cents, shares_id (the
# line's share list in ledger_shares: `shares` gives its JSON), at, partition: the staging table's
# columns (ledger.STAGING_COLUMNS), in order.
Row = tuple[
    uuid.UUID | str,
    uuid.UUID | str,
    str,
    uuid.UUID | str,
    uuid.UUID | str,
    uuid.UUID | str,
    int,
    int,
    str,
    datetime,
    int,
]

# What the models bound, and what the ledger's columns hold (integer): larger values go to the
# models, which accept them, and the ledger's own check dead-letters them (ledger.prepare).
_Positive = Annotated[int, msgspec.Meta(ge=1, lt=2**31)]
_Text = Annotated[str, msgspec.Meta(min_length=1)]

# The structs below are `gc=False`: they hold strings, ints, a date and raw bytes, never a cycle,
# so the cyclic collector need not track the two built per event.


class _Redeemed(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """`PassRedeemed`'s exact fields, typed as JSON; the funders left undecoded (`_shares_of_raw`)."""

    redemption_id: str
    pass_id: str
    site_id: str
    programme_id: str
    window_id: _Positive
    face_value_cents: _Positive
    funders: msgspec.Raw
    learning_path: str
    workshop_date: date  # "YYYY-MM-DD", a real day, as pydantic reads it
    accepted_at: str


class _Reversed(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """`RedemptionReversed`'s exact fields, typed as JSON."""

    reversal_id: str
    redemption_id: str
    pass_id: str
    site_id: str
    programme_id: str
    window_id: _Positive
    face_value_cents: _Positive
    funders: msgspec.Raw
    reason: str
    reversed_at: str


# The envelope's exact keys (schemas.envelope.Envelope), told apart by its `type`.
class _RedeemedEvent(
    msgspec.Struct, forbid_unknown_fields=True, gc=False, tag_field="type", tag="PassRedeemed"
):
    event_id: str
    schema_version: int
    occurred_at: str
    producer: _Text
    key: _Text
    payload: _Redeemed


class _ReversedEvent(
    msgspec.Struct, forbid_unknown_fields=True, gc=False, tag_field="type", tag="RedemptionReversed"
):
    event_id: str
    schema_version: int
    occurred_at: str
    producer: _Text
    key: _Text
    payload: _Reversed


_DECODER = msgspec.json.Decoder(_RedeemedEvent | _ReversedEvent)
# Hex digits to "x", "-" and NUL to themselves, any other byte to "?": canonical UUIDs joined by
# NULs translate to exactly `_UUIDS[n]` (a NUL inside one would leave a segment of another shape).
_UUID_SHAPE = bytes(
    ord("x") if chr(b) in "0123456789abcdef" else b if b in b"-\x00" else ord("?") for b in range(256)
)
_UUIDS = {n: b"\x00".join([b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"] * n) for n in (5, 6)}
# Digits to "d", a timestamp's separators to themselves, any other byte to "?". The shapes are the
# RFC 3339 timestamps with an offset that pydantic writes and reads as `datetime.fromisoformat` does:
# "YYYY-MM-DDTHH:MM:SS", up to 6 digits of fraction, "Z" or "±HH:MM".
_TIME_SHAPE = bytes(
    ord("d") if chr(b) in "0123456789" else b if b in b"-:.TZ+" else ord("?") for b in range(256)
)
_TIMES = frozenset(
    b"dddd-dd-ddTdd:dd:dd" + (b"." + b"d" * digits if digits else b"") + offset
    for digits in range(7)
    for offset in (b"Z", b"+dd:dd", b"-dd:dd")
)
_SHARES = TypeAdapter(tuple[FunderShare, ...])
_ZERO = timedelta(0)
_CACHE_LIMIT = 4096


def fast_row(raw: bytes, partition: int) -> Row | None:
    """The ledger row of a canonical PassRedeemed or RedemptionReversed message, or None (then
    the models decide)."""
    try:
        event = _DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    p = event.payload
    if type(p) is _Redeemed:
        ref, at, amount, kind, ids = p.redemption_id, p.accepted_at, p.face_value_cents, "redemption", 5
        joined = "\x00".join((event.event_id, ref, p.pass_id, p.site_id, p.programme_id))
    else:
        assert type(p) is _Reversed
        ref, at, amount, kind, ids = p.reversal_id, p.reversed_at, -p.face_value_cents, "reversal", 6
        joined = "\x00".join((event.event_id, ref, p.redemption_id, p.pass_id, p.site_id, p.programme_id))
    if event.schema_version != 1 or not (
        joined.isascii() and joined.encode().translate(_UUID_SHAPE) == _UUIDS[ids]
    ):
        return None
    occurred_at = _timestamp(event.occurred_at)
    when = _timestamp(at)
    if occurred_at is None or occurred_at.utcoffset() != _ZERO or when is None:
        return None
    funders = _shares_of_raw(bytes(p.funders))
    if funders is None:
        return None
    return (
        event.event_id,
        ref,
        kind,
        p.site_id,
        p.pass_id,
        p.programme_id,
        p.window_id,
        amount,
        funders,
        when,
        partition,
    )


def line_row(event_id: uuid.UUID, line: LedgerLine, partition: int) -> Row:
    """The row of a line the models built (an event off the hot path)."""
    return (
        event_id,
        line.ref_id,
        line.kind,
        line.site_id,
        line.pass_id,
        line.programme_id,
        line.window_id,
        line.amount_cents,
        _shares_of_models(line.funders),
        line.at,
        partition,
    )


def _timestamp(value: str) -> datetime | None:
    # ASCII first: `encode` would fail on a lone surrogate (and \\d would take other digits).
    if not value.isascii() or value.encode().translate(_TIME_SHAPE) not in _TIMES:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # no such day or time (31 February, 25:00): pydantic refuses it too
        return None


# A programme's shares repeat on each of its events: validated by the model once per spelling,
# keyed by their JSON bytes as the message has them.
# Ids as text: asyncpg encodes a str in C, a UUID through its Python `bytes` property.
_by_spelling: dict[bytes, str | None] = {}
_by_models: dict[tuple[FunderShare, ...], str] = {}
_json_by_id: dict[str, str] = {}


def shares(ids: Iterable[str]) -> dict[str, str]:
    """The JSON of the share lists of rows read since the last `forget_shares()`, by id."""
    return {i: _json_by_id[i] for i in ids}


def forget_shares() -> None:
    """Bound the caches (a stream of ever new share lists would be poison, but valid): called
    before reading a batch, so that a batch's rows always find their lists in `shares`. Refused
    spellings count too: they are remembered as well."""
    if len(_json_by_id) >= _CACHE_LIMIT or len(_by_spelling) >= _CACHE_LIMIT:
        _by_spelling.clear()
        _by_models.clear()
        _json_by_id.clear()


def _shares_of_raw(key: bytes) -> str | None:
    if key not in _by_spelling:
        try:
            # In JSON mode, as the models read an event (strictness differs between the modes).
            _by_spelling[key] = _shares_of_models(_SHARES.validate_json(key))
        except ValidationError:
            _by_spelling[key] = None
    return _by_spelling[key]


def _shares_of_models(funders: tuple[FunderShare, ...]) -> str:
    if (found := _by_models.get(funders)) is not None:
        return found
    id_ = _by_models[funders] = str(shares_id((str(f.funder_id), f.share_bp) for f in funders))
    _json_by_id[id_] = shares_json(funders)
    return id_
