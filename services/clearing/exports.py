"""Documents rendered from statements: CSV and PDF per statement and per call for funds,
pain.001 per window.

What goes in them is decided by the pure core (domain.payouts); this module only renders."""

from __future__ import annotations

import csv
import functools
import io
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sepaxml
from lxml import etree
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from sepaxml import SepaTransfer
from stdnum.fr import siret as fr_siret

from schemas.events import FunderStatementIssued, StatementIssued
from services.clearing.domain.payouts import (
    CSV_HEADER,
    FUNDER_CSV_HEADER,
    FunderLine,
    Names,
    PayoutPlan,
    csv_rows,
    funder_csv_rows,
    funder_lines,
    programme_totals,
)
from services.clearing.issuer_client import PayoutAccount
from services.clearing.settings import PayerSettings
from services.common.money import format_eur

SEPA_SCHEMA = "pain.001.001.03"
PARIS = ZoneInfo("Europe/Paris")


def statement_csv(st: StatementIssued) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(csv_rows(st))
    return out.getvalue()


def statement_pdf(st: StatementIssued, *, names: Names | None = None) -> bytes:
    """A document a site's public cash office can file: who (name and SIRET), which period,
    what, how much, who pays."""
    names = names or Names()
    styles = getSampleStyleSheet()
    heading = f"Relevé de compensation — Pass Numérique — période n° {st.window_id}"
    siret = names.siret(st.site_id)
    story: list[object] = [
        Paragraph(heading, styles["Title"]),
        _grid(
            [
                ["Relevé", str(st.statement_id)],
                ["Lieu (structure remboursée)", names.site(st.site_id)],
                ["SIRET", fr_siret.format(siret) if siret else "inconnu"],
                ["Identifiant du lieu", str(st.site_id)],
                ["Période", _period(st.period_start, st.period_end)],
                ["Encaissements / annulations", f"{st.redemptions} / {st.reversals}"],
                ["Montant dû", _eur(st.total_cents)],
                ["Versement prévu le", f"{st.expected_payout_date:%d/%m/%Y}"],
                ["Empreinte SHA-256 des lignes", st.digest],
            ]
        ),
        Spacer(1, 6 * mm),
        Paragraph("Par dispositif", styles["Heading2"]),
        _grid(
            [["Dispositif", "Encaissements", "Annulations", "Montant"]]
            + [
                [
                    names.programme(p.programme_id),
                    str(p.redemptions),
                    str(p.reversals),
                    _eur(p.total_cents),
                ]
                for p in programme_totals(st)
            ],
            header=True,
        ),
        Spacer(1, 6 * mm),
        Paragraph("Répartition entre financeurs", styles["Heading2"]),
        _grid(
            [["Financeur", "Quote-part"]]
            + [[names.funder(f.funder_id), _eur(f.amount_cents)] for f in st.funder_amounts],
            header=True,
        ),
        Spacer(1, 6 * mm),
        Paragraph("Lignes", styles["Heading2"]),
        _grid(
            [["Nature", "Référence", "Pass", "Montant"]]
            + [
                [
                    "encaissement" if line.kind == "redemption" else "annulation",
                    str(line.ref_id),
                    str(line.pass_id),
                    _eur(line.amount_cents),
                ]
                for line in st.lines
            ],
            header=True,
            long=True,
            font_size=7,
        ),
    ]
    return _build(f"Relevé de compensation {st.statement_id}", story)


