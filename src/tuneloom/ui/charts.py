"""Small inline SVG charts rendered on the server (no chart library, nothing fetched by the browser).

Series differ by dash pattern and marker as well as colour, and every chart carries a text legend
and a `<title>`, so they read without colour and with a screen reader.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

_W, _H, _PAD = 560, 220, 40
_STYLES = [("#1f5fa8", ""), ("#b3471d", "6 3"), ("#2e7d32", "2 3"), ("#6a3d9a", "8 3 2 3"), ("#444", "1 2")]


def _scale(values: list[float], lo_px: float, hi_px: float) -> tuple[float, float, Callable[[float], float]]:
    lo, hi = min(values), max(values)
    if hi == lo:  # one value: centre it
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi, lambda v: lo_px + (v - lo) / (hi - lo) * (hi_px - lo_px)


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], x_label: str = "step") -> str:
    """Overlaid lines, one per series name; an empty dict gives a short 'no points yet' note."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return f'<p class="muted">{escape(title)}: no points yet.</p>'
    x0, x1, sx = _scale([p[0] for p in points], _PAD, _W - 10)
    y0, y1, sy = _scale([p[1] for p in points], _H - _PAD, 10)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 10}" y2="{_H - _PAD}" stroke="#888"/>',
        f'<line x1="{_PAD}" y1="10" x2="{_PAD}" y2="{_H - _PAD}" stroke="#888"/>',
        f'<text x="{_PAD}" y="{_H - 22}" font-size="11">{x0:g}</text>',
        f'<text x="{_W - 40}" y="{_H - 22}" font-size="11">{x1:g} {escape(x_label)}</text>',
        f'<text x="2" y="{_H - _PAD}" font-size="11">{y0:.4g}</text><text x="2" y="18" font-size="11">{y1:.4g}</text>',
    ]
    legend = []
    for i, (name, pts) in enumerate(series.items()):
        colour, dash = _STYLES[i % len(_STYLES)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" points="{path}">'
            f"<title>{escape(name)}</title></polyline>"
        )
        if len(pts) <= 50:  # markers: a single point is visible too
            parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in pts]
        last = pts[-1]
        legend.append(f"{'─ ─' if dash else '───'} {i + 1}. {escape(name)} (last {last[1]:.4g} at {last[0]:g})")
        parts.append(f'<text x="{sx(last[0]) - 4:.1f}" y="{sy(last[1]) - 4:.1f}" font-size="11">{i + 1}</text>')
    parts.append("</svg>")
    return "".join(parts) + '<ul class="legend">' + "".join(f"<li>{item}</li>" for item in legend) + "</ul>"


def bar_chart(title: str, bars: dict[str, float]) -> str:
    """Horizontal bars with their values written out."""
    if not bars:
        return f'<p class="muted">{escape(title)}: nothing to show.</p>'
    top = max(bars.values()) or 1.0
    height = 22 * len(bars) + 10
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (name, value) in enumerate(bars.items()):
        width = max(1.0, value / top * (_W - 260))
        y = 6 + 22 * i
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="12">{escape(name[:28])}</text>'
            f'<rect x="180" y="{y}" width="{width:.1f}" height="16" fill="#1f5fa8"/>'
            f'<text x="{186 + width:.1f}" y="{y + 13}" font-size="12">{value:g}</text>'
        )
    return "".join(parts) + "</svg>"
