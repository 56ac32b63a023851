"""The replay from Kafka on every core: one process per group of redemption partitions.

A site's ledger lives in one partition and a statement is one site's, so each process folds its
partitions with the same fold as the sequential replay, reads the statements issued for its own
sites (and the dead letters), compares them and checks the conservation laws over its share of
the log. Clearing keys its statements by site id on as many partitions, with the same partitioner,
so a site's statements sit on the clearing partition numbered as its redemption partition: each
process reads those clearing partitions (the clearing topic is read once in all) and hands back
whatever there is not a statement of its own sites (funder statements, a statement of a foreign
site). This process folds the other topics meanwhile (reference data, notification outcomes,
clearing partitions no process reads), then what the processes handed back, and checks what
spans them: the calls for funds, the window totals, one outcome per statement. A statement found
by a process that does not hold its site's ledger sends the replay down the sequential path.

The result must be the sequential replay's, byte for byte. The shares are provably independent
only when no site, event id, pass id or redemption id appears in two shares, every marker sits
with the partitions it closes, no redemption-type event sits outside the redemption topic, and
every share finds everything in order. That is what this module checks; when any of it fails,
a difference or a broken law included, `replay_kafka` replays the whole log again in one
process, whose report is the reference (exact, just slower). A clean log takes the fast path.

The ids are compared as their 64-bit `hash()` (the processes are forked, so they share the hash
secret): equal hashes are taken as "may be the same id" and send the replay down the sequential
path, so a collision costs time, never a wrong report."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import threading
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from multiprocessing.connection import Connection, wait
from operator import attrgetter, itemgetter
from types import SimpleNamespace
from typing import Any

from schemas.events import WindowClosed
from schemas.topics import Topic
from services.auditor import checks as laws
from services.auditor import fastpath as fast
from services.auditor.kafka_log import KafkaLog
from services.auditor.replay import (
    DbStatements,
    State,
    _compare_all,
    closed_windows,
    fold,
    read_one,
    recomputed_funder_statements,
    replay,
)
from services.auditor.report import AuditReport, Check

JsonDict = dict[str, Any]
Progress = Callable[[int], None]
_NOTE = "redemptions of still-open windows are counted as pending"


def replay_kafka(
    log: KafkaLog,
    *,
    db: DbStatements | None = None,
    strict_notifications: bool = False,
    processes: int | None = None,
    progress: Progress | None = None,
) -> AuditReport:
    """The replay of `log`: in parallel when the shares are independent and clean, else in one
    process (the reference). Same report either way."""
    return replay_kafka_with_mode(
        log, db=db, strict_notifications=strict_notifications, processes=processes, progress=progress
    )[0]


def replay_kafka_with_mode(
    log: KafkaLog,
    *,
    db: DbStatements | None = None,
    strict_notifications: bool = False,
    processes: int | None = None,
    progress: Progress | None = None,
) -> tuple[AuditReport, str]:
    groups = _groups(log.partitions(Topic.REDEMPTIONS), processes or os.cpu_count() or 1)
    if len(groups) > 1 and "fork" in mp.get_all_start_methods():
        report = _parallel(log, groups, db, strict_notifications, progress)
        if report is not None:
            return report, "parallel"
    records = log.records()
    if progress is not None:
        records = _counted(records, progress)
    return replay(records, db=db, strict_notifications=strict_notifications), "sequential"


def _groups(partitions: list[tuple[str, int]], processes: int) -> list[list[tuple[str, int]]]:
    groups: list[list[tuple[str, int]]] = [[] for _ in range(min(processes, len(partitions)))]
    for i, tp in enumerate(partitions):
        groups[i % len(groups)].append(tp)
    return groups


def _counted(records: Iterable[Any], progress: Progress) -> Iterator[Any]:
    n = 0
    for n, record in enumerate(records, 1):
        yield record
        if n % 10_000 == 0:
            progress(10_000)
    progress(n % 10_000)


@dataclass
class Verdict:
    """The share's comparison and laws, judged with the windows closed on its own partitions."""

    clean: bool
    pending: int = 0
    why: str = ""


@dataclass
class Share:
    """What a redemption-partition process tells the main one after its fold."""

    sites: set[str] = field(default_factory=set)
    markers: list[WindowClosed] = field(default_factory=list)
    events: int = 0
    redemptions: int = 0
    reversals: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    recomputed: dict[str, JsonDict] = field(default_factory=dict)  # without their lines
    issued: set[str] = field(default_factory=set)
    late: list[tuple[str, str, int]] = field(default_factory=list)  # reversals after their window closed
    anomaly: str = ""
    closed: list[int] = field(default_factory=list)
    verdict: Verdict | None = None
    foreign: list[Any] = field(default_factory=list)  # clearing records for the main process, in order


# --- the redemption-partition processes ----------------------------------------------------


