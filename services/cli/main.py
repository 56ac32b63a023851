"""`passclear up | down | demo | token | audit replay` (typer + rich)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from services.common.roles import Role

# Only what `--help` and every command need is imported here: each command imports the rest
# (FastAPI through `auth`, httpx through `processes`, pydantic through the replay), so that
# `passclear audit replay`, timed end to end, does not pay for the web stack.
if TYPE_CHECKING:
    from services.cli.demo import Outcome
    from services.cli.processes import ServiceProcesses

# The audit commands read the log where the services write it.
Bootstrap = Annotated[str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS")]
Prefix = Annotated[str, typer.Option(envvar="KAFKA_TOPIC_PREFIX")]

app = typer.Typer(help="passclear: clearing of Pass Numérique vouchers.", no_args_is_help=True)
audit_app = typer.Typer(help="The auditor's tools.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
console = Console()
REPO = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    return Path(os.environ.get("PASSCLEAR_STATE_DIR", REPO / ".local"))


def fail(reason: str) -> None:
    console.print(f"[bold red]passclear:[/] {reason}", highlight=False)
    raise typer.Exit(1)


def infra() -> tuple[str, str]:
    from deploy.local.errors import InfraError
    from deploy.local.stack import ensure_infra

    try:
        with console.status("starting Kafka and Postgres…"):
            started = ensure_infra(state_dir())
    except InfraError as exc:
        fail(str(exc))
        raise
    return started.bootstrap_servers, started.database_url


def services(bootstrap: str, database_url: str, prefix: str) -> ServiceProcesses:
    from services.cli.processes import ServiceProcesses

    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database_url, "KAFKA_TOPIC_PREFIX": prefix}
    return ServiceProcesses(state_dir() / "services", env)


def start_services(procs: ServiceProcesses) -> None:
    """Start the four services and wait until each is ready (StackError if one is not)."""
    with console.status("starting issuer, redemption, clearing and notifier…"):
        procs.start_all()
        procs.wait_all_ready()


@app.command()
def up(prefix: str = "passclear.") -> None:
    """Start Kafka, Postgres and the four services on loopback."""
    from services.cli.processes import StackError

    bootstrap, database_url = infra()
    procs = services(bootstrap, database_url, prefix)
    try:
        start_services(procs)
    except StackError as exc:
        fail(str(exc))
    for name in procs.ports:
        console.print(f"  {name:<11} {procs.url(name)}/docs")
    console.print(f"  kafka       {bootstrap}\n  postgres    {database_url}")


@app.command()
def down() -> None:
    """Stop the services, Kafka and Postgres. Leaves no process behind."""
    from deploy.local.errors import InfraError
    from deploy.local.stack import LocalStack
    from services.cli.processes import ServiceProcesses

    ServiceProcesses(state_dir() / "services", {}).stop_all()
    try:
        LocalStack(state_dir()).down()
    except InfraError as exc:
        fail(str(exc))
    console.print("stopped")


@app.command()
def demo(keep: Annotated[bool, typer.Option(help="leave the system running afterwards")] = False) -> None:
    """The main job: a realistic programme issued, redeemed, cleared, notified and audited."""
    from services.cli.demo import MainJob
    from services.cli.mailbox import Mailbox
    from services.cli.processes import StackError
    from services.common.settings import DEV_SECRET

    started = time.monotonic()
    console.rule("[bold]passclear — main job")
    bootstrap, base_url = infra()
    database_url = _fresh_database(base_url, "passclear_demo")
    prefix = f"demo-{int(time.time())}."
    mailbox = Mailbox()
    procs = services(bootstrap, database_url, prefix)
    procs.env["SMTP_PORT"] = str(mailbox.start())
    procs.stop_all()
    try:
        start_services(procs)
        console.print(f"[green]✓[/] system up in {time.monotonic() - started:.1f}s (Kafka {bootstrap})")
        with Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        ) as progress:
            bars: dict[str, TaskID] = {}

            def advance(what: str, done: int, total: int) -> None:
                if what not in bars:
                    bars[what] = progress.add_task(what, total=total)
                progress.update(bars[what], completed=done)

            job = MainJob(
                urls={n: procs.url(n) for n in procs.ports},
                secret=DEV_SECRET,
                bootstrap=bootstrap,
                topic_prefix=prefix,
                step=lambda text: console.print(f"[green]✓[/] {text}", highlight=False),
                advance=advance,
                mailbox=mailbox,
                files_dir=state_dir() / "demo",
            )
            outcome = job.run()
        _summary(outcome)
        ok = outcome.audit is not None and outcome.audit.ok and _matches(outcome)
    except StackError as exc:
        fail(str(exc))
        return
    finally:
        if not keep:
            procs.stop_all()
        mailbox.stop()
    console.print(
        f"\nmain job finished in {time.monotonic() - started:.1f}s — "
        + ("[bold green]all figures reconcile[/]" if ok else "[bold red]figures do not reconcile[/]")
    )
    if keep:
        console.print("the system is still running: `make down` stops it")
    else:
        console.print("Kafka and Postgres stay up for the next run: `make down` stops them")
    if not ok:
        raise typer.Exit(1)


def _matches(outcome: Outcome) -> bool:
    statements = {(s["site_id"], s["window_id"]): s["total_cents"] for s in outcome.statements}
    return statements == outcome.expected_by_site_window


def _summary(outcome: Outcome) -> None:
    from services.common.money import format_eur

    o = outcome  # the demo's Outcome
    table = Table(title="Clearing statements (relevés de compensation)", show_lines=False)
    for col in ("window", "site", "passes", "reversals", "owed", "expected payout"):
        table.add_column(col, justify="right" if col in ("passes", "reversals", "owed") else "left")
    for s in sorted(o.statements, key=lambda s: (s["window_id"], o.site_names[s["site_id"]])):
        table.add_row(
            str(s["window_id"]),
            o.site_names[s["site_id"]],
            str(s["redemptions"]),
            str(s["reversals"]),
            format_eur(s["total_cents"]),
            s["expected_payout_date"],
        )
    console.print(table)
    funders = Table(title="Calls for funds (funder statements)")
    for col in ("window", "funder", "statements", "amount"):
        funders.add_column(col, justify="right" if col in ("statements", "amount") else "left")
    for f in sorted(o.funder_statements, key=lambda f: (f["window_id"], o.funder_names[f["funder_id"]])):
        funders.add_row(
            str(f["window_id"]),
            o.funder_names[f["funder_id"]],
            str(f["statements"]),
            format_eur(f["amount_cents"]),
        )
    console.print(funders)


def _fresh_database(base_url: str, name: str) -> str:
    """A new empty database for the demo, so a second run starts from a clean slate."""
    import asyncio

    import asyncpg

    async def recreate() -> None:
        conn = await asyncpg.connect(base_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    return base_url.rsplit("/", 1)[0] + "/" + name


@app.command()
def token(role: Role, subject: str) -> None:
    """Mint a development token (dev profile secret) for ROLE acting as SUBJECT."""
    from services.common.auth import issue_token
    from services.common.settings import DEV_SECRET

    secret = os.environ.get("PASSCLEAR_AUTH_SECRET", DEV_SECRET)
    typer.echo(issue_token(secret, role, subject))


@audit_app.command("replay")
def audit_replay(
    bootstrap: Bootstrap = "127.0.0.1:19092",
    prefix: Prefix = "passclear.",
    report: Annotated[Path | None, typer.Option(help="write the JSON report here")] = None,
    from_dir: Annotated[Path | None, typer.Option(help="replay an exported log instead of Kafka")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(envvar="AUDIT_DATABASE_URL", help="also compare the clearing database (read-only)"),
    ] = None,
    db_schema: Annotated[str, typer.Option(help="the clearing service's schema")] = "clearing",
    strict_notifications: Annotated[bool, typer.Option(help="fail on statements without outcome")] = False,
    json_only: Annotated[bool, typer.Option("--json", help="print the JSON report only")] = False,
) -> None:
    """Read every topic from offset 0, recompute every statement, compare with what was issued.

    Exit status 0 only when everything matches and every conservation law holds."""
    from services.auditor.allocator import keep_freed_memory
    from services.auditor.files import FileLog
    from services.auditor.kafka_log import KafkaLog
    from services.auditor.parallel import replay_kafka_with_mode
    from services.auditor.replay import replay
    from services.auditor.summary import progress_bar, render, with_progress

    keep_freed_memory()
    err = Console(stderr=True)
    log = FileLog(from_dir) if from_dir else KafkaLog(bootstrap, prefix)
    db = None
    if database_url:
        from services.auditor.pg_statements import read_statements

        db = read_statements(database_url, db_schema)
    label = "replaying the event log"
    if isinstance(log, FileLog):
        records = with_progress(log.records(), log.size(), err, label)
        result = replay(records, db=db, strict_notifications=strict_notifications)
    else:
        with progress_bar(log.size(), err, label) as advance:
            result, mode = replay_kafka_with_mode(
                log, db=db, strict_notifications=strict_notifications, progress=advance
            )
        err.print(f"replayed {'on every core' if mode == 'parallel' else 'in one process'} ({mode})")
    data = json.dumps(result.as_json(), indent=2, default=str)
    if report:
        report.write_text(data)
    if json_only:
        print(data)
    else:
        render(result, console)
    sys.exit(0 if result.ok else 1)


@audit_app.command("export")
def audit_export(
    to: Annotated[Path, typer.Option(help="directory for the gzip JSON-lines files")],
    bootstrap: Bootstrap = "127.0.0.1:19092",
    prefix: Prefix = "passclear.",
) -> None:
    """Export every topic to files (one per topic and partition, with offsets) for offline replay."""
    from services.auditor.files import export_log
    from services.auditor.kafka_log import KafkaLog
    from services.auditor.summary import with_progress

    log = KafkaLog(bootstrap, prefix)
    counts = export_log(with_progress(log.records(), log.size(), console, "exporting the event log"), to)
    console.print(f"{sum(counts.values()):,} records in {len(counts)} files under {to}")
