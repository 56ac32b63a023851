"""The auditor's conservation check on notification outcomes, with the notifier's reversal
outcomes in the log: they are read, are no statement's outcome, and break nothing."""

import uuid

from schemas.events import NotificationDelivered, ReversalNotificationDelivered, ReversalNotificationFailed
from schemas.topics import Topic
from services.auditor.replay import LogRecord, replay
from services.clearing.domain import statements as core
from tests.unit.factories import closed, envelope, redeemed, reversed_, uid

SITE = uuid.UUID(int=601)


def log_with_a_late_reversal(  # type: ignore[no-untyped-def]
    *, statement_outcomes: int = 1, reversal_window: int = 2, reversal_outcomes=None
):
    """Two redemptions in window 1, the first reversed in `reversal_window` (2: after window 1
    closed, a negative line in window 2), the statements, their outcomes, and the notifier's
    outcomes for the reversal: `reversal_outcomes(common)` (default: webhook delivered, e-mail failed)."""
    r1, r2 = redeemed(1, SITE, window=1), redeemed(2, SITE, window=1)
    late = reversed_(r1, 1, window=reversal_window)
    if reversal_window == 1:  # within its window: it nets out in window 1's statement
        events = [r1, r2, late, closed(1, 0, partitions=1), closed(2, 0, partitions=1)]
        st1 = core.statement(SITE, closed(1, 0, 1), [core.ledger_line(e) for e in (r1, r2, late)])
        statements = [st1]
    else:
        events = [r1, r2, closed(1, 0, partitions=1), late, closed(2, 0, partitions=1)]
        st1 = core.statement(SITE, closed(1, 0, 1), [core.ledger_line(r1), core.ledger_line(r2)])
        statements = [st1, core.statement(SITE, closed(2, 0, 1), [core.ledger_line(late)])]
    issued = [*statements, *(fs for st in statements for fs in core.funder_statements(st.window_id, [st]))]
    outcomes: list[object] = [
        NotificationDelivered(
            notification_id=f"msg_{st.statement_id.hex}", statement_id=st.statement_id, site_id=SITE,
            channel="webhook", attempts=1,
        )
        for st in statements
        for _ in range(statement_outcomes)
    ]  # fmt: skip
    common = {
        "reversal_id": late.reversal_id,
        "redemption_id": r1.redemption_id,
        "site_id": SITE,
        "window_id": reversal_window,
    }
    if reversal_outcomes is None:
        outcomes += [
            ReversalNotificationDelivered(
                notification_id="msg_rv_webhook", channel="webhook", attempts=1, **common
            ),
            ReversalNotificationFailed(
                notification_id="msg_rv_email", channel="email", attempts=7, reason="x", **common
            ),
        ]
    else:
        outcomes += reversal_outcomes(common)
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


LATE = "one_notification_outcome_per_late_reversal"


def delivered(common, notification_id="msg_rv_webhook", **changes):  # type: ignore[no-untyped-def]
    return ReversalNotificationDelivered(
        notification_id=notification_id, channel="webhook", attempts=1, **{**common, **changes}
    )


def test_a_late_reversal_told_once_per_channel_keeps_the_law() -> None:
    report = replay(log_with_a_late_reversal(), strict_notifications=True)
    check = report.checks[LATE]
    assert check.ok and check.count == 0 and check.pending == 0, report.as_json()


def test_a_late_reversal_told_twice_on_one_channel_breaks_it() -> None:
    log = log_with_a_late_reversal(reversal_outcomes=lambda c: [delivered(c), delivered(c)])
    report = replay(log)
    check = report.checks[LATE]
    assert not report.ok and not check.ok
    assert check.examples == [
        f"reversal {uid(50_001)}: 2 outcomes for notification msg_rv_webhook on channel webhook"
    ]


def test_a_late_reversal_without_outcome_is_pending_or_broken_when_strict() -> None:
    log = log_with_a_late_reversal(reversal_outcomes=lambda c: [])
    lenient = replay(log).checks[LATE]
    assert lenient.ok and lenient.pending == 1
    strict = replay(log, strict_notifications=True).checks[LATE]
    assert not strict.ok and "has no notification outcome" in strict.examples[0]


def test_an_outcome_for_a_reversal_within_its_window_breaks_it() -> None:
    """Nothing is owed to the site: the reversal nets out in the statement it was never out of."""
    report = replay(log_with_a_late_reversal(reversal_window=1))
    assert report.reversals == 1 and report.checks["one_notification_outcome_per_statement"].ok
    check = report.checks[LATE]
    assert not check.ok and "not a reversal made after its window closed" in check.examples[0]
    assert replay(log_with_a_late_reversal(reversal_window=1, reversal_outcomes=lambda c: [])).ok


def test_an_outcome_naming_another_redemption_or_window_breaks_it() -> None:
    for change in ({"window_id": 3}, {"redemption_id": uid(2)}):
        log = log_with_a_late_reversal(reversal_outcomes=lambda c, ch=change: [delivered(c, **ch)])
        check = replay(log).checks[LATE]
        assert not check.ok and "the log does not" in check.examples[0], change
