"""Line charts drawn on the server as inline SVG: no script, nothing to vendor, and a page
that shows its figures even to a browser without JavaScript."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM = 560, 160, 44, 20


def line_chart(title: str, timestamps: Sequence[int], values: Sequence[float | None],
               unit: str = "", ceiling: float | None = None) -> Markup:
    """One series; gaps (None) break the line. `ceiling`: the top of the scale (100 for a
    percentage), else the series' own maximum."""
    points = [(t, v) for t, v in zip(timestamps, values, strict=False) if v is not None]
    if not points:
        return Markup('<figure class="chart"><figcaption>{}</figcaption>'
                      '<p class="muted">No readings yet.</p></figure>').format(title)
    t0, t1 = timestamps[0], max(timestamps[-1], timestamps[0] + 1)
    top = ceiling or max(v for _, v in points) * 1.15 or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - 6, HEIGHT - PAD_BOTTOM - 8

    def x(t: int) -> float:
        return PAD_LEFT + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return 8 + plot_h - min(v, top) / top * plot_h

    paths: list[list[str]] = []
    current: list[str] = []
    for t, v in zip(timestamps, values, strict=False):
        if v is None:
            if current:
                paths.append(current)
            current = []
        else:
            current.append(f"{x(t):.1f},{y(v):.1f}")
    if current:
        paths.append(current)
    lines = "".join(f'<polyline points="{" ".join(p)}"/>' for p in paths)
    grid = "".join(
        f'<line x1="{PAD_LEFT}" x2="{WIDTH - 6}" y1="{y(top * f):.1f}" y2="{y(top * f):.1f}"/>'
        f'<text x="{PAD_LEFT - 4}" y="{y(top * f) + 4:.1f}" text-anchor="end">'
        f'{_short(top * f)}{escape(unit)}</text>' for f in (0, 0.5, 1))
    start, end = (dt.datetime.fromtimestamp(t / 1000, dt.UTC).strftime("%H:%M")
                  for t in (t0, t1))
    latest = points[-1][1]
    return Markup(
        f'<figure class="chart"><figcaption>{escape(title)} '
        f'<span class="muted">now {_short(latest)}{escape(unit)}</span></figcaption>'
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f'<g class="grid">{grid}</g><g class="line">{lines}</g>'
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 4}">{start} UTC</text>'
        f'<text x="{WIDTH - 6}" y="{HEIGHT - 4}" text-anchor="end">{end}</text></svg></figure>')


def _short(value: float) -> str:
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"
