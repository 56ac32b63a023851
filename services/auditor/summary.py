"""The readable side of an audit report (rich), and a progress bar over a log's records."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.auditor.report import AuditReport
from services.common.money import format_eur

T = TypeVar("T")


def with_progress(items: Iterable[T], total: int, console: Console, label: str) -> Iterator[T]:
    """Yields `items`, advancing a bar every 10 000 (a per-item update would cost more than the read)."""
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=total)
        n = 0
        for item in items:
            yield item
            n += 1
            if n % 10_000 == 0:
                progress.update(task, completed=n)
        progress.update(task, completed=n)


@contextlib.contextmanager
def progress_bar(total: int, console: Console, label: str) -> Iterator[Callable[[int], None]]:
    """A bar advanced by the callback it yields (for reads spread over several processes)."""
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def render(report: AuditReport, console: Console) -> None:
    verdict = "[bold green]everything matches[/]" if report.ok else "[bold red]differences found[/]"
    console.rule(f"audit replay: {verdict}")
    figures = Table(show_header=False, box=None)
    figures.add_row("events read", f"{report.events_read:,}")
    figures.add_row("redemptions / reversals", f"{report.redemptions:,} / {report.reversals:,}")
    figures.add_row("windows closed", ", ".join(map(str, report.windows_closed)) or "none")
    figures.add_row(
        "statements recomputed / issued", f"{report.statements_recomputed} / {report.statements_issued}"
    )
    figures.add_row(
        "funder statements recomputed / issued",
        f"{report.funder_statements_recomputed} / {report.funder_statements_issued}",
    )
    figures.add_row("cleared", format_eur(report.total_cleared_cents))
    figures.add_row("clearing database compared", "yes" if report.database_compared else "no")
    figures.add_row("unreadable events", str(report.unreadable))
    console.print(figures)
    checks = Table("conservation law", "result", "cases", "note")
    for name, c in sorted(report.checks.items()):
        cases = f"{c.count} ({c.pending} pending)" if c.pending else str(c.count)
        checks.add_row(name, "[green]ok[/]" if c.ok else "[red]broken[/]", cases, c.note)
    console.print(checks)
    if report.differences:
        diffs = Table("kind", "window", "site / funder", "problem", "figures (recomputed → found)")
        for d in report.differences[:50]:
            figures_ = "; ".join(f"{k}: {a} → {b}" for k, (a, b) in d.fields.items())
            diffs.add_row(d.kind, str(d.window_id), d.subject, d.problem, figures_)
        console.print(diffs)
        if len(report.differences) > 50:
            console.print(f"… and {len(report.differences) - 50} more in the JSON report")
    for c in report.checks.values():
        for example in c.examples if not c.ok else ():
            console.print(f"[red]•[/] {example}", highlight=False)
