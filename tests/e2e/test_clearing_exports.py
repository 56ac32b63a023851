"""Clearing's exports end to end: three funders, three sites, two windows with reversals across
them, the clearing worker SIGKILLed mid-stream; statements, calls for funds and the SEPA file
checked against a computation made here, independently of the clearing core."""

from __future__ import annotations

import csv
import io
import random
import signal
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import httpx
import pytest
import sepaxml
import xmlschema

from services.cli import scenario
from services.cli.client import Api, wait_for
from services.cli.processes import ServiceProcesses
from services.common.auth import Role, issue_token
from services.common.settings import DEV_SECRET
from tests.e2e.system import api, running_system
from tests.pdf_text import pdf_text

pytestmark = pytest.mark.e2e

FACE = 1250
SHARES = (3334, 3333, 3333)  # exact shares of 12,50 € are not whole cents: largest remainder decides
IBANS = ("FR7630004000030001234567897", "FR1420041010050500013M02606", "FR7630006000011234567890189")
XSD = Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.03.xsd"


@pytest.fixture(scope="module")
def system(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcesses]:
    with running_system(tmp_path_factory.mktemp("services"), dict(service_env)) as procs:
        yield procs


def raw(
    procs: ServiceProcesses, path: str, role: Role = Role.FINANCE, subject: str = "finance"
) -> httpx.Response:
    token = issue_token(DEV_SECRET, role, subject)
    return httpx.get(procs.url("clearing") + path, headers={"authorization": f"Bearer {token}"}, timeout=60)


