"""The core's statements are the bytes the first implementation gave (tests/unit/reference_statements.py):
payload, JSON body, digest, funder parts, for any lines."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import Envelope
from schemas.events import FunderShare, WindowClosed
from services.clearing.domain import statements as core
from services.clearing.ledger import encode_envelope
from tests.unit import reference_statements as reference

T0 = datetime(2026, 11, 1, tzinfo=UTC)
uuids = st.uuids()


@st.composite
def shares(draw: st.DrawFn) -> tuple[FunderShare, ...]:
    funders = draw(st.lists(uuids, min_size=1, max_size=6, unique=True))
    cuts = sorted(
        draw(st.lists(st.integers(0, 10_000), min_size=len(funders) - 1, max_size=len(funders) - 1))
    )
    bps = [b - a for a, b in zip([0, *cuts], [*cuts, 10_000], strict=True)]
    return tuple(FunderShare(funder_id=f, share_bp=bp) for f, bp in zip(funders, bps, strict=True))


@st.composite
def window_lines(draw: st.DrawFn, kinds: st.SearchStrategy[str] | None = None) -> list[core.LedgerLine]:
    sites = draw(st.lists(uuids, min_size=1, max_size=4, unique=True))
    programmes = draw(st.lists(st.tuples(uuids, shares()), min_size=1, max_size=3, unique_by=lambda p: p[0]))
    moments = draw(st.lists(st.integers(0, 10**9), min_size=1, max_size=5))  # µs: ties and sub-seconds
    lines = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(("redemption", "reversal")) if kinds is None else kinds)
        cents = draw(st.integers(1, 10**7))
        programme, funders = draw(st.sampled_from(programmes))
        lines.append(
            core.LedgerLine(
                kind,
                draw(uuids),
                draw(st.sampled_from(sites)),
                draw(uuids),
                programme,
                1,
                -cents if kind == "reversal" else cents,
                funders,
                T0 + timedelta(microseconds=draw(st.sampled_from(moments))),
            )
        )
    return lines


def window(closed_us: int = 0) -> WindowClosed:
    return WindowClosed(
        window_id=1,
        partition=0,
        partition_count=1,
        opened_at=T0 - timedelta(days=30, microseconds=closed_us),
        closed_at=T0 + timedelta(days=1, microseconds=closed_us),
        next_window_id=2,
    )


def _same(lines: list[core.LedgerLine], marker: WindowClosed) -> None:
    issued = core.issue_all(core.Window(marker), [core.line_of(line) for line in lines])
    sites = sorted({line.site_id for line in lines}, key=str)
    assert [i.site_id for i in issued] == sites
    for site, mine in zip(sites, issued, strict=True):
        own = [line for line in lines if line.site_id == site]
        theirs = reference.statement(site, marker, own)
        assert mine.body == theirs.model_dump_json().encode()
        assert mine.payload == theirs.model_dump(mode="json")
        assert mine.digest == theirs.digest
        assert (mine.statement_id, mine.total_cents) == (theirs.statement_id, theirs.total_cents)
        assert mine.parts == reference.funder_parts(reference.ordered(own))
        assert core.statement(site, marker, own) == theirs


@settings(max_examples=150, deadline=None)
@given(window_lines(), st.integers(0, 999_999))
def test_statements_are_the_first_implementation_s_bytes(lines: list[core.LedgerLine], us: int) -> None:
    _same(lines, window(us))


@settings(max_examples=60, deadline=None)
@given(window_lines(kinds=st.text(max_size=8)))
def test_any_text_digests_as_json_dumps_did(lines: list[core.LedgerLine]) -> None:
    """Non-ASCII, quotes, control characters, surrogates: the digest is still json.dumps's."""
    _same(lines, window())


def test_the_digest_of_a_non_ascii_kind_takes_json_s_escapes() -> None:
    site = uuid.UUID(int=1)
    line = core.LedgerLine(
        "réduction",
        uuid.UUID(int=2),
        site,
        uuid.UUID(int=3),
        uuid.UUID(int=4),
        1,
        5,
        (FunderShare(funder_id=uuid.UUID(int=5), share_bp=10_000),),
        T0,
    )
    _same([line], window())


@settings(max_examples=40, deadline=None)
@given(window_lines(kinds=st.sampled_from(("redemption", "reversal")) | st.text(max_size=4)))
def test_the_outbox_body_is_the_envelope_the_model_gave(lines: list[core.LedgerLine]) -> None:
    marker = window()
    for mine in core.issue_all(core.Window(marker), [core.line_of(line) for line in lines]):
        theirs = reference.statement(
            mine.site_id, marker, [line for line in lines if line.site_id == mine.site_id]
        )
        head = Envelope(
            event_id=uuid.UUID(int=9),
            type=theirs.TYPE,
            schema_version=theirs.VERSION,
            occurred_at=T0 + timedelta(microseconds=123_456),
            producer="clearing",
            key=str(mine.site_id),
            payload={},
        )
        assert head.model_copy(update={"payload": mine.payload}).to_bytes() == reference.envelope_bytes(
            head, theirs
        )
        assert encode_envelope(head, mine.payload) == reference.envelope_bytes(head, theirs)


