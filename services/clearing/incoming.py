"""Redemption-topic messages as rows for the ledger's staging table.

The hot path: a PassRedeemed envelope in the canonical form our producers write (pydantic's own
JSON: lower-case hyphenated UUIDs, RFC 3339 timestamps with an offset, exact keys) is read with
orjson and checked field by field, ~10× cheaper than building the pydantic models. Anything else —
another type, another spelling, a malformed message — gets None here and goes through the
schema's models, which stay the authority: what they reject is dead-lettered with their reason.
So this path accepts only what the models accept, with the same values (tests/unit/test_incoming.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.envelope import Envelope
from schemas.events import FunderShare, PassRedeemed
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

_ENVELOPE_KEYS = frozenset(Envelope.model_fields)
_REDEEMED_KEYS = frozenset(PassRedeemed.model_fields)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})\Z")
_REDEEMED_IDS = ("redemption_id", "pass_id", "site_id", "programme_id")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_SHARES = TypeAdapter(tuple[FunderShare, ...])
_ZERO = timedelta(0)
_CACHE_LIMIT = 4096


def redeemed_row(raw: bytes, partition: int) -> Row | None:
    """The ledger row of a canonical PassRedeemed message, or None (then the models decide)."""
    try:
        envelope = orjson.loads(raw)
        if type(envelope) is not dict or envelope.keys() != _ENVELOPE_KEYS:
            return None
        payload = envelope["payload"]
        if not (
            envelope["type"] == "PassRedeemed"
            and _is_int(envelope["schema_version"], 1)
            and envelope["schema_version"] == 1
            and _is_text(envelope["producer"])
            and _is_text(envelope["key"])
            and _is_uuid(envelope["event_id"])
            and type(payload) is dict
            and payload.keys() == _REDEEMED_KEYS
        ):
            return None
        occurred_at = _timestamp(envelope["occurred_at"])
        accepted_at = _timestamp(payload["accepted_at"])
        funders = _shares_of_json(payload["funders"])
        if (
            occurred_at is None
            or occurred_at.utcoffset() != _ZERO
            or accepted_at is None
            or funders is None
            or not _is_date(payload["workshop_date"])
            or type(payload["learning_path"]) is not str
            or not _is_int(payload["window_id"], 1)
            or not _is_int(payload["face_value_cents"], 1)
            or not all(_is_uuid(payload[k]) for k in _REDEEMED_IDS)
        ):
            return None
    except (ValueError, TypeError):
        return None
    return (
        envelope["event_id"],
        payload["redemption_id"],
        "redemption",
        payload["site_id"],
        payload["pass_id"],
        payload["programme_id"],
        payload["window_id"],
        payload["face_value_cents"],
        funders,
        accepted_at,
        partition,
    )


def line_row(event_id: uuid.UUID, line: LedgerLine, partition: int) -> Row:
    """The row of a line the models built (a reversal, or a redemption off the hot path)."""
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


def _is_uuid(value: object) -> bool:
    return type(value) is str and _UUID.match(value) is not None


def _is_text(value: object) -> bool:
    return type(value) is str and value != ""


def _is_int(value: object, minimum: int) -> bool:
    # `type(...) is int`: a JSON true is not a number here, even if Python says True == 1.
    return type(value) is int and minimum <= value < 2**31


def _is_date(value: object) -> bool:
    if type(value) is not str or _DATE.match(value) is None:
        return False
    date.fromisoformat(value)  # a ValueError (31 February) is a None for the caller
    return True


def _timestamp(value: object) -> datetime | None:
    if type(value) is not str or _TIMESTAMP.match(value) is None:
        return None
    return datetime.fromisoformat(value)


# A programme's shares repeat on each of its events: validated by the model once per spelling,
# keyed by their JSON as orjson writes back what it read (1 µs; a tuple of items took 5).
# Ids as text: asyncpg encodes a str in C, a UUID through its Python `bytes` property.
_by_spelling: dict[bytes, str | None] = {}
_by_models: dict[tuple[FunderShare, ...], str] = {}
_json_by_id: dict[str, str] = {}


def shares(ids: Iterable[str]) -> dict[str, str]:
    """The JSON of the share lists of rows read since the last `forget_shares()`, by id."""
    return {i: _json_by_id[i] for i in ids}


def forget_shares() -> None:
    """Bound the caches (a stream of ever new share lists would be poison, but valid): called
    before reading a batch, so that a batch's rows always find their lists in `shares`."""
    if len(_json_by_id) >= _CACHE_LIMIT:
        _by_spelling.clear()
        _by_models.clear()
        _json_by_id.clear()


def _shares_of_json(funders: object) -> str | None:
    if type(funders) is not list:
        return None
    key = orjson.dumps(funders)
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
