"""A booklet as a printable PDF sheet: one cell per pass, its code printed and as a QR code."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

import qrcode
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from schemas import pass_codes as codes
from services.common.money import format_eur

CELL_HEIGHT = 52 * mm
MARGIN = 15 * mm


@dataclass(frozen=True)
class Sheet:
    programme: str
    territory: str
    booklet_id: str
    face_value_cents: int
    valid_until: date
    codes: list[str]


def qr_png(code: str) -> ImageReader:
    image = qrcode.make(code, box_size=4, border=1)
    buffer = io.BytesIO()
    image.save(buffer)
    buffer.seek(0)
    return ImageReader(buffer)


def render(sheet: Sheet) -> bytes:
    """The PDF bytes. Page compression is off so that the codes stay searchable as text."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, pageCompression=0, invariant=1)
    pdf.setTitle(f"Pass Numérique — carnet {sheet.booklet_id}")
    width, height = A4
    y = height - MARGIN
    pdf.setFont("Helvetica-Bold", 14)
    pdf.drawString(MARGIN, y - 14, f"{sheet.programme} — {sheet.territory}")
    pdf.setFont("Helvetica", 9)
    pdf.drawString(
        MARGIN, y - 28, f"Carnet {sheet.booklet_id} · valable jusqu'au {sheet.valid_until:%d/%m/%Y}"
    )
    y -= 40
    for code in sheet.codes:
        if y - CELL_HEIGHT < MARGIN:
            pdf.showPage()
            y = height - MARGIN
        pdf.rect(MARGIN, y - CELL_HEIGHT, width - 2 * MARGIN, CELL_HEIGHT - 3 * mm)
        pdf.drawImage(qr_png(code), MARGIN + 4 * mm, y - CELL_HEIGHT + 4 * mm, 40 * mm, 40 * mm)
        pdf.setFont("Helvetica-Bold", 20)
        pdf.drawString(MARGIN + 52 * mm, y - 22 * mm, codes.display(code))
        pdf.setFont("Helvetica", 10)
        pdf.drawString(
            MARGIN + 52 * mm, y - 32 * mm, f"Pass Numérique · {format_eur(sheet.face_value_cents)}"
        )
        pdf.drawString(MARGIN + 52 * mm, y - 39 * mm, "À présenter dans un lieu qualifié")
        y -= CELL_HEIGHT
    pdf.save()
    return buffer.getvalue()