def funder_statement_csv(fs: FunderStatementIssued, lines: list[FunderLine]) -> str:
    """The call for funds: the funder's share of each site statement, in the digest's order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FUNDER_CSV_HEADER)
    writer.writerows(funder_csv_rows(fs, lines))
    return out.getvalue()


def funder_statement_pdf(
    fs: FunderStatementIssued,
    lines: list[FunderLine],
    *,
    period: tuple[datetime, datetime] | None,
    programmes: list[tuple[uuid.UUID, int]],
    names: Names | None = None,
) -> bytes:
    """The call for funds as a document the funder's finance team can file and pay from."""
    names = names or Names()
    styles = getSampleStyleSheet()
    story: list[object] = [
        Paragraph(f"Appel de fonds — Pass Numérique — période n° {fs.window_id}", styles["Title"]),
        _grid(
            [
                ["Appel de fonds", str(fs.funder_statement_id)],
                ["Financeur", names.funder(fs.funder_id)],
                ["Identifiant du financeur", str(fs.funder_id)],
                ["Période", _period(*period) if period else f"n° {fs.window_id}"],
                ["Relevés de sites", str(fs.statements)],
                ["Montant de la quote-part", _eur(fs.amount_cents)],
                ["Empreinte SHA-256 des relevés", fs.digest],
            ]
        ),
        Spacer(1, 6 * mm),
        Paragraph("Par dispositif", styles["Heading2"]),
        _grid(
            [["Dispositif", "Quote-part"]] + [[names.programme(p), _eur(cents)] for p, cents in programmes],
            header=True,
        ),
        Spacer(1, 6 * mm),
        Paragraph("Par relevé de site", styles["Heading2"]),
        _grid(
            [["Lieu", "SIRET", "Relevé", "Quote-part"]]
            + [
                [
                    names.site(line.site_id),
                    fr_siret.format(siret) if (siret := names.siret(line.site_id)) else "",
                    str(line.statement_id),
                    _eur(line.amount_cents),
                ]
                for line in funder_lines(lines)
            ],
            header=True,
            long=True,
            font_size=7,
        ),
    ]
    return _build(f"Appel de fonds {fs.funder_statement_id}", story)


def _eur(cents: int) -> str:
    # The PDF's standard fonts are WinAnsi: no narrow no-break space (U+202F), which would print
    # as a stray glyph; the no-break space they do have keeps the thousands grouped.
    return format_eur(cents).replace("\u202f", "\u00a0")


def _period(start: datetime, end: datetime) -> str:
    """In French local time, as the window's dates are read in France."""
    s, e = start.astimezone(PARIS), end.astimezone(PARIS)
    return f"du {s:%d/%m/%Y %H:%M} au {e:%d/%m/%Y %H:%M} (heure de Paris)"


def _build(title: str, story: list[object]) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=A4, title=title, author="passclear", leftMargin=15 * mm, rightMargin=15 * mm
    )
    doc.build(story)
    return buffer.getvalue()


def _grid(rows: list[list[str]], *, header: bool = False, long: bool = False, font_size: int = 9) -> Table:
    table = (LongTable if long else Table)(rows, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [
        ("FONTSIZE", (0, 0), (-1, -1), font_size),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey))
    table.setStyle(TableStyle(style))
    return table


def sepa_credit_transfers(
    plan: PayoutPlan,
    accounts: Mapping[uuid.UUID, PayoutAccount],
    *,
    payer: PayerSettings,
    execution_date: date,
) -> bytes:
    """The window's pain.001 file: one transfer per paid statement, its id as remittance.

    Validated against the ISO 20022 XSD sepaxml ships, with libxml2 (lxml): sepaxml's own
    validation (pure-Python xmlschema) takes ~10 s for 10,000 transfers, libxml2 well under one."""
    sepa = SepaTransfer(
        {"name": payer.name, "IBAN": payer.iban, "BIC": payer.bic, "batch": True, "currency": "EUR"},
        schema=SEPA_SCHEMA,
    )
    for transfer in plan.transfers:
        account = accounts[transfer.site_id]
        sepa.add_payment(
            {
                "name": account.name,
                "IBAN": account.iban,
                "BIC": account.bic,
                "amount": transfer.amount_cents,
                "execution_date": execution_date,
                "description": transfer.remittance,
                "endtoend_id": transfer.end_to_end_id,
            }
        )
    xml: bytes = sepa.export(validate=False)
    schema = _pain001_schema()
    if not schema.validate(etree.fromstring(xml)):
        raise ValueError(f"pain.001 file does not validate: {schema.error_log.last_error}")
    return xml


@functools.cache
def _pain001_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(Path(sepaxml.__file__).parent / "schemas" / f"{SEPA_SCHEMA}.xsd")))