def _u(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


_P1 = (FunderShare(funder_id=_u(11), share_bp=6667), FunderShare(funder_id=_u(12), share_bp=3333))
_P2 = (FunderShare(funder_id=_u(12), share_bp=5000), FunderShare(funder_id=_u(13), share_bp=5000))
_KNOWN = [
    core.LedgerLine("redemption", _u(101), _u(1), _u(201), _u(21), 1, 1000, _P1, T0 + timedelta(seconds=3)),
    core.LedgerLine("redemption", _u(102), _u(1), _u(202), _u(22), 1, 777, _P2, T0 + timedelta(seconds=1)),
    core.LedgerLine("reversal", _u(103), _u(1), _u(201), _u(21), 1, -1000, _P1, T0 + timedelta(seconds=3)),
    core.LedgerLine(
        "redemption", _u(104), _u(1), _u(203), _u(21), 1, 1001, _P1, T0 + timedelta(microseconds=500)
    ),
]
_KNOWN_MARKER = WindowClosed(
    window_id=1,
    partition=0,
    partition_count=1,
    opened_at=T0 - timedelta(days=30),
    closed_at=T0 + timedelta(days=1, microseconds=250),
    next_window_id=2,
)


def test_a_known_statement_keeps_its_bytes_and_digest() -> None:
    """Pinned, not compared with another implementation: these bytes were issued (by the core as
    first written), so any change to the lines' order, the split or the JSON shows here. Two
    programmes, a reversal, a tie in time broken by ref id, a sub-second period end."""
    (issued,) = core.issue_all(core.Window(_KNOWN_MARKER), [core.line_of(line) for line in _KNOWN])
    assert issued.body == (
        b'{"statement_id":"e11696c9-83bd-552d-aa0b-be67b1bcdc85","window_id":1,'
        b'"site_id":"00000000-0000-0000-0000-000000000001","period_start":"2026-10-02T00:00:00Z",'
        b'"period_end":"2026-11-02T00:00:00.000250Z","redemptions":3,"reversals":1,"total_cents":1778,'
        b'"funder_amounts":[{"funder_id":"00000000-0000-0000-0000-00000000000b","amount_cents":667},'
        b'{"funder_id":"00000000-0000-0000-0000-00000000000c","amount_cents":723},'
        b'{"funder_id":"00000000-0000-0000-0000-00000000000d","amount_cents":388}],"lines":['
        b'{"kind":"redemption","ref_id":"00000000-0000-0000-0000-000000000068",'
        b'"pass_id":"00000000-0000-0000-0000-0000000000cb","programme_id":"00000000-0000-0000-0000-000000000015","amount_cents":1001},'
        b'{"kind":"redemption","ref_id":"00000000-0000-0000-0000-000000000066",'
        b'"pass_id":"00000000-0000-0000-0000-0000000000ca","programme_id":"00000000-0000-0000-0000-000000000016","amount_cents":777},'
        b'{"kind":"redemption","ref_id":"00000000-0000-0000-0000-000000000065",'
        b'"pass_id":"00000000-0000-0000-0000-0000000000c9","programme_id":"00000000-0000-0000-0000-000000000015","amount_cents":1000},'
        b'{"kind":"reversal","ref_id":"00000000-0000-0000-0000-000000000067",'
        b'"pass_id":"00000000-0000-0000-0000-0000000000c9","programme_id":"00000000-0000-0000-0000-000000000015","amount_cents":-1000}],'
        b'"digest":"7f08725fb40d8550945345150a249fab18b34ba497cbebb9797e46a020814c1c",'
        b'"expected_payout_date":"2026-12-02"}'
    )
    assert issued.digest == "7f08725fb40d8550945345150a249fab18b34ba497cbebb9797e46a020814c1c"
    assert [(p.programme_id, p.funder_id, p.amount_cents) for p in issued.parts] == [
        (_u(21), _u(11), 667),
        (_u(21), _u(12), 334),
        (_u(22), _u(12), 389),
        (_u(22), _u(13), 388),
    ]
    assert issued.payload == orjson.loads(issued.body)


def test_a_known_one_programme_statement_keeps_its_bytes_and_digest() -> None:
    lines = [line for line in _KNOWN if line.programme_id == _u(21)]
    lines.append(core.LedgerLine("redemption", _u(105), _u(1), _u(204), _u(21), 1, 333, _P1, T0))
    (issued,) = core.issue_all(core.Window(_KNOWN_MARKER), [core.line_of(line) for line in lines])
    assert hashlib.sha256(issued.body).hexdigest() == (
        "1e0212194fac8a8c89c098b0e8d833dd0fdf12415f0f6ce63047445cab9e4c28"
    )
    assert issued.digest == "427e3d43b4f383e9dad61603987b5f43195ad2bf05d993e57166d0244d0984fa"
    assert [(p.funder_id, p.amount_cents) for p in issued.parts] == [(_u(11), 889), (_u(12), 445)]
