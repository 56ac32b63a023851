"""The text shown on a PDF page, enough for tests: reportlab writes it as ASCII85 + Flate
content streams of `(…) Tj` strings in WinAnsi-encoded standard fonts."""

from __future__ import annotations

import base64
import re
import zlib

_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\n?endstream", re.S)
_STRING = re.compile(rb"\(((?:\\.|[^\\)])*)\)")


def pdf_text(pdf: bytes) -> str:
    shown: list[str] = []
    for raw in _STREAM.findall(pdf):
        data = raw.strip()
        try:
            if data.endswith(b"~>"):  # reportlab's /ASCII85Decode before /FlateDecode
                data = base64.a85decode(data[:-2])
            content = zlib.decompress(data)
        except (ValueError, zlib.error):
            continue
        for s in _STRING.findall(content):
            shown.append(_unescape(s).decode("cp1252", errors="replace"))
    return " ".join(shown)


def _unescape(s: bytes) -> bytes:
    out = re.sub(rb"\\([0-7]{1,3})", lambda m: bytes([int(m.group(1), 8)]), s)
    return re.sub(rb"\\(.)", rb"\1", out)
