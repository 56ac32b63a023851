"""The conservation laws the log must keep, checked after the fold."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from schemas.topics import Topic
from services.auditor.report import EXAMPLES, AuditReport, Check

if TYPE_CHECKING:
    from services.auditor.replay import State

Checks = dict[str, Check]
_PENDING_NOTE = "redemptions of still-open windows are counted as pending"


def conservation_checks(state: State, report: AuditReport, *, strict_notifications: bool) -> Checks:
    return {
        "redemption_in_exactly_one_statement_or_dead_letter": _redemptions_accounted(state, report),
        "one_notification_outcome_per_statement": _notifications(state, strict=strict_notifications),
        "one_notification_outcome_per_late_reversal": reversal_notifications(
            late_reversals(state), state.reversal_outcomes, strict=strict_notifications
        ),
        "funder_shares_sum_to_totals": _shares_sum(state),
        "pass_redeemed_at_most_once": _check(sorted(state.twice)),
    }


def _check(failures: list[str], note: str = "", *, pending: int = 0, fails: bool = True) -> Check:
    return Check(not (failures and fails), len(failures), failures[:EXAMPLES], note, pending)


def _redemptions_accounted(state: State, report: AuditReport) -> Check:
    refs = _redemption_refs(state)
    listed = set(refs)
    if len(listed) == len(refs) and state.accepted.keys() == listed:
        return _check([], _PENDING_NOTE)  # each accepted redemption listed once, and only those
    in_statements = Counter(refs)
    many = sorted(r for r, n in in_statements.items() if n > 1)  # set arithmetic first: 1M ids
    missing = state.accepted.keys() - in_statements.keys()
    never = sorted(in_statements.keys() - state.accepted.keys())
    dead = _dead_lettered(state) if missing else set()
    closed = set(report.windows_closed)
    failures, pending = [], 0
    for redemption_id in sorted(missing):
        window_id, partition, offset = state.accepted[redemption_id]
        if (partition, offset) in dead or redemption_id in dead:
            continue
        if window_id not in closed:
            pending += 1  # its window is still open: no statement yet, by design
        else:
            failures.append(
                f"redemption {redemption_id} (window {window_id}) is in no statement and no dead letter"
            )
    failures += [
        f"redemption {r} (window {state.accepted[r][0]}) is in {in_statements[r]} statements"
        for r in many
        if r in state.accepted
    ]
    failures += [f"redemption {r} is in a statement but was never accepted" for r in never]
    return _check(sorted(failures), _PENDING_NOTE, pending=pending)


def _redemption_refs(state: State) -> list[str]:
    """The redemptions the issued statements list, as often as they list them."""
    refs: list[str] = []
    for st in state.issued.values():
        try:
            refs += [line["ref_id"] for line in st["lines"] if line["kind"] == "redemption"]
        except (KeyError, TypeError):  # a malformed statement: its comparison reports it
            continue
    return list(map(str, refs))


def _dead_lettered(state: State) -> set[object]:
    """Positions (partition, offset) on the redemption topic, and ids quoted in the raw message."""
    found: set[object] = set()
    for dl in state.dead_letters:
        if dl.source_topic.endswith(Topic.REDEMPTIONS.value):
            found.add((dl.source_partition, dl.source_offset))
    if state.dead_letters:
        raws = " ".join(dl.raw for dl in state.dead_letters)
        found.update(r for r in state.accepted if r in raws)
    return found


def _notifications(state: State, *, strict: bool) -> Check:
    failures, missing = [], []
    for sid in sorted(state.issued):
        per_channel = state.outcomes.get(sid, Counter())
        if not per_channel:
            missing.append(f"statement {sid} has no notification outcome")
        failures += [
            f"statement {sid}: {n} outcomes on channel {ch}" for ch, n in sorted(per_channel.items()) if n > 1
        ]
    failures += [
        f"notification outcome for unknown statement {sid}"
        for sid in sorted(set(state.outcomes) - state.issued.keys())
    ]
    note = (
        f"{len(missing)} statement(s) without any outcome: sites without a notification channel get none yet"
        + ("" if strict else " (reported, not failed; --strict-notifications fails on it)")
    )
    if strict:
        failures += missing
    return _check(failures, note, pending=0 if strict else len(missing))


def late_reversals(state: State) -> list[tuple[str, str, int]]:
    """The reversals made after their redemption's window had closed (stamped with a later
    window, as the notifier judges them: `services.notifier.domain.schedule.reversal_after_close`),
    as (reversal id, redemption id, window id), sorted."""
    accepted = state.accepted
    return sorted(
        {(r, red, w) for r, red, w in state.reversals_made if red in accepted and accepted[red][0] < w}
    )


def reversal_notifications(
    late: list[tuple[str, str, int]], outcomes: list[tuple[str, str, str, str, int]], *, strict: bool
) -> Check:
    """Each late reversal is told to its site once per channel (a notification id per channel
    endpoint): one outcome per notification, naming the reversal's redemption and window, and
    none for any other reversal."""
    facts: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for reversal_id, redemption_id, window_id in late:
        facts[reversal_id].add((redemption_id, window_id))
    per_notification: Counter[tuple[str, str, str]] = Counter()
    failures: list[str] = []
    for reversal_id, notification_id, channel, redemption_id, window_id in sorted(outcomes):
        if reversal_id not in facts:
            failures.append(
                f"notification outcome for reversal {reversal_id}, not a reversal made after its window closed"
            )
        elif (redemption_id, window_id) not in facts[reversal_id]:
            failures.append(
                f"reversal {reversal_id}: an outcome names redemption {redemption_id} and window {window_id}, "
                "the log does not"
            )
        per_notification[(reversal_id, notification_id, channel)] += 1
    failures += [
        f"reversal {r}: {n} outcomes for notification {nid} on channel {ch}"
        for (r, nid, ch), n in sorted(per_notification.items())
        if n > 1
    ]
    told = {r for r, *_ in outcomes}
    missing = [
        f"reversal {r} (after its window closed) has no notification outcome"
        for r in sorted(facts.keys() - told)
    ]
    note = f"{len(missing)} late reversal(s) without any outcome" + (
        "" if strict else " (reported, not failed; --strict-notifications fails on it)"
    )
    if strict:
        failures += missing
    return _check(failures, note, pending=0 if strict else len(missing))


def _shares_sum(state: State) -> Check:
    failures = []
    window_totals: dict[int, int] = defaultdict(int)
    for sid, st in sorted(state.recomputed.items()):
        window_totals[st["window_id"]] += st["total_cents"]
        if sum(fa["amount_cents"] for fa in st["funder_amounts"]) != st["total_cents"]:
            failures.append(f"statement {sid}: funder amounts do not sum to the total")
    for sid, st in sorted(state.issued.items()):
        amounts = st.get("funder_amounts")
        if not isinstance(amounts, list) or sum(_cents(fa) for fa in amounts) != st.get("total_cents"):
            failures.append(f"issued statement {sid}: funder amounts do not sum to its total")
    funder_totals: dict[int, int] = defaultdict(int)
    for fs in state.funder_issued.values():
        funder_totals[fs.get("window_id", -1)] += _cents(fs)
    for window, total in sorted(funder_totals.items()):
        if total != window_totals.get(window, 0):
            failures.append(
                f"window {window}: funder statements sum to {total}, site statements to {window_totals.get(window, 0)}"
            )
    return _check(failures)


def _cents(d: object) -> int:
    value = d.get("amount_cents") if isinstance(d, dict) else None
    return value if type(value) is int else 0
