"""What sites and funders read: French e-mails (plain text and HTML). Pure: takes figures,
returns text. The documents they carry (statements, calls for funds) are clearing's."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date

from services.common.money import format_eur


def french_date(day: date) -> str:
    return day.strftime("%d/%m/%Y")


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class SiteStatementFacts:
    statement_id: str
    window_id: int
    period_start: date
    period_end: date
    amount_cents: int
    passes: int
    reversals: int
    expected_payout_date: date


def site_statement_email(f: SiteStatementFacts, *, pdf_attached: bool = True) -> Email:
    subject = f"Pass Numérique : relevé de compensation n° {f.window_id} — {format_eur(f.amount_cents)}"
    rows = [
        ("Relevé", f.statement_id),
        ("Période", f"du {french_date(f.period_start)} au {french_date(f.period_end)}"),
        ("Pass encaissés", str(f.passes)),
        ("Annulations", str(f.reversals)),
        ("Montant à vous verser", format_eur(f.amount_cents)),
        ("Date de virement prévue", french_date(f.expected_payout_date)),
    ]
    intro = "Bonjour,\n\nVotre relevé de compensation Pass Numérique est émis."
    attached = (
        "Le relevé détaillé est joint en PDF."
        if pdf_attached
        else "Le relevé détaillé n'a pas pu être joint en PDF : il reste disponible auprès du service "
        "de compensation (relevé " + f.statement_id + ")."
    )
    outro = f"{attached}\n\nLe virement SEPA sera émis à la date prévue.\n\nCordialement,\nL'équipe Pass Numérique"
    return Email(subject, _text(intro, rows, outro), _html(intro, rows, outro))


@dataclass(frozen=True)
class ReversalFacts:
    reversal_id: str
    redemption_id: str
    pass_id: str
    amount_cents: int  # the deduction, positive: the pass's face value
    redemption_window_id: int
    deducted_from_window_id: int
    reason: str
    reversed_on: date


def reversal_email(f: ReversalFacts) -> Email:
    """A reversal made after the redemption's window closed: already in an issued statement, so
    the amount comes off the next statement."""
    subject = (
        f"Pass Numérique : annulation d'un encaissement — {format_eur(-f.amount_cents)} "
        f"sur la période n° {f.deducted_from_window_id}"
    )
    rows = [
        ("Annulation", f.reversal_id),
        ("Encaissement annulé", f.redemption_id),
        ("Pass", f.pass_id),
        ("Date de l'annulation", french_date(f.reversed_on)),
        ("Motif", f.reason),
        ("Relevé où figurait l'encaissement", f"période n° {f.redemption_window_id} (close)"),
        ("Montant déduit", format_eur(-f.amount_cents)),
        ("Déduit du relevé", f"période n° {f.deducted_from_window_id}"),
    ]
    intro = (
        "Bonjour,\n\nUn encaissement figurant sur un relevé de compensation déjà émis a été annulé. "
        "Son montant sera déduit de votre prochain relevé."
    )
    outro = "Aucune action n'est attendue de votre part.\n\nCordialement,\nL'équipe Pass Numérique"
    return Email(subject, _text(intro, rows, outro), _html(intro, rows, outro))


@dataclass(frozen=True)
class FunderStatementFacts:
    funder_statement_id: str
    window_id: int
    amount_cents: int
    statements: int


def funder_statement_email(f: FunderStatementFacts, *, attached: tuple[str, ...] = ("CSV", "PDF")) -> Email:
    """`attached`: the formats of clearing's call-for-funds documents the e-mail carries."""
    subject = f"Pass Numérique : appel de fonds, période n° {f.window_id} — {format_eur(f.amount_cents)}"
    rows = [
        ("Appel de fonds", f.funder_statement_id),
        ("Période de compensation", str(f.window_id)),
        ("Relevés de sites", str(f.statements)),
        ("Montant de votre quote-part", format_eur(f.amount_cents)),
    ]
    intro = "Bonjour,\n\nVoici votre appel de fonds pour la période de compensation close."
    outro = f"{_detail(f, attached)}\n\nCordialement,\nL'équipe Pass Numérique"
    return Email(subject, _text(intro, rows, outro), _html(intro, rows, outro))


def _detail(f: FunderStatementFacts, attached: tuple[str, ...]) -> str:
    missing = [x for x in ("CSV", "PDF") if x not in attached]
    if not missing:
        return "Le détail par relevé de site est joint (CSV et PDF)."
    where = (
        "il reste disponible auprès du service de compensation "
        f"(appel de fonds {f.funder_statement_id}, en CSV et en PDF)."
    )
    if not attached:
        return f"Le détail par relevé de site n'a pas pu être joint : {where}"
    return f"Le détail par relevé de site est joint en {attached[0]} ; le {missing[0]} n'a pas pu être joint : {where}"


def _text(intro: str, rows: list[tuple[str, str]], outro: str) -> str:
    table = "\n".join(f"  {label} : {value}" for label, value in rows)
    return f"{intro}\n\n{table}\n\n{outro}\n"


def _html(intro: str, rows: list[tuple[str, str]], outro: str) -> str:
    cells = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in intro.split("\n\n"))
    closing = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in outro.split("\n\n"))
    return f"<html lang='fr'><body>{paragraphs}<table>{cells}</table>{closing}</body></html>"
