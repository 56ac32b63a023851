"""Payout plans and the documents rendered from statements (no network: accounts are given)."""

from __future__ import annotations

import csv
import io
import os
import re
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import sepaxml
import xmlschema

from schemas.events import FunderStatementIssued
from services.clearing import exports
from services.clearing.domain import statements as core
from services.clearing.domain.coverage import StatementDue
from services.clearing.domain.netting import net
from services.clearing.domain.payouts import CARRIED_OVER, HELD, FunderLine, Names, plan_payouts
from services.clearing.domain.statements import FunderPart
from services.clearing.issuer_client import PayoutAccount
from services.clearing.settings import PayerSettings
from services.common.money import format_eur
from tests.pdf_text import pdf_text
from tests.unit.factories import PROGRAMME, REGION, closed, redeemed, reversed_

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


def test_the_pdf_names_the_site_its_siret_the_period_and_the_funders() -> None:
    st = window_two()[2]
    names = Names(
        sites={SITE_C: ("Espace public numérique de Dole", "73282932000074")},
        funders={REGION: "Région Bourgogne-Franche-Comté"},
        programmes={PROGRAMME: "Pass Numérique BFC 2026"},
    )
    pdf = exports.statement_pdf(st, names=names)
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-16:]
    assert str(st.statement_id).encode() in pdf  # the document's title metadata
    text = pdf_text(pdf)
    for shown in (
        "Espace public numérique de Dole",
        "732 829 320 00074",
        "du 01/12/2026 01:00 au 31/12/2026 01:00 (heure de Paris)",  # window 2: T0 + 30 d → + 60 d, UTC+1
        "Région Bourgogne-Franche-Comté",
        "Pass Numérique BFC 2026",
        "-10,00 €",
    ):
        assert shown in text, shown
    # Not (yet) known to clearing: the ids stand in, nothing is invented.
    bare = pdf_text(exports.statement_pdf(st))
    assert str(SITE_C) in bare and "SIRET inconnu" in bare and "Dole" not in bare


def funder_statement() -> tuple[FunderStatementIssued, list[FunderLine]]:
    statements = window_two()
    (fs, *_) = core.funder_statements(2, statements)
    lines = [
        FunderLine(st.statement_id, st.site_id, fa.amount_cents)
        for st in reversed(statements)
        for fa in st.funder_amounts
        if fa.funder_id == fs.funder_id
    ]
    return fs, lines


def test_the_call_for_funds_csv_holds_one_row_per_site_statement_and_its_digest() -> None:
    fs, lines = funder_statement()
    rows = list(csv.DictReader(io.StringIO(exports.funder_statement_csv(fs, lines))))
    assert len(rows) == fs.statements == 3
    assert {r["funder_statement_id"] for r in rows} == {str(fs.funder_statement_id)}
    assert sum(int(r["amount_cents"]) for r in rows) == fs.amount_cents
    recomputed = core.digest(
        {"statement_id": r["statement_id"], "amount_cents": int(r["amount_cents"])} for r in rows
    )
    assert recomputed == fs.digest


def test_the_call_for_funds_pdf_names_the_funder_the_period_and_each_site() -> None:
    fs, lines = funder_statement()
    names = Names(
        sites={SITE_A: ("EPN de Dole", "73282932000074")},
        funders={fs.funder_id: "Région Bourgogne-Franche-Comté"},
        programmes={PROGRAMME: "Pass Numérique BFC 2026"},
    )
    opened, closed_at = closed(2, 0).opened_at, closed(2, 0).closed_at
    pdf = exports.funder_statement_pdf(
        fs, lines, period=(opened, closed_at), programmes=[(PROGRAMME, fs.amount_cents)], names=names
    )
    text = pdf_text(pdf)
    for shown in (
        "Appel de fonds",
        str(fs.funder_statement_id),
        "Région Bourgogne-Franche-Comté",
        "du 01/12/2026 01:00 au 31/12/2026 01:00 (heure de Paris)",
        "Pass Numérique BFC 2026",
        "EPN de Dole",
        "732 829 320 00074",
        str(SITE_B),  # a site clearing has no name for: its id
        format_eur(fs.amount_cents),
    ):
        assert shown in text, shown


def test_a_netted_transfer_pays_the_net_and_says_so_in_the_remittance() -> None:
    statements = window_two()
    earlier = core.statement(
        SITE_A, closed(1, 0), [core.ledger_line(reversed_(redeemed(98, SITE_A, window=1), 2, window=1))]
    )
    dues = [
        StatementDue(s.statement_id, s.window_id, s.site_id, s.total_cents, parts)
        for s in (earlier, *statements)
        for parts in [tuple(FunderPart(PROGRAMME, fa.funder_id, fa.amount_cents) for fa in s.funder_amounts)]
    ]
    plan = plan_payouts(2, statements, netting=net(dues))
    (a,) = [t for t in plan.transfers if t.site_id == SITE_A]
    assert (a.gross_cents, a.amount_cents) == (3000, 2000)
    assert [(d.settles, d.amount_cents) for d in a.deductions] == [(earlier.statement_id, 1000)]
    accounts = {
        SITE_A: PayoutAccount("EPN de Dole", "FR7630004000030001234567897", "BNPAFRPP"),
        SITE_B: PayoutAccount("Médiathèque d'Auxerre", "FR1420041010050500013M02606", "PSSTFRPPXXX"),
    }
    xml = exports.sepa_credit_transfers(
        plan, accounts, payer=PayerSettings(), execution_date=date(2026, 12, 31)
    )
    doc = xmlschema.XMLSchema(str(XSD)).to_dict(xml.decode())
    paid = {
        tx["CdtrAcct"]["Id"]["IBAN"]: (Decimal(str(tx["Amt"]["InstdAmt"]["$"])), tx["RmtInf"]["Ustrd"][0])
        for pmt in doc["CstmrCdtTrfInitn"]["PmtInf"]
        for tx in pmt["CdtTrfTxInf"]
    }
    assert paid["FR7630004000030001234567897"] == (
        Decimal("20.00"),
        f"Pass Numerique releve {statements[0].statement_id} - deduit 10,00 EUR solde negatif anterieur",
    )


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


def test_amounts_of_a_thousand_euros_and_more_print_grouped_in_the_pdf_fonts() -> None:
    lines = [core.ledger_line(redeemed(i, SITE_A, window=2)) for i in range(150)]
    text = pdf_text(exports.statement_pdf(core.statement(SITE_A, closed(2, 0), lines)))
    # U+202F is not in the PDF's WinAnsi fonts: it printed as a stray glyph between the digits.
    assert re.search("Montant dû 1[ \u00a0]500,00 €", text), text[:400]
