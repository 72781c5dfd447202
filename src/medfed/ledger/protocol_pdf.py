"""The protocol appendix as a PDF, for the Data Use Agreement's signed copy.

The same document as the HTML page (one Markdown source, :func:`protocol_document.html_body`),
laid out by fpdf2's HTML renderer. The font is DejaVu Sans from matplotlib's own data (a medfed
dependency): it has every character the document uses (ε, δ, ≥) and nothing is downloaded. fpdf2
sets a table cell's text in one style, so code spans inside cells are set as plain text. Every
page's footer carries the protocol's SHA-256, so a single page still names what was approved.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from medfed.ledger.protocol_document import ModelSummary, html_body

if TYPE_CHECKING:
    from medfed.coordinator.spec import StudySpec

_FAMILY = "DejaVu Sans"
_INLINE = re.compile(r"</?(?:code|em|strong|a)\b[^>]*>")
_CELL = re.compile(r"<(t[dh])>(.*?)</\1>", re.DOTALL)
_EMPTY_HEAD = re.compile(r"<thead>\s*<tr>\s*(?:<th>\s*</th>\s*)+</tr>\s*</thead>", re.DOTALL)


def render_pdf(spec: StudySpec, model: ModelSummary, consortium: str = "") -> bytes:
    """The protocol appendix as PDF bytes (title, subject and every page's footer name the
    protocol's SHA-256)."""
    from fpdf import FPDF

    sha = spec.sha256

    class _Document(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(_FAMILY, size=7)
            self.cell(0, 8, f"protocol SHA-256 {sha} · page {self.page_no()}/{{nb}}", align="C")

    pdf = _Document(format="A4")
    for style, weight in (("", "normal"), ("B", "bold"), ("I", "normal"), ("BI", "bold")):
        pdf.add_font(_FAMILY, style, _font_file(weight))
    pdf.set_title(f"Study protocol: {spec.name}")
    pdf.set_subject(f"protocol SHA-256 {sha}")
    pdf.set_creator("medfed study protocol")
    pdf.set_font(_FAMILY, size=10)
    pdf.add_page()
    pdf.write_html(_for_fpdf(html_body(spec, model, consortium)), font_family=_FAMILY)
    return bytes(pdf.output())


def _for_fpdf(body: str) -> str:
    """What fpdf2's renderer takes: one style per table cell, cells aligned left, no empty
    header row (the document's key-value tables have none)."""
    body = _EMPTY_HEAD.sub("", body)
    return _CELL.sub(lambda m: f'<{m[1]} align="left">{_INLINE.sub("", m[2])}</{m[1]}>', body)


def _font_file(weight: str) -> str:
    from matplotlib import font_manager

    wanted = font_manager.FontProperties(family=_FAMILY, weight=weight)
    return str(font_manager.findfont(wanted, fallback_to_default=False))
