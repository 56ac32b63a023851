"""The call for funds as a one-page PDF (reportlab), attached to the funder's e-mail."""

from __future__ import annotations

import io

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from services.notifier.domain.messages import FunderLine, FunderStatementFacts, euros


def funder_statement_pdf(facts: FunderStatementFacts, funder_id: str, lines: list[FunderLine]) -> bytes:
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4, invariant=True)  # invariant: same bytes for same figures
    page.setTitle(f"Appel de fonds {facts.funder_statement_id}")
    y = A4[1] - 60
    page.setFont("Helvetica-Bold", 14)
    page.drawString(50, y, f"Pass Numérique — appel de fonds, période n° {facts.window_id}")
    page.setFont("Helvetica", 10)
    for text in (
        f"Appel de fonds : {facts.funder_statement_id}",
        f"Financeur : {funder_id}",
        f"Relevés de sites : {facts.statements}",
        f"Montant de votre quote-part : {euros(facts.amount_cents)}",
    ):
        y -= 18
        page.drawString(50, y, text)
    y -= 30
    page.setFont("Helvetica-Bold", 9)
    page.drawString(50, y, "Relevé")
    page.drawString(290, y, "Site")
    page.drawRightString(545, y, "Montant")
    page.setFont("Helvetica", 8)
    for line in sorted(lines, key=lambda x: str(x.statement_id)):
        y -= 13
        if y < 50:
            page.showPage()
            page.setFont("Helvetica", 8)
            y = A4[1] - 50
        page.drawString(50, y, str(line.statement_id))
        page.drawString(290, y, str(line.site_id))
        page.drawRightString(545, y, euros(line.amount_cents))
    page.save()
    return out.getvalue()