def largest_remainder(total: int, shares: tuple[int, ...]) -> list[int]:
    """Written again here, from the rule, so the test does not check the core with itself."""
    sign = -1 if total < 0 else 1
    exact = [Fraction(abs(total) * s, 10_000) for s in shares]
    parts = [int(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: abs(total) - sum(parts)]:
        parts[i] += 1
    return [sign * p for p in parts]


def test_two_windows_with_a_killed_worker_clear_to_the_cent_and_pay_by_sepa(system: ServiceProcesses) -> None:
    issuer = api(system, "issuer")
    funders = [
        issuer.post("/funders", {"name": n, "kind": k})["funder_id"]
        for n, k in (("Région", "region"), ("ANCT", "state"), ("Enedis", "enedis"))
    ]
    programme = issuer.post(
        "/programmes",
        {
            "name": "Pass Numérique test exports",
            "territory": "Test",
            "face_value_cents": FACE,
            "passes_per_booklet": 10,
            "valid_from": "2026-01-01",
            "valid_until": "2026-12-31",
            "grace_days": 31,
            "learning_paths": ["basic-skills"],
            "funders": [{"funder_id": f, "share_bp": s} for f, s in zip(funders, SHARES, strict=True)],
        },
    )["programme_id"]
    sites = []
    for n, iban in enumerate(IBANS):
        site = issuer.post(
            "/sites",
            {
                "name": f"Espace numérique {n}",
                "siret": scenario.siret(random.Random(n)),
                "iban": iban,
                "bic": "BNPAFRPP",
                "contact_email": f"site{n}@example.org",
            },
        )["site_id"]
        issuer.post(f"/sites/{site}/qualifications", {"programme_id": programme})
        sites.append(site)
    order = issuer.post("/orders", {"programme_id": programme, "booklets": 2})
    for due in order["dues"]:
        Api(system.url("issuer"), DEV_SECRET, Role.FUNDER, due["funder_id"]).post(
            f"/orders/{order['order_id']}/payments",
            {"amount_cents": due["amount_cents"], "bank_reference": "V"},
        )
    codes = [p["code"] for b in issuer.get(f"/orders/{order['order_id']}")["booklets"] for p in b["passes"]]

    expected: dict[tuple[str, int], int] = defaultdict(int)  # (site, window) -> cents
    redemption_site: dict[str, str] = {}
    finance = api(system, "redemption")

    def redeem(site_index: int) -> tuple[str, int]:
        site = api(system, "redemption", Role.SITE, sites[site_index])
        body = {
            "code": codes.pop(),
            "learning_path": "basic-skills",
            "workshop_date": "2026-11-20",
            "duration_minutes": 90,
        }
        answer = wait_for("the pass to reach redemption", lambda: _accepted(site, body), timeout=60)
        expected[(sites[site_index], answer["window_id"])] += FACE
        redemption_site[answer["redemption_id"]] = sites[site_index]
        return answer["redemption_id"], answer["window_id"]

    def reverse(redemption_id: str) -> None:
        answer = finance.post(f"/redemptions/{redemption_id}/reversal", {"reason": "atelier annulé"})
        expected[(redemption_site[redemption_id], answer["window_id"])] -= FACE

    # Window 1: A three (one reversed at once), B two, C one.
    a1, w1 = redeem(0)
    for i in (0, 0, 1, 1, 2):
        redeem(i)
    c1 = next(r for r, s in redemption_site.items() if s == sites[2])
    reverse(a1)
    assert finance.post("/windows/current/close")["closed_window_id"] == w1
    # Window 2: C's window-1 redemption reversed (C goes negative: carried over, not paid); the
    # worker is killed mid-stream, with batches in flight, and restarted.
    reverse(c1)
    redeem(0)
    system.kill("clearing", signal.SIGKILL)
    redeem(1)
    system.start("clearing")
    system.wait_ready("clearing")
    redeem(0)
    w2 = finance.post("/windows/current/close")["closed_window_id"]
    assert w2 == w1 + 1

    # Window 3: C redeems twice; its window-2 debt is deducted: C is paid 2 × 12,50 − 12,50 €.
    redeem(2)
    redeem(2)
    w3 = finance.post("/windows/current/close")["closed_window_id"]
    assert w3 == w2 + 1

    clearing = api(system, "clearing")
    statement_ids: dict[tuple[str, int], str] = {}
    # Netted here, independently: a site's negative totals come off its next positive ones.
    deducted: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    outstanding: dict[str, int] = defaultdict(int)
    for window in (w1, w2, w3):
        for site in sites:
            total = expected.get((site, window), 0)
            if total < 0:
                outstanding[site] -= total
            else:
                deducted[window][site] = min(total, outstanding[site])
                outstanding[site] -= deducted[window][site]
    assert deducted[w3][sites[2]] == FACE and not any(outstanding.values())
    for window in (w1, w2, w3):
        want = {s: c for (s, w), c in expected.items() if w == window}
        statements = wait_for(
            f"the statements of window {window}",
            lambda window=window, want=want: (
                r if len(r := clearing.get("/statements", window_id=window)) == len(want) else None
            ),
        )
        assert {s["site_id"]: s["total_cents"] for s in statements} == want
        for s in statements:
            statement_ids[(s["site_id"], window)] = s["statement_id"]
            split = dict(zip(funders, largest_remainder(s["total_cents"], SHARES), strict=True))
            assert {f["funder_id"]: f["amount_cents"] for f in s["funder_amounts"]} == split
            _check_csv_and_pdf(system, s)
        calls = wait_for(
            "the calls for funds",
            lambda window=window: clearing.get("/funder-statements", window_id=window) or None,
        )
        owed: dict[str, int] = defaultdict(int)
        for total in want.values():
            for f, part in zip(funders, largest_remainder(total, SHARES), strict=True):
                owed[f] += part
        assert {c["funder_id"]: c["amount_cents"] for c in calls} == owed  # gross: netting is the payout's
        for call in calls:
            _check_call_for_funds(system, call, funders)

        by_site = {s["site_id"]: s["statement_id"] for s in statements}
        debt = deducted[window]
        paid = {sites.index(s): c - debt[s] for s, c in want.items() if c - debt[s] > 0}
        plan = clearing.get(f"/windows/{window}/payouts")
        assert {n["site_id"]: n["reason"] for n in plan["not_paid"]} == {
            s: "carried-over" for s, c in want.items() if c <= 0
        }
        assert {t["site_id"]: (t["gross_cents"], t["amount_cents"]) for t in plan["transfers"]} == {
            sites[i]: (want[sites[i]], c) for i, c in paid.items()
        }
        r = raw(system, f"/windows/{window}/payouts/sepa")
        assert r.status_code == 200, r.text
        schema = xmlschema.XMLSchema(str(XSD))
        schema.validate(r.text)
        doc = schema.to_dict(r.text)["CstmrCdtTrfInitn"]
        transfers = {
            tx["CdtrAcct"]["Id"]["IBAN"]: (
                Decimal(str(tx["Amt"]["InstdAmt"]["$"])),
                tx["RmtInf"]["Ustrd"][0],
            )
            for pmt in doc["PmtInf"]
            for tx in pmt["CdtTrfTxInf"]
        }
        assert transfers == {
            IBANS[i]: (
                Decimal(c) / 100,
                f"Pass Numerique releve {by_site[sites[i]]}"
                + (f" - deduit {_eur(debt[sites[i]])} EUR solde negatif anterieur" if debt[sites[i]] else ""),
            )
            for i, c in paid.items()
        }
        assert Decimal(str(doc["GrpHdr"]["CtrlSum"])) == Decimal(sum(paid.values())) / 100
        assert b"IBAN" not in raw(system, f"/windows/{window}/payouts").content

    c_debt = statement_ids[(sites[2], w2)]
    (c_paid,) = [t for t in clearing.get(f"/windows/{w3}/payouts")["transfers"] if t["site_id"] == sites[2]]
    assert (c_paid["gross_cents"], c_paid["amount_cents"]) == (2 * FACE, FACE)
    assert c_paid["deductions"] == [{"settles_statement_id": c_debt, "window_id": w2, "amount_cents": FACE}]
    status = raw(system, f"/statements/{c_debt}/payout", Role.SITE, sites[2]).json()
    assert (status["status"], status["outstanding_cents"]) == ("carried-over", 0)
    assert sum(expected[(s, w2)] for s in sites) > 0 and expected[(sites[2], w2)] == -FACE
    # Coverage: the funders paid their dues up front, so everything is paid out — net: C's
    # debt is settled, so what is paid out is what is owed.
    owed_all: dict[str, int] = defaultdict(int)
    for total in expected.values():
        for f, part in zip(funders, largest_remainder(total, SHARES), strict=True):
            owed_all[f] += part
    out_all = owed_all
    dues = {d["funder_id"]: d["amount_cents"] for d in order["dues"]}
    coverage = {r["funder_id"]: r for r in clearing.get("/coverage")}
    assert {
        f: (r["paid_in_cents"], r["owed_cents"], r["paid_out_cents"], r["held_cents"])
        for f, r in coverage.items()
    } == {f: (dues[f], owed_all[f], out_all[f], 0) for f in funders}
    # Who may read what: another site's statement does not exist for you; payouts are finance's.
    a_statement = clearing.get("/statements", window_id=w1)[0]
    other = next(s for s in sites if s != a_statement["site_id"])
    assert raw(system, f"/statements/{a_statement['statement_id']}/csv", Role.SITE, other).status_code == 404
    assert raw(system, f"/statements/{a_statement['statement_id']}/pdf", Role.SITE, other).status_code == 404
    assert raw(system, f"/windows/{w1}/payouts/sepa", Role.SITE, other).status_code == 403
    assert raw(system, f"/windows/{w1}/payouts/sepa", Role.FUNDER, funders[0]).status_code == 403
    # IBANs come from the issuer's registry, to services and finance only.
    site_token = issue_token(DEV_SECRET, Role.SITE, other)
    batch = {"site_ids": [*sites, "00000000-0000-0000-0000-000000000001"]}
    url = system.url("issuer") + "/sites/payout-details"
    refused = httpx.post(url, json=batch, headers={"authorization": f"Bearer {site_token}"}, timeout=30)
    assert refused.status_code == 403
    service_token = issue_token(DEV_SECRET, Role.SERVICE, "clearing")
    answer = httpx.post(
        url, json=batch, headers={"authorization": f"Bearer {service_token}"}, timeout=30
    ).json()
    assert sorted(s["iban"] for s in answer["sites"]) == sorted(IBANS)
    assert answer["unknown"] == ["00000000-0000-0000-0000-000000000001"]
    open_window = raw(system, f"/windows/{w3 + 1}/payouts/sepa")
    assert open_window.status_code == 409
    assert open_window.json()["type"].endswith("/window-not-cleared")


def _eur(cents: int) -> str:
    return f"{cents // 100},{cents % 100:02d}"


def _check_call_for_funds(system: ServiceProcesses, call: dict, funders: list[str]) -> None:  # type: ignore[type-arg]
    own = (Role.FUNDER, call["funder_id"])
    url = f"/funder-statements/{call['funder_statement_id']}"
    r = raw(system, f"{url}/csv", *own)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sum(int(row["amount_cents"]) for row in rows) == call["amount_cents"]
    assert len(rows) == call["statements"]
    other = next(f for f in funders if f != call["funder_id"])
    assert raw(system, f"{url}/csv", Role.FUNDER, other).status_code == 404
    pdf = raw(system, f"{url}/pdf", *own)
    assert pdf.status_code == 200 and ("Région", "ANCT", "Enedis")[
        funders.index(call["funder_id"])
    ] in pdf_text(pdf.content)


def _check_csv_and_pdf(system: ServiceProcesses, statement: dict) -> None:  # type: ignore[type-arg]
    own = (Role.SITE, statement["site_id"])
    r = raw(system, f"/statements/{statement['statement_id']}/csv", *own)
    assert r.status_code == 200, r.text
    assert r.headers["x-statement-digest"] == statement["digest"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert sum(int(row["amount_cents"]) for row in rows) == statement["total_cents"]
    assert [row["ref_id"] for row in rows] == [line["ref_id"] for line in statement["lines"]]
    pdf = raw(system, f"/statements/{statement['statement_id']}/pdf", *own)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert "Espace numérique " in pdf_text(pdf.content) and "SIRET" in pdf_text(pdf.content)


def _accepted(site: Api, body: dict[str, object]) -> dict[str, str | int] | None:
    r = site.raw_post("/redemptions", body)
    return r.json() if r.status_code == 201 else None
