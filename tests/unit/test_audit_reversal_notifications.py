"""The auditor's conservation check on notification outcomes, with the notifier's reversal
outcomes in the log: they are read, are no statement's outcome, and break nothing."""

import uuid

from schemas.events import NotificationDelivered, ReversalNotificationDelivered, ReversalNotificationFailed
from schemas.topics import Topic
from services.auditor.replay import LogRecord, replay
from services.clearing.domain import statements as core
from tests.unit.factories import closed, envelope, redeemed, reversed_

SITE = uuid.UUID(int=601)


def log_with_a_late_reversal(*, statement_outcomes: int = 1):  # type: ignore[no-untyped-def]
    r1, r2 = redeemed(1, SITE, window=1), redeemed(2, SITE, window=1)
    late = reversed_(r1, 1, window=2)  # made after window 1 closed: a negative line in window 2
    events = [r1, r2, closed(1, 0, partitions=1), late, closed(2, 0, partitions=1)]
    st1 = core.statement(SITE, closed(1, 0, 1), [core.ledger_line(r1), core.ledger_line(r2)])
    st2 = core.statement(SITE, closed(2, 0, 1), [core.ledger_line(late)])
    issued = [st1, st2, *core.funder_statements(1, [st1]), *core.funder_statements(2, [st2])]
    outcomes = [
        NotificationDelivered(
            notification_id=f"msg_{st.statement_id.hex}", statement_id=st.statement_id, site_id=SITE,
            channel="webhook", attempts=1,
        )
        for st in (st1, st2)
        for _ in range(statement_outcomes)
    ]  # fmt: skip
    common = {
        "reversal_id": late.reversal_id,
        "redemption_id": r1.redemption_id,
        "site_id": SITE,
        "window_id": 2,
    }
    outcomes += [
        ReversalNotificationDelivered(
            notification_id="msg_rv_webhook", channel="webhook", attempts=1, **common
        ),
        ReversalNotificationFailed(
            notification_id="msg_rv_email", channel="email", attempts=7, reason="x", **common
        ),
    ]
    records = [LogRecord(Topic.REDEMPTIONS, 0, i, envelope(e, i).to_bytes()) for i, e in enumerate(events)]
    records += [
        LogRecord(Topic.CLEARING, 0, i, envelope(s, 1000 + i).to_bytes()) for i, s in enumerate(issued)
    ]
    records += [
        LogRecord(Topic.NOTIFICATIONS, 0, i, envelope(o, 2000 + i).to_bytes()) for i, o in enumerate(outcomes)
    ]
    return records


def test_reversal_outcomes_are_no_statement_s_and_the_strict_check_passes() -> None:
    report = replay(log_with_a_late_reversal(), strict_notifications=True)
    assert report.ok, report.as_json()
    assert report.unreadable == 0 and report.reversals == 1
    assert report.checks["one_notification_outcome_per_statement"].ok


def test_the_check_still_catches_a_statement_notified_twice_on_one_channel() -> None:
    report = replay(log_with_a_late_reversal(statement_outcomes=2), strict_notifications=True)
    assert not report.checks["one_notification_outcome_per_statement"].ok
