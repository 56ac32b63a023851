"""The hot path that reads PassRedeemed without the pydantic models accepts only what the models
accept, with the same values; everything else is left to the models (and so, if they reject it,
to the dead-letter topic)."""

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
    if payload.TYPE != "PassRedeemed":
        return None
    return incoming.line_row(env.event_id, core.ledger_line(payload), partition)  # type: ignore[arg-type]


def same(row: incoming.Row) -> tuple[Any, ...]:
    """A row with ids as UUIDs and the shares as data, whichever path built it."""
    return tuple(
        uuid.UUID(str(v)) if i in (0, 1, 3, 4, 5) else json.loads(incoming.shares([v])[v]) if i == 8 else v
        for i, v in enumerate(row)
    )


def canonical() -> dict[str, Any]:
    return orjson.loads(envelope(redeemed(7, SITE), 7).to_bytes())  # type: ignore[no-any-return]


def test_a_canonical_redemption_reads_as_the_models_read_it() -> None:
    for n in range(1, 30):
        raw = envelope(redeemed(n, SITE, window=1 + n % 3, cents=500 + n), n).to_bytes()
        fast = incoming.redeemed_row(raw, 3)
        assert fast is not None
        assert same(fast) == same(by_models(raw, 3))  # type: ignore[arg-type]


def test_other_events_are_left_to_the_models() -> None:
    r = redeemed(1, SITE)
    for payload in (reversed_(r, 1, window=1), closed(1, 0)):
        assert incoming.redeemed_row(envelope(payload, 1).to_bytes(), 0) is None


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
        ("payload", "funders", [{"funder_id": "x", "share_bp": 5000}]),
        ("payload", "funders", [{"funder_id": str(uuid.UUID(int=1)), "share_bp": 10_001}]),
        ("payload", "surplus", "x"),
    ],
)
def test_a_poison_redemption_is_not_taken_by_the_hot_path(where: str, field: str, value: object) -> None:
    event = canonical()
    (event if where == "envelope" else event["payload"])[field] = value
    raw = orjson.dumps(event)
    assert incoming.redeemed_row(raw, 0) is None
    assert by_models(raw) is None  # and the models reject it: it goes to the dead letters


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("payload", "site_id", str(SITE).upper()),
        ("envelope", "schema_version", True),
        ("payload", "window_id", "1"),
    ],
)
def test_a_valid_but_unusual_spelling_is_left_to_the_models(where: str, field: str, value: object) -> None:
    event = canonical()
    (event if where == "envelope" else event["payload"])[field] = value
    raw = orjson.dumps(event)
    assert incoming.redeemed_row(raw, 0) is None
    assert by_models(raw) is not None


def test_garbage_is_not_taken() -> None:
    for raw in (b"", b"not json", b"[]", b"null", b'{"type": "PassRedeemed"}', b"\xff\xfe"):
        assert incoming.redeemed_row(raw, 0) is None


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
    where=st.sampled_from(["envelope", "payload"]),
    field=st.sampled_from(sorted({*canonical(), *canonical()["payload"]})),
    value=VALUES,
)
def test_whatever_the_hot_path_takes_the_models_take_with_the_same_values(
    where: str, field: str, value: object
) -> None:
    event = canonical()
    (event if where == "envelope" else event["payload"])[field] = value
    raw = orjson.dumps(event)
    fast = incoming.redeemed_row(raw, 1)
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
