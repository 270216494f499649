"""Server-rendered SVG charts: no JavaScript, no chart library, readable without CSS.

Each chart is an ``<svg role="img">`` with a ``<title>`` and a description
naming every value, so a screen reader gets the numbers a sighted reader sees;
the pages also show the same figures in a table. Geometry is computed with
:class:`~decimal.Decimal` from the exact values (money stays integer minor
units until it is formatted for a label).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from markupsafe import Markup

__all__ = ["Bar", "bar_chart", "column_chart"]

_WIDTH = 560
_LABEL = 130
_VALUE = 200
_ROW = 26
_BAR = 16


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its label, its value, how the value reads, and an optional limit."""

    label: str
    value: Decimal | int
    text: str
    limit: Decimal | int | None = None
    """Drawn as a marker; the bar turns to the warning colour at or beyond it."""


def _px(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.1"), ROUND_HALF_UP))


def _scale(bars: Sequence[Bar]) -> Decimal:
    top = max(
        [Decimal(b.value) for b in bars] + [Decimal(b.limit) for b in bars if b.limit is not None],
        default=Decimal(0),
    )
    return top if top > 0 else Decimal(1)


def bar_chart(title: str, bars: Sequence[Bar], *, empty: str = "No data yet.") -> Markup:
    """Horizontal bars, one per row, each labelled with its value."""
    if not bars:
        return Markup('<p class="chart-empty">{}</p>').format(empty)
    height = _ROW * len(bars) + 8
    room = Decimal(_WIDTH - _LABEL - _VALUE)
    top = _scale(bars)
    description = "; ".join(f"{b.label}: {b.text}" for b in bars)
    parts = [
        Markup(
            '<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
            'xmlns="http://www.w3.org/2000/svg"><title>{t}</title><desc>{d}</desc>'
        ).format(w=_WIDTH, h=height, t=title, d=description)
    ]
    for n, bar in enumerate(bars):
        y = Decimal(n * _ROW + 4)
        width = room * Decimal(max(bar.value, 0)) / top
        over = bar.limit is not None and bar.value >= bar.limit
        parts.append(
            Markup(
                '<text class="chart-label" x="{x}" y="{ty}">{label}</text>'
                '<rect class="chart-bar{cls}" x="{bx}" y="{y}" width="{bw}" height="{bh}"/>'
                '<text class="chart-value" x="{vx}" y="{ty}">{text}</text>'
            ).format(
                x=_LABEL - 6,
                ty=_px(y + 13),
                label=_clip(bar.label),
                cls=" chart-bar-over" if over else "",
                bx=_LABEL,
                y=_px(y),
                bw=_px(width),
                bh=_BAR,
                vx=_px(Decimal(_LABEL) + width + 6),
                text=bar.text,
            )
        )
        if bar.limit is not None:
            lx = Decimal(_LABEL) + room * Decimal(bar.limit) / top
            parts.append(
                Markup('<line class="chart-limit" x1="{x}" x2="{x}" y1="{y1}" y2="{y2}"/>').format(
                    x=_px(lx), y1=_px(y - 2), y2=_px(y + _BAR + 2)
                )
            )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def column_chart(
    title: str, columns: Sequence[tuple[str, int]], *, empty: str = "No data yet."
) -> Markup:
    """Vertical columns (a histogram): a label under each, its count above it."""
    if not columns or not any(count for _, count in columns):
        return Markup('<p class="chart-empty">{}</p>').format(empty)
    height = 180
    base = Decimal(height - 24)
    room = base - 20
    slot = Decimal(_WIDTH) / len(columns)
    top = Decimal(max(count for _, count in columns))
    description = "; ".join(f"{label}: {count}" for label, count in columns)
    parts = [
        Markup(
            '<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
            'xmlns="http://www.w3.org/2000/svg"><title>{t}</title><desc>{d}</desc>'
        ).format(w=_WIDTH, h=height, t=title, d=description)
    ]
    for n, (label, count) in enumerate(columns):
        x = slot * n
        tall = room * count / top
        parts.append(
            Markup(
                '<rect class="chart-bar" x="{x}" y="{y}" width="{cw}" height="{ch}"/>'
                '<text class="chart-value" text-anchor="middle" x="{mx}" y="{vy}">{count}</text>'
                '<text class="chart-axis" text-anchor="middle" x="{mx}" y="{ly}">{label}</text>'
            ).format(
                x=_px(x + 4),
                y=_px(base - tall),
                cw=_px(slot - 8),
                ch=_px(tall),
                mx=_px(x + slot / 2),
                vy=_px(base - tall - 4),
                count=count,
                ly=height - 6,
                label=label,
            )
        )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _clip(label: str, size: int = 18) -> str:
    return label if len(label) <= size else label[: size - 1] + "…"
