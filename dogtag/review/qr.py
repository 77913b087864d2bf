"""The review page's network address as a QR code, for a phone's camera: an SVG for the page and
block characters for the terminal (segno, pure Python, from the `review` extra)."""

from __future__ import annotations

import io

import segno

BORDER = 2  # modules of quiet zone: enough for phone cameras, small in a terminal


def qr_svg(address: str) -> bytes:
    """An SVG image of the QR code of `address` (black on white, 6 px a module)."""
    out = io.BytesIO()
    segno.make(address, error="m").save(out, kind="svg", scale=6, border=BORDER, xmldecl=False, dark="#000",
                                        light="#fff", title="Dogtag review address")
    return out.getvalue()


def qr_text(address: str) -> str:
    """The QR code of `address` drawn with half blocks (two modules a character), for a terminal."""
    out = io.StringIO()
    segno.make(address, error="m").terminal(out=out, compact=True, border=BORDER)
    return out.getvalue()