def _share_main(
    log: KafkaLog, parts: list[tuple[str, int]], conn: Connection, db: DbStatements | None
) -> None:
    # The fold turns the cyclic collector off while it runs (see `replay.fold`); what follows it
    # (reading the statements, comparing, hashing) allocates millions more objects, and each
    # collection would rescan everything the fold built. This process exits right after.
    gc.disable()
    sending: list[threading.Thread] = []
    try:
        state, share = _share_fold(log, parts, conn, sending)
        # Judged now, with the windows closed on every partition of this share; the main
        # process takes the verdict only if those are the windows closed on every partition.
        share.closed = _closed_here(share.markers, {p for _, p in parts})
        share.verdict = _verdict(state, share.closed, db)
        _joined(sending)
        conn.send(share)
    except Exception as exc:  # the main process falls back to the sequential replay
        with contextlib.suppress(OSError):
            _joined(sending)
            conn.send(Verdict(False, why=f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
        # A forked copy of the caller: skip its exit handlers and stream flushes, whose locks a
        # thread of the parent (a progress bar) may have held at the fork.
        os._exit(0)


def _send_aside(conn: Connection, message: object, sending: list[threading.Thread]) -> None:
    """`conn.send(message)` from a thread: a pipe holds 64 kB, so a large message blocks its
    sender until the main process has read it, and the main process reads one share at a time.
    The write releases the GIL: this process goes on meanwhile."""
    thread = threading.Thread(target=conn.send, args=(message,), daemon=True)
    thread.start()
    sending.append(thread)


def _joined(sending: list[threading.Thread]) -> None:
    for thread in sending:
        thread.join()
    sending.clear()


def _closed_here(markers: list[WindowClosed], mine: set[int]) -> list[int]:
    by_window: dict[int, set[int]] = defaultdict(set)
    for m in markers:
        by_window[m.window_id].add(m.partition)
    return sorted(w for w, parts in by_window.items() if parts == mine)


def _share_fold(
    log: KafkaLog, parts: list[tuple[str, int]], conn: Connection, sending: list[threading.Thread]
) -> tuple[State, Share]:
    # The statements and dead letters are fetched with the redemptions, and read once the
    # share knows its sites.
    later: list[Any] = []
    aux = _clearing_of(log, parts) + log.partitions(Topic.DEAD_LETTERS)
    state = fold(chain.from_iterable(_setting_aside(log.batches(parts + aux), later, conn)))
    # Its ids first, while it reads its statements and judges them: the main process meanwhile
    # checks no other share holds any of them.
    _send_aside(conn, _hashes(state), sending)
    share = Share(
        # Its clearing records are counted here; the dead letters (every share reads them) by the main process.
        events=state.events + sum(1 for r in later if r.topic is Topic.CLEARING),
        redemptions=state.redemptions,
        reversals=state.reversals,
        counts=Counter(state.counts),
        markers=[m for parts_ in state.markers.values() for m in parts_.values()],
    )
    mine = {p for _, p in parts}
    if any(m.partition not in mine for m in share.markers):
        share.anomaly = "a window marker names a partition it does not sit on"
    if state.issued or state.funder_issued or state.outcomes or state.reversal_outcomes or state.dead_letters:
        share.anomaly = "statements, outcomes or dead letters on the redemption topic"
    share.late = laws.late_reversals(state)
    share.sites = {st["site_id"] for st in state.recomputed.values()}
    share.sites.update(line.site_id for lines in state.lines.values() for line in lines)
    share.foreign = _read_own_statements(later, state, share.sites)
    if (state.redemptions, state.reversals, state.counts) != (
        share.redemptions,
        share.reversals,
        share.counts,
    ):
        share.anomaly = "a statement or dead letter could not be read"
    share.recomputed = {sid: _summary(st) for sid, st in state.recomputed.items()}
    share.issued = set(state.issued)
    return state, share


def _hashes(state: State) -> array[int]:
    """Event ids, redemption ids and pass ids of this share, and the ids its reversals carry, as
    hashes (see the module doc)."""
    # map/chain over itemgetters: iterated in C (nested generator expressions took a third more).
    lines = chain.from_iterable(map(itemgetter("lines"), state.recomputed.values()))
    passes = map(itemgetter("pass_id"), lines)
    pending = map(attrgetter("pass_id"), chain.from_iterable(state.lines.values()))
    reversals = chain.from_iterable(map(itemgetter(0, 1), state.reversals_made))
    return array("q", map(hash, chain(state.seen, state.accepted, passes, pending, reversals)))


def _setting_aside(batches: Iterable[list[Any]], later: list[Any], conn: Connection) -> Iterator[list[Any]]:
    """The redemption records, for the fold, a batch at a time; the others kept in `later`. Tells
    the main process its progress over the records this share counts (the main process counts the
    dead letters)."""
    for batch in batches:
        mine = [r for r in batch if r[0] is Topic.REDEMPTIONS]
        counted = len(batch)
        if len(mine) < counted:
            others = [r for r in batch if r[0] is not Topic.REDEMPTIONS]
            later += others
            counted -= sum(1 for r in others if r[0] is Topic.DEAD_LETTERS)
        conn.send(counted)
        yield mine


def _clearing_of(log: KafkaLog, parts: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The clearing partitions numbered as these redemption partitions."""
    mine = {p for _, p in parts}
    return [tp for tp in log.partitions(Topic.CLEARING) if tp[1] in mine]


def _read_own_statements(records: list[Any], state: State, sites: set[str]) -> list[Any]:
    """The statements issued for this share's sites, and every dead letter (few), fully read; the
    other clearing records returned, in order, for the main process."""
    foreign = []
    for record in records:
        if record.topic is Topic.DEAD_LETTERS or fast.statement_site(record.value) in sites:
            read_one(state, record)
        else:
            foreign.append(record)
    return foreign


def _summary(st: JsonDict) -> JsonDict:
    return {k: v for k, v in st.items() if k != "lines"}


def _verdict(state: State, closed: list[int], db: DbStatements | None) -> Verdict:
    report = AuditReport(windows_closed=closed)
    _compare_all(
        report, "statement", state.recomputed, state.issued, "issued", state.issued_raw, state.bodies
    )
    for _, id_, again in state.issued_again:  # only StatementIssued events are read here
        mine = {id_: state.recomputed[id_]} if id_ in state.recomputed else {}
        _compare_all(report, "statement", mine, {id_: again}, "issued")
    if db is not None:
        sites = {st["site_id"] for st in state.recomputed.values()}
        theirs = {sid: st for sid, st in db.statements.items() if st.get("site_id") in sites}
        _compare_all(report, "db-statement", state.recomputed, theirs, "database")
    if report.differences:
        return Verdict(False, why=f"{len(report.differences)} difference(s)")
    accounted = laws._redemptions_accounted(state, report)
    shares = laws._shares_sum(state)
    if not (accounted.ok and shares.ok and not state.twice):
        return Verdict(False, why="a conservation law is broken")
    return Verdict(True, pending=accounted.pending)


# --- the main process ----------------------------------------------------------------------


def _parallel(
    log: KafkaLog,
    groups: list[list[tuple[str, int]]],
    db: DbStatements | None,
    strict: bool,
    progress: Progress | None,
) -> AuditReport | None:
    ctx = mp.get_context("fork")
    conns, procs = [], []
    for parts in groups:
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_share_main, args=(log, parts, theirs, db), daemon=True)
        proc.start()
        theirs.close()
        conns.append(mine)
        procs.append(proc)
    report = None
    try:
        report = _lead(log, conns, db, strict, progress)
        return report
    finally:
        for conn in conns:
            conn.close()
        for proc in procs:
            if report is None:
                proc.kill()  # the sequential replay needs the cores now
            proc.join(timeout=10)
            if proc.is_alive():  # it has said all it had to say
                proc.kill()
                proc.join()


def _lead(
    log: KafkaLog, conns: list[Connection], db: DbStatements | None, strict: bool, progress: Progress | None
) -> AuditReport | None:
    read_by_shares = {p for _, p in log.partitions(Topic.REDEMPTIONS)}
    others = [
        tp
        for tp in log.ends
        if log.names[tp[0]] is not Topic.REDEMPTIONS
        and not (log.names[tp[0]] is Topic.CLEARING and tp[1] in read_by_shares)
    ]
    deferred: list[Any] = []
    state = fold(_deferring(log.records(others), deferred, progress))
    state.events += len(deferred)  # read below, or by the share that holds their site
    shares = _receive(conns, progress, set(map(hash, state.seen)))
    if shares is None:
        return None
    sites = set().union(*(s.sites for s in shares))
    for share in shares:  # counted by their share; in partition order
        for record in share.foreign:
            if fast.statement_site(record.value) in sites:
                return None  # a statement away from its site's ledger: the sequential replay judges it
            read_one(state, record)
    if not _independent(shares):
        return None
    for record in deferred:  # statements of no share's site: "issued but not in the log"
        if fast.statement_site(record.value) in sites:
            return None  # on a clearing partition no share reads: away from its site's ledger
        read_one(state, record)
    if state.issued or state.lines or state.accepted or state.markers or state.twice:
        return None
    markers: dict[int, dict[int, WindowClosed]] = defaultdict(dict)
    for share in shares:
        for m in share.markers:
            markers[m.window_id][m.partition] = m
    closed = closed_windows(SimpleNamespace(markers=markers))  # type: ignore[arg-type]
    verdicts = [s.verdict for s in shares if s.closed == closed and s.verdict and s.verdict.clean]
    if len(verdicts) != len(shares):
        return None
    return _report(state, shares, verdicts, closed, db, strict)


def _deferring(records: Iterable[Any], deferred: list[Any], progress: Progress | None) -> Iterator[Any]:
    """Every record but the StatementIssued events, which wait to know whose site they are."""
    n = 0
    for n, record in enumerate(records, 1):
        if record.topic is Topic.CLEARING and fast.statement_site(record.value) is not None:
            deferred.append(record)
        else:
            yield record
        if progress is not None and n % 10_000 == 0:
            progress(10_000)
    if progress is not None:
        progress(n % 10_000)


def _receive(conns: list[Connection], progress: Progress | None, ids: set[int]) -> list[Share] | None:
    """Every share's report, or None when one failed or an id of one share (hashed, as `ids` holds
    this process's event ids) is in another's or this process's. A share sends its ids first."""
    shares: dict[int, Share] = {}
    checked: set[int] = set()  # the shares whose ids are checked
    pending = dict(enumerate(conns))
    while pending:
        ready = wait(list(pending.values()))
        for i, conn in list(pending.items()):
            if conn not in ready:
                continue
            try:
                message = conn.recv()
            except EOFError:
                return None
            if isinstance(message, int):
                if progress is not None:
                    progress(message)
            elif isinstance(message, array) and i not in checked:
                if not ids.isdisjoint(message):
                    return None
                checked.add(i)
                if len(checked) < len(conns):  # the last share's need not be kept
                    ids.update(message)
            elif isinstance(message, Share) and not message.anomaly and i in checked:
                shares[i] = message
                del pending[i]
            else:
                return None
    return [shares[i] for i in range(len(conns))]


def _independent(shares: list[Share]) -> bool:
    """No site in two shares, no marker position twice (their ids were checked on arrival)."""
    sites = [s.sites for s in shares]
    if sum(map(len, sites)) != len(set().union(*sites)):
        return False
    positions = [(m.window_id, m.partition) for s in shares for m in s.markers]
    return len(positions) == len(set(positions))


def _report(
    state: State,
    shares: list[Share],
    verdicts: list[Verdict],
    closed: list[int],
    db: DbStatements | None,
    strict: bool,
) -> AuditReport | None:
    recomputed = {sid: st for s in shares for sid, st in s.recomputed.items()}
    merged = SimpleNamespace(recomputed=recomputed, issued={}, funder_issued=state.funder_issued)
    funders = recomputed_funder_statements(merged, closed)  # type: ignore[arg-type]
    report = AuditReport(
        events_read=state.events + sum(s.events for s in shares),
        redemptions=sum(s.redemptions for s in shares),
        reversals=sum(s.reversals for s in shares),
        unreadable=state.counts["unreadable"] + sum(s.counts["unreadable"] for s in shares),
        not_needed=state.counts["not_needed"] + sum(s.counts["not_needed"] for s in shares),
        windows_closed=closed,
        statements_recomputed=len(recomputed),
        statements_issued=sum(len(s.issued) for s in shares),
        funder_statements_recomputed=len(funders),
        funder_statements_issued=len(state.funder_issued),
        total_cleared_cents=sum(st["total_cents"] for st in recomputed.values()),
        database_compared=db is not None,
    )
    _compare_all(report, "funder-statement", funders, state.funder_issued, "issued")
    for type_, id_, again in state.issued_again:
        if type_ != "FunderStatementIssued":
            return None
        _compare_all(
            report, "funder-statement", {id_: funders[id_]} if id_ in funders else {}, {id_: again}, "issued"
        )
    if db is not None:
        if not db.statements.keys() <= recomputed.keys():
            return None
        _compare_all(report, "db-funder-statement", funders, db.funder_statements, "database")
    issued = dict.fromkeys(chain.from_iterable(s.issued for s in shares))
    notified = laws._notifications(SimpleNamespace(issued=issued, outcomes=state.outcomes), strict=strict)  # type: ignore[arg-type]
    late = sorted(chain.from_iterable(s.late for s in shares))  # no id is in two shares
    told = laws.reversal_notifications(late, state.reversal_outcomes, strict=strict)
    totals = laws._shares_sum(merged)  # type: ignore[arg-type]
    if report.differences or not (notified.ok and told.ok and totals.ok):
        return None
    report.checks = {
        "redemption_in_exactly_one_statement_or_dead_letter": Check(
            True, 0, [], _NOTE, sum(v.pending for v in verdicts)
        ),
        "one_notification_outcome_per_statement": notified,
        "one_notification_outcome_per_late_reversal": told,
        "funder_shares_sum_to_totals": totals,
        "pass_redeemed_at_most_once": Check(True, 0, []),
    }
    return report
