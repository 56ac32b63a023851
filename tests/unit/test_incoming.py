"""The hot path that reads PassRedeemed and RedemptionReversed without the pydantic models accepts
only what the models accept, with the same values; everything else is left to the models (and so,
if they reject it, to the dead-letter topic)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.envelope import Envelope
from schemas.events import parse_payload
from services.clearing import incoming
from services.clearing.domain import statements as core
from services.common.dead_letters import Incoming
from tests.unit.factories import closed, envelope, redeemed, reversed_

SITE = uuid.UUID(int=77)


def by_models(raw: bytes, partition: int = 0) -> incoming.Row | None:
    try:
        env = Envelope.from_bytes(raw)
        payload = parse_payload(env)
    except ValueError:
        return None
    if payload.TYPE not in ("PassRedeemed", "RedemptionReversed"):
        return None
    return incoming.line_row(env.event_id, core.ledger_line(payload), partition)  # type: ignore[arg-type]


def same(row: incoming.Row) -> tuple[Any, ...]:
    """A row with ids as UUIDs and the shares as data, whichever path built it."""
    return tuple(
        uuid.UUID(str(v)) if i in (0, 1, 3, 4, 5) else json.loads(incoming.shares([v])[v]) if i == 8 else v
        for i, v in enumerate(row)
    )


def canonical(kind: str = "redemption") -> dict[str, Any]:
    r = redeemed(7, SITE)
    event = r if kind == "redemption" else reversed_(r, 7, window=2)
    return orjson.loads(envelope(event, 7).to_bytes())  # type: ignore[no-any-return]


KINDS = ("redemption", "reversal")


def test_a_canonical_redemption_reads_as_the_models_read_it() -> None:
    for n in range(1, 30):
        raw = envelope(redeemed(n, SITE, window=1 + n % 3, cents=500 + n), n).to_bytes()
        fast = incoming.fast_row(raw, 3)
        assert fast is not None
        assert same(fast) == same(by_models(raw, 3))  # type: ignore[arg-type]


def test_a_canonical_reversal_reads_as_the_models_read_it() -> None:
    for n in range(1, 30):
        r = redeemed(n, SITE, cents=500 + n)
        raw = envelope(reversed_(r, n, window=1 + n % 3), n).to_bytes()
        fast = incoming.fast_row(raw, 2)
        assert fast is not None and fast[2] == "reversal" and fast[7] == -(500 + n)
        assert same(fast) == same(by_models(raw, 2))  # type: ignore[arg-type]


def test_other_events_are_left_to_the_models() -> None:
    assert incoming.fast_row(envelope(closed(1, 0), 1).to_bytes(), 0) is None


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("envelope", "event_id", "not-a-uuid"),
        ("envelope", "occurred_at", "2026-11-01T00:00:00"),  # naive
        ("envelope", "occurred_at", "2026-11-01T01:00:00+01:00"),  # not UTC
        ("envelope", "producer", ""),
        ("envelope", "surplus", 1),
        ("payload", "face_value_cents", "1000"),
        ("payload", "face_value_cents", 0),
        ("payload", "window_id", 0),
        ("payload", "site_id", None),
        ("payload", "workshop_date", "2026-02-31"),
        ("payload", "accepted_at", "yesterday"),
        ("payload", "accepted_at", "2026-11-01T25:00:00Z"),
        ("payload", "funders", [{"funder_id": "x", "share_bp": 5000}]),
        ("payload", "funders", [{"funder_id": str(uuid.UUID(int=1)), "share_bp": 10_001}]),
        ("payload", "surplus", "x"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_a_poison_event_is_not_taken_by_the_hot_path(
    kind: str, where: str, field: str, value: object
) -> None:
    event = canonical(kind)
    _set(event, kind, where, field, value)
    raw = orjson.dumps(event)
    assert incoming.fast_row(raw, 0) is None
    assert by_models(raw) is None  # and the models reject it: it goes to the dead letters


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("payload", "site_id", str(SITE).upper()),
        ("envelope", "schema_version", True),
        ("payload", "window_id", "1"),
        ("payload", "accepted_at", "2026-11-01T00:00:00.1234567Z"),  # pydantic rounds to 6 digits
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_a_valid_but_unusual_spelling_is_left_to_the_models(
    kind: str, where: str, field: str, value: object
) -> None:
    event = canonical(kind)
    _set(event, kind, where, field, value)
    raw = orjson.dumps(event)
    assert incoming.fast_row(raw, 0) is None
    assert by_models(raw) is not None


def _set(event: dict[str, Any], kind: str, where: str, field: str, value: object) -> None:
    """Set a field of a redemption, or the same field of a reversal (its time is `reversed_at`);
    a field the reversal does not have is added (a surplus key)."""
    if kind == "reversal" and field in ("accepted_at", "workshop_date"):
        field = "reversed_at" if field == "accepted_at" else "surplus"
    (event if where == "envelope" else event["payload"])[field] = value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reversal_id", "not-a-uuid"),
        ("redemption_id", str(uuid.UUID(int=0xABC)).upper()),
        ("reason", None),
        ("reversed_at", "2026-11-02T00:01:00"),
        ("accepted_at", "2026-11-02T00:01:00Z"),  # a redemption's field on a reversal
    ],
)
def test_a_reversal_only_its_own_fields_canonical_is_taken(field: str, value: object) -> None:
    event = canonical("reversal")
    event["payload"][field] = value
    assert incoming.fast_row(orjson.dumps(event), 0) is None


def test_a_type_that_does_not_match_its_payload_is_not_taken() -> None:
    event = canonical("reversal")
    event["type"] = "PassRedeemed"
    raw = orjson.dumps(event)
    assert incoming.fast_row(raw, 0) is None
    assert by_models(raw) is None


def test_garbage_is_not_taken() -> None:
    for raw in (b"", b"not json", b"[]", b"null", b'{"type": "PassRedeemed"}', b"\xff\xfe"):
        assert incoming.fast_row(raw, 0) is None


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.sampled_from(
        [
            "",
            "x",
            "PassRedeemed",
            str(uuid.UUID(int=5)),
            str(uuid.UUID(int=5)).upper(),
            "2026-11-02",
            "2026-11-01T00:00:00Z",
            "2026-11-01T00:00:00.5+02:00",
            "2026-11-01T00:00:00",
            "20261101T000000Z",
            "2026-11-01 00:00:00Z",
        ]
    ),
    st.lists(
        st.fixed_dictionaries(
            {"funder_id": st.just(str(uuid.UUID(int=9))), "share_bp": st.integers(-1, 10_001)}
        ),
        max_size=3,
    ),
    st.text(max_size=5),
)


@given(
    kind=st.sampled_from(KINDS),
    where=st.sampled_from(["envelope", "payload"]),
    field=st.sampled_from(sorted({*canonical(), *canonical()["payload"], *canonical("reversal")["payload"]})),
    value=VALUES,
)
def test_whatever_the_hot_path_takes_the_models_take_with_the_same_values(
    kind: str, where: str, field: str, value: object
) -> None:
    event = canonical(kind)
    (event if where == "envelope" else event["payload"])[field] = value
    raw = orjson.dumps(event)
    fast = incoming.fast_row(raw, 1)
    if fast is not None:
        models = by_models(raw, 1)
        assert models is not None
        assert same(fast) == same(models)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (redeemed(1, SITE, window=2**31), "window_id 2147483648 does not fit the ledger"),
        (redeemed(2, SITE, cents=2**63), "face_value_cents 9223372036854775808 does not fit the ledger"),
        (reversed_(redeemed(3, SITE, cents=2**63), 3, window=1), "face_value_cents 9223372036854775808"),
    ],
)
def test_what_the_models_accept_but_the_ledger_cannot_hold_is_dead_lettered_before_the_database(
    event: Any, reason: str
) -> None:
    from services.clearing.ledger import Unreadable, prepare

    fine = Incoming("t", 0, 0, envelope(redeemed(9, SITE), 9).to_bytes())
    refused = Incoming("t", 0, 1, envelope(event, 1).to_bytes())
    prepared = prepare([fine, refused, fine])
    assert [type(s).__name__ for s in prepared.steps] == ["Unreadable", "list"]
    assert isinstance(prepared.steps[0], Unreadable) and reason in prepared.steps[0].reason
    assert len(prepared.steps[1]) == 2  # type: ignore[arg-type]
    assert prepared.readable == 2 and prepared.messages == [fine, refused, fine]
