"""The main job: a realistic programme issued, redeemed, cleared, notified and audited.

Every step goes through the services' HTTP APIs and Kafka, as in production; progress is
reported through `Progress` so the CLI can show it."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from schemas.topics import Topic
from services.auditor.kafka_log import read_log
from services.auditor.replay import AuditReport, replay
from services.cli import scenario
from services.cli.client import Api, ApiError, wait_for
from services.cli.mailbox import Mailbox
from services.cli.receiver import WebhookReceiver
from services.common.auth import Role
from services.common.money import format_eur

Step = Callable[[str], None]
# (what, done, total): how far a long step has gone, for a progress bar.
Advance = Callable[[str, int, int], None]


def _no_progress(what: str, done: int, total: int) -> None:
    pass


@dataclass
class Site:
    site_id: str
    name: str
    programmes: list[str]
    api: dict[str, Api] = field(default_factory=dict)


@dataclass
class Outcome:
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # redemption id -> details
    reversed: dict[str, int] = field(default_factory=dict)  # redemption id -> window of the reversal
    refusals: list[tuple[str, int, str]] = field(default_factory=list)
    statements: list[dict[str, Any]] = field(default_factory=list)
    funder_statements: list[dict[str, Any]] = field(default_factory=list)
    funder_names: dict[str, str] = field(default_factory=dict)
    site_names: dict[str, str] = field(default_factory=dict)
    webhooks_verified: int = 0  # statement.issued
    reversal_webhooks_verified: int = 0  # redemption.reversed (after its window closed)
    webhooks_received: int = 0
    calls_for_funds_emailed: int = 0
    payouts: dict[int, dict[str, Any]] = field(default_factory=dict)
    audit: AuditReport | None = None
    expected_by_site_window: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass
class MainJob:
    urls: dict[str, str]
    secret: str
    bootstrap: str
    topic_prefix: str
    step: Step
    advance: Advance = _no_progress
    seed: int = 2026
    redeem_ratio: float = 0.7
    # A real SMTP server the notifier sends to (see services/cli/mailbox.py); None: no e-mail step.
    mailbox: Mailbox | None = None
    # Where finance's files (the SEPA credit transfer files) are written; None: not written.
    files_dir: Path | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.finance = {
            name: Api(url, self.secret, Role.FINANCE, "finance-demo") for name, url in self.urls.items()
        }
        self.out = Outcome()

    def run(self) -> Outcome:
        receiver = WebhookReceiver()
        receiver_url = receiver.start()
        try:
            funders, programmes = self.register_programmes()
            sites = self.register_sites(programmes, receiver, receiver_url)
            codes = self.fund_and_activate(funders, programmes)
            self.first_window = int(self.finance["redemption"].get("/windows/current")["window_id"])
            self.redeem_window_one(sites, codes)
            self.close_window_and_clear(self.first_window, sites)
            self.redeem_window_two(sites, codes)
            self.close_window_and_clear(self.first_window + 1, sites)
            self.await_webhooks(receiver)
            self.await_calls_for_funds()
            self.audit()
        finally:
            receiver.stop()
        return self.out

    # --- issuance ---------------------------------------------------------------------------

    def register_programmes(self) -> tuple[dict[str, str], dict[str, str]]:
        issuer = self.finance["issuer"]
        funders = {}
        for f in scenario.FUNDERS:
            funders[f.key] = issuer.post("/funders", {"name": f.name, "kind": f.kind})["funder_id"]
            self.out.funder_names[funders[f.key]] = f.name
            # Where the funder's finance team receives its calls for funds (the notifier's registry).
            self.finance["notifier"].put(
                f"/funders/{funders[f.key]}/finance-contact", {"address": f"finances.{f.key}@example.org"}
            )
        programmes = {}
        for p in scenario.PROGRAMMES:
            body = {
                "name": p.name,
                "territory": p.territory,
                "face_value_cents": 1000,
                "passes_per_booklet": p.passes_per_booklet,
                "valid_from": "2026-01-01",
                "valid_until": "2026-12-31",
                "grace_days": 31,
                "learning_paths": scenario.PATHS,
                "funders": [{"funder_id": funders[k], "share_bp": bp} for k, bp in p.shares],
            }
            programmes[p.key] = issuer.post("/programmes", body)["programme_id"]
            shares = " / ".join(f"{k} {bp / 100:g} %" for k, bp in p.shares)
            self.step(f"programme registered: {p.name} ({shares})")
        return funders, programmes

    def register_sites(self, programmes: dict[str, str], receiver: WebhookReceiver, url: str) -> list[Site]:
        issuer, sites = self.finance["issuer"], []
        for spec in scenario.SITES:
            body = {
                "name": spec.name,
                "siret": scenario.siret(self.rng),
                "iban": scenario.iban(self.rng),
                "bic": "BNPAFRPP",
                "contact_email": "contact@example.org",
            }
            site = Site(issuer.post("/sites", body)["site_id"], spec.name, spec.programmes)
            for key in spec.programmes:
                issuer.post(f"/sites/{site.site_id}/qualifications", {"programme_id": programmes[key]})
            site.api = {n: Api(u, self.secret, Role.SITE, site.site_id) for n, u in self.urls.items()}
            hook = site.api["notifier"].post("/webhooks", {"url": f"{url}/sites/{site.site_id}"})
            receiver.secrets[f"/sites/{site.site_id}"] = hook["secret"]
            self.out.site_names[site.site_id] = site.name
            sites.append(site)
        self.step(f"{len(sites)} qualified sites registered, each with a signed webhook endpoint")
        return sites

    def fund_and_activate(self, funders: dict[str, str], programmes: dict[str, str]) -> dict[str, list[str]]:
        codes: dict[str, list[str]] = {}
        for p in scenario.PROGRAMMES:
            order = self.finance["issuer"].post(
                "/orders", {"programme_id": programmes[p.key], "booklets": p.booklets}
            )
            for due in order["dues"]:
                funder = Api(self.urls["issuer"], self.secret, Role.FUNDER, due["funder_id"])
                funder.post(
                    f"/orders/{order['order_id']}/payments",
                    {"amount_cents": due["amount_cents"], "bank_reference": f"VIR-{uuid.uuid4().hex[:10]}"},
                )
            detail = self.finance["issuer"].get(f"/orders/{order['order_id']}")
            codes[p.key] = [pass_["code"] for b in detail["booklets"] for pass_ in b["passes"]]
            self.step(
                f"{p.booklets} booklets ordered for {p.territory}, {len(order['dues'])} funders paid their share "
                f"({order['face_value_total_cents'] // 100} €) → {len(codes[p.key])} passes active"
            )
        return codes

    # --- redemption -------------------------------------------------------------------------

    def redeem(self, site: Site, code: str, path: str, *, attempt: str = "") -> dict[str, Any] | None:
        body = {
            "code": code,
            "learning_path": path,
            "workshop_date": date.today().isoformat(),
            "duration_minutes": 120,
        }
        try:
            answer: dict[str, Any] = site.api["redemption"].post(
                "/redemptions", body, key=f"{site.site_id}:{code}{attempt}"
            )
        except ApiError as exc:
            self.out.refusals.append((code, exc.status, exc.problem.get("title", "")))
            return None
        self.out.accepted[answer["redemption_id"]] = {**answer, "site_id": site.site_id, "code": code}
        return answer

    def redeem_window_one(self, sites: list[Site], codes: dict[str, list[str]]) -> None:
        first_site = next(s for s in sites if "bfc" in s.programmes)
        # The redemption service learns of the passes from the issuer's events: wait for it.
        wait_for(
            "the first passes to reach the redemption service",
            lambda: self._try_first(first_site, codes["bfc"][0]),
            timeout=60,
        )
        plan = [
            (code, [s for s in sites if key in s.programmes])
            for key, programme_codes in codes.items()
            for code in programme_codes[1 : int(len(programme_codes) * self.redeem_ratio)]
        ]
        for done, (code, qualified) in enumerate(plan, start=1):
            self.redeem(self.rng.choice(qualified), code, self.rng.choice(scenario.PATHS))
            self.advance("sites redeeming passes (window 1)", done, len(plan))
        self.step(f"window 1: {len(self.out.accepted)} passes redeemed at the sites")
        self.show_refusals(sites, codes)
        for rid in self.rng.sample(sorted(self.out.accepted), 3):
            self.reverse(rid, by_finance=False)
        self.step("window 1: 3 redemptions reversed by their sites (workshop not held)")

    def _try_first(self, site: Site, code: str) -> bool:
        before = len(self.out.refusals)
        if self.redeem(site, code, "basic-skills") is not None:
            return True
        self.out.refusals.pop(before)
        return False

    def show_refusals(self, sites: list[Site], codes: dict[str, list[str]]) -> None:
        used = next(iter(self.out.accepted.values()))
        site = next(s for s in sites if s.site_id == used["site_id"])
        lozere_only = next(s for s in sites if s.programmes == ["lozere"])
        typo = codes["bfc"][-1]
        typo = typo[:-1] + ("A" if typo[-1] != "A" else "B")
        cases = [
            (site, typo, "mistyped code"),
            (site, used["code"], "second use of a pass"),
            (lozere_only, codes["bfc"][-2], "site not qualified for the programme"),
        ]
        for who, code, what in cases:
            before = len(self.out.refusals)
            self.redeem(who, code, "basic-skills", attempt=":again")
            _, status, title = self.out.refusals[before]
            self.step(f"refused as expected — {what}: {status} {title}")

    def reverse(self, redemption_id: str, *, by_finance: bool) -> None:
        details = self.out.accepted[redemption_id]
        api = (
            self.finance["redemption"]
            if by_finance
            else Api(self.urls["redemption"], self.secret, Role.SITE, details["site_id"])
        )
        answer = api.post(f"/redemptions/{redemption_id}/reversal", {"reason": "atelier annulé"})
        self.out.reversed[redemption_id] = answer["window_id"]

    def redeem_window_two(self, sites: list[Site], codes: dict[str, list[str]]) -> None:
        before = len(self.out.accepted)
        for code in codes["lozere"][int(len(codes["lozere"]) * self.redeem_ratio) : -2]:
            self.redeem(
                self.rng.choice([s for s in sites if "lozere" in s.programmes]), code, "access-to-rights"
            )
        window_one = [
            rid
            for rid, d in self.out.accepted.items()
            if d["window_id"] == self.first_window and rid not in self.out.reversed
        ]
        self.reverse(self.rng.choice(sorted(window_one)), by_finance=True)
        self.step(
            f"window 2: {len(self.out.accepted) - before} more redemptions, "
            "and finance reverses a window-1 redemption (a negative line in window 2)"
        )

    # --- clearing, notification, audit ------------------------------------------------------

    def close_window_and_clear(self, window: int, sites: list[Site]) -> None:
        closed = self.finance["redemption"].post("/windows/current/close")
        assert closed["closed_window_id"] == window, closed
        expected = self.expected_totals(window)
        self.out.expected_by_site_window.update({(s, window): t for s, t in expected.items()})
        clearing = self.finance["clearing"]

        def ours() -> list[dict[str, Any]] | None:
            sts = [
                s
                for s in clearing.get("/statements", window_id=window)
                if s["site_id"] in self.out.site_names
            ]
            return sts if len(sts) == len(expected) else None

        statements = wait_for(f"the statements of window {window}", ours)
        funder_statements = wait_for(
            f"the funder statements of window {window}",
            lambda: (
                [
                    f
                    for f in clearing.get("/funder-statements", window_id=window)
                    if f["funder_id"] in self.out.funder_names
                ]
                or None
            ),
        )
        self.out.statements += statements
        self.out.funder_statements += funder_statements
        total = sum(s["total_cents"] for s in statements)
        self.step(
            f"window {window} closed → {len(statements)} site statements, {len(funder_statements)} funder "
            f"statements, {format_eur(total)} owed to sites"
        )
        self.pay_window(window)

    def pay_window(self, window: int) -> None:
        """Finance pays the window's statements: the SEPA credit transfer file for its bank."""
        clearing = self.finance["clearing"]
        plan = clearing.get(f"/windows/{window}/payouts")
        self.out.payouts[window] = plan
        if not plan["transfers"]:
            self.step(
                f"window {window}: nothing to pay ({len(plan['not_paid'])} statements carried over, netted or held)"
            )
            return
        xml = clearing.get_bytes(f"/windows/{window}/payouts/sepa")
        where = ""
        if self.files_dir is not None:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            path = self.files_dir / f"virements-periode-{window}.xml"
            path.write_bytes(xml)
            where = f" → {path}"
        self.step(
            f"window {window}: SEPA credit transfer file (pain.001) with {len(plan['transfers'])} transfers, "
            f"{format_eur(plan['total_cents'])}; {len(plan['not_paid'])} statements not paid "
            f"(carried over, netted or held){where}"
        )

    def expected_totals(self, window: int) -> dict[str, int]:
        """What each site is owed for the window, from what the demo saw accepted and reversed."""
        totals: dict[str, int] = defaultdict(int)
        for rid, d in self.out.accepted.items():
            if d["window_id"] == window:
                totals[d["site_id"]] += d["amount_cents"]
            if self.out.reversed.get(rid) == window:
                totals[d["site_id"]] -= d["amount_cents"]
        return dict(totals)

    def await_webhooks(self, receiver: WebhookReceiver) -> None:
        # Every site has one endpoint: one webhook per statement, and one per reversal made
        # after its redemption's window closed (the site learns what comes off its next statement).
        late = sum(1 for rid, w in self.out.reversed.items() if self.out.accepted[rid]["window_id"] < w)

        def of(kind: str) -> list[Any]:
            return [
                r for r in receiver.received if isinstance(r.payload, dict) and r.payload.get("type") == kind
            ]

        wait_for(
            "a webhook for every statement and every reversal after close",
            lambda: (
                len({r.headers.get("webhook-id") for r in of("statement.issued")}) >= len(self.out.statements)
                and len({r.headers.get("webhook-id") for r in of("redemption.reversed")}) >= late
            ),
        )
        self.out.webhooks_received = len(receiver.received)
        self.out.webhooks_verified = sum(1 for r in of("statement.issued") if r.verified)
        self.out.reversal_webhooks_verified = sum(1 for r in of("redemption.reversed") if r.verified)
        self.step(
            f"{self.out.webhooks_verified} signed statement webhooks and {self.out.reversal_webhooks_verified} "
            "reversal-after-close webhooks received and verified by the sites' endpoints"
        )

    def await_calls_for_funds(self) -> None:
        if self.mailbox is None:
            return
        mailbox = self.mailbox

        def received() -> list[Any] | None:
            calls = [m for m in mailbox.messages if m["To"].startswith("finances.")]
            return calls if len(calls) >= len(self.out.funder_statements) else None

        calls = wait_for("the calls for funds by e-mail", received, timeout=60)
        attached = sum(1 for m in calls if any(True for _ in m.iter_attachments()))
        self.out.calls_for_funds_emailed = len(calls)
        self.step(
            f"{len(calls)} calls for funds e-mailed to the funders' finance teams "
            f"({attached} with their CSV and PDF attached)"
        )

    def audit(self) -> None:
        def replayed() -> AuditReport | None:
            report = replay(read_log(self.bootstrap, self.topic_prefix, [Topic.REDEMPTIONS, Topic.CLEARING]))
            # The clearing topic trails the clearing API by one relay pass: wait until what the log
            # recomputes has all been issued on it.
            caught_up = (
                report.statements_issued >= report.statements_recomputed
                and report.funder_statements_issued >= report.funder_statements_recomputed
            )
            return report if caught_up else None

        self.out.audit = wait_for("the auditor's replay of the whole log", replayed, timeout=60, every=1)
        verdict = "every figure matches to the cent" if self.out.audit.ok else "DIFFERENCES FOUND"
        self.step(f"auditor replayed {self.out.audit.events_read} events from offset 0: {verdict}")
