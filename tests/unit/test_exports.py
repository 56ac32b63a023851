"""Payout plans and the documents rendered from statements (no network: accounts are given)."""

from __future__ import annotations

import csv
import io
import os
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import sepaxml
import xmlschema

from services.clearing import exports
from services.clearing.domain import statements as core
from services.clearing.domain.payouts import CARRIED_OVER, HELD, plan_payouts
from services.clearing.issuer_client import PayoutAccount
from services.clearing.settings import PayerSettings
from tests.unit.factories import closed, redeemed, reversed_

os.environ.setdefault("PASSCLEAR_PROFILE", "dev")
SITE_A, SITE_B, SITE_C = (uuid.UUID(int=i) for i in (701, 702, 703))
XSD = Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.03.xsd"
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}


def window_two() -> list:  # type: ignore[type-arg]
    """Window 2: A redeems three, B one, C only reverses a window-1 redemption (negative)."""
    old = redeemed(99, SITE_C, window=1)
    return [
        core.statement(
            SITE_A, closed(2, 0), [core.ledger_line(redeemed(i, SITE_A, window=2)) for i in (1, 2, 3)]
        ),
        core.statement(SITE_B, closed(2, 0), [core.ledger_line(redeemed(4, SITE_B, window=2, cents=333))]),
        core.statement(SITE_C, closed(2, 0), [core.ledger_line(reversed_(old, 1, window=2))]),
    ]


def test_only_positive_statements_are_paid_and_the_rest_says_why() -> None:
    statements = window_two()
    plan = plan_payouts(2, statements, held={statements[1].statement_id})
    assert [(t.site_id, t.amount_cents) for t in plan.transfers] == [(SITE_A, 3000)]
    assert {(n.site_id, n.total_cents, n.reason) for n in plan.not_paid} == {
        (SITE_B, 333, HELD),
        (SITE_C, -1000, CARRIED_OVER),
    }
    assert plan.transfers[0].end_to_end_id == statements[0].statement_id.hex


def test_the_csv_holds_the_lines_the_digest_covers() -> None:
    st = window_two()[0]
    rows = list(csv.DictReader(io.StringIO(exports.statement_csv(st))))
    assert sum(int(r["amount_cents"]) for r in rows) == st.total_cents == 3000
    recomputed = core.digest(
        {
            "kind": r["kind"],
            "ref_id": r["ref_id"],
            "pass_id": r["pass_id"],
            "programme_id": r["programme_id"],
            "amount_cents": int(r["amount_cents"]),
        }
        for r in rows
    )
    assert recomputed == st.digest


def test_the_pdf_is_a_pdf_naming_the_statement() -> None:
    st = window_two()[2]
    pdf = exports.statement_pdf(st, site_name="EPN de Dole")
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-16:]
    assert str(st.statement_id).encode() in pdf  # the document's title metadata


def test_the_sepa_file_validates_against_the_iso_20022_xsd_and_pays_to_the_cent() -> None:
    statements = window_two()
    plan = plan_payouts(2, statements)
    accounts = {
        SITE_A: PayoutAccount("EPN de Dole", "FR7630004000030001234567897", "BNPAFRPP"),
        SITE_B: PayoutAccount("Médiathèque d'Auxerre", "FR1420041010050500013M02606", "PSSTFRPPXXX"),
    }
    xml = exports.sepa_credit_transfers(
        plan, accounts, payer=PayerSettings(), execution_date=date(2026, 12, 31)
    )
    schema = xmlschema.XMLSchema(str(XSD))
    schema.validate(xml.decode())
    doc = schema.to_dict(xml.decode())
    txs = [tx for pmt in doc["CstmrCdtTrfInitn"]["PmtInf"] for tx in pmt["CdtTrfTxInf"]]
    paid = {
        tx["RmtInf"]["Ustrd"][0]: (tx["CdtrAcct"]["Id"]["IBAN"], Decimal(str(tx["Amt"]["InstdAmt"]["$"])))
        for tx in txs
    }
    assert paid == {
        f"Pass Numerique releve {statements[0].statement_id}": (
            "FR7630004000030001234567897",
            Decimal("30.00"),
        ),
        f"Pass Numerique releve {statements[1].statement_id}": (
            "FR1420041010050500013M02606",
            Decimal("3.33"),
        ),
    }
    assert Decimal(str(doc["CstmrCdtTrfInitn"]["GrpHdr"]["CtrlSum"])) == Decimal("33.33")
