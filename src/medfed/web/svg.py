"""Small inline SVG charts for the report: line charts over rounds and grouped bars.

Drawn here rather than by a plotting library so that the report is one HTML file with no
external request, no script and no font file, and so that the same input always gives the same
bytes (a report attached to an ethics submission can be compared by hash). Every chart carries a
``<title>`` and ``<desc>`` for screen readers; the report prints a table of the same numbers
beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
"""Okabe-Ito: distinguishable with the common colour-vision deficiencies."""
WIDTH, HEIGHT = 900, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 290, 34, 46


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[Sequence[float]]
    """``[x, y]`` pairs."""
    dashed: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (Heckbert, "Nice numbers for graph labels",
    Graphics Gems, 1990)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high - low <= 1e-9 * max(1.0, abs(low)):  # a flat series: a unit band around it
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    digits = 6 - math.floor(math.log10(step))  # rounding moves a tick by under 1e-6 of a step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, digits))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, digits))
    # rounding may move an end tick past the data by a hair (a subnormal low, say): clamp it
    ticks[0], ticks[-1] = min(ticks[0], low), max(ticks[-1], high)
    return ticks


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def line_chart(
    series: Sequence[Series],
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
) -> str:
    """One line per series over integer x (rounds); points as dots so a single round shows."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return f'<p class="none">{escape(title)}: no data.</p>'
    xs = [p[0] for s in drawn for p in s.points]
    ys = [p[1] for s in drawn for p in s.points]
    x_ticks = (
        nice_ticks(min(xs), max(xs)) if max(xs) > min(xs) else [min(xs) - 1, min(xs), min(xs) + 1]
    )
    y_ticks = nice_ticks(*(y_range or (min(ys), max(ys))))
    frame = _Frame(x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1])
    parts = [_open(title, f"{y_label} per {x_label}: " + ", ".join(s.label for s in drawn))]
    parts += _axes(frame, x_ticks, y_ticks, x_label, y_label)
    for i, s in enumerate(drawn):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{frame.x(p[0]):.1f},{frame.y(p[1]):.1f}" for p in s.points)
        dash = ' stroke-dasharray="6 3"' if s.dashed else ""
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{coords}"/>'
        )
        for p in s.points:
            parts.append(
                f'<circle cx="{frame.x(p[0]):.1f}" cy="{frame.y(p[1]):.1f}" r="3" fill="{color}">'
                f"<title>{escape(s.label)}, {escape(x_label)} {_fmt(p[0])}: {p[1]:.4g}</title>"
                "</circle>"
            )
    parts += _legend([s.label for s in drawn])
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(categories: Sequence[str], groups: Sequence[Series], title: str, y_label: str) -> str:
    """Grouped bars: one group of bars per category, one bar per series (``points[i][1]`` is
    the value for ``categories[i]``)."""
    if not categories or not groups:
        return f'<p class="none">{escape(title)}: no data.</p>'
    values = [p[1] for g in groups for p in g.points]
    y_ticks = nice_ticks(min(0.0, *values), max(values) if values else 1.0)
    frame = _Frame(0, len(categories), y_ticks[0], y_ticks[-1])
    parts = [_open(title, f"{y_label} for " + ", ".join(categories))]
    parts += _axes(frame, [], y_ticks, "", y_label)
    band = frame.width / len(categories)
    bar = band * 0.8 / len(groups)
    for c, name in enumerate(categories):
        x0 = LEFT + c * band + band * 0.1
        parts.append(
            f'<text x="{LEFT + (c + 0.5) * band:.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle" class="tick">{escape(name)}</text>'
        )
        for g, group in enumerate(groups):
            if c >= len(group.points):
                continue
            value = group.points[c][1]
            top, base = frame.y(max(value, 0.0)), frame.y(min(value, 0.0))
            parts.append(
                f'<rect x="{x0 + g * bar:.1f}" y="{top:.1f}" width="{bar * 0.92:.1f}" '
                f'height="{max(base - top, 0.5):.1f}" fill="{PALETTE[g % len(PALETTE)]}">'
                f"<title>{escape(group.label)}, {escape(name)}: {value:.4g}</title></rect>"
            )
    parts += _legend([g.label for g in groups])
    parts.append("</svg>")
    return "\n".join(parts)


@dataclass(frozen=True)
class _Frame:
    x0: float
    x1: float
    y0: float
    y1: float

    @property
    def width(self) -> float:
        return WIDTH - LEFT - RIGHT

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return LEFT + (value - self.x0) / span * self.width

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return HEIGHT - BOTTOM - (value - self.y0) / span * (HEIGHT - TOP - BOTTOM)


def _open(title: str, desc: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" class="chart">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
        f'<text x="{LEFT}" y="20" class="chart-title">{escape(title)}</text>'
    )


def _axes(
    frame: _Frame, x_ticks: Sequence[float], y_ticks: Sequence[float], x_label: str, y_label: str
) -> list[str]:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    parts = [f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" class="axis"/>']  # fmt: skip
    for t in y_ticks:
        y = frame.y(t)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>'
        )
    for t in x_ticks:
        if t != int(t):
            continue
        x = frame.x(t)
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" class="tick">'
            f"{_fmt(t)}</text>"
        )
    if x_label:
        parts.append(
            f'<text x="{(LEFT + right) / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
            f'class="label">{escape(x_label)}</text>'
        )
    parts.append(
        f'<text transform="translate(16 {(TOP + bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" class="label">{escape(y_label)}</text>'
    )
    return parts


def _legend(labels: Sequence[str]) -> list[str]:
    x = WIDTH - RIGHT + 14
    parts = []
    for i, label in enumerate(labels):
        y = TOP + 6 + i * 18
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + 18}" y="{y + 1}" class="legend">{escape(label)}</text>'
        )
    return parts
