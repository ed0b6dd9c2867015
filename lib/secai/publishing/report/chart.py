"""The loss curves of a training stage as inline SVG, drawn from the numbers of its training log
(no image file, no plotting library): training loss as a line, validation loss as a line with a
dot per evaluation, step on x, loss on y, both on one scale."""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 40   # margins: axis labels left and below, the legend above
SERIES = (("train", "training loss"), ("valid", "validation loss"))


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round values from at most lo to at least hi (1, 2 or 5 times a power of ten apart)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    out, v = [], first
    while not out or out[-1] < hi - step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _num(v: float) -> str:
    return f"{v:.4g}"


def loss_svg(curves: dict, label: str) -> str:
    """An <svg class="loss-curve"> of curves {"train": [[step, loss]...], "valid": [...]}; each series
    is a <polyline class="train|valid"> with data-points (its number of points) and a <circle> per point."""
    points = [p for name, _ in SERIES for p in curves.get(name) or []]
    if not points:
        return ""
    steps, losses = [p[0] for p in points], [p[1] for p in points]
    x_ticks = ticks(min(steps), max(steps)) if max(steps) > min(steps) else [min(steps)]
    y_ticks = ticks(min(losses), max(losses)) if max(losses) > min(losses) else [min(losses)]
    x0, x1 = min(x_ticks[0], min(steps)), max(x_ticks[-1], max(steps))
    y0, y1 = min(y_ticks[0], min(losses)), max(y_ticks[-1], max(losses))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(v):
        return LEFT + (v - x0) / (x1 - x0) * plot_w

    def y(v):
        return TOP + (1 - (v - y0) / (y1 - y0)) * plot_h

    out = [f'<svg class="loss-curve" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
           f'data-stage="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(label)}: training and validation loss by step</title>",
           f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>']
    for v in y_ticks:
        if y0 <= v <= y1:
            out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                       f'<text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_num(v)}</text>')
    for v in x_ticks:
        if x0 <= v <= x1:
            out.append(f'<line class="grid" x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{TOP}" y2="{TOP + plot_h}"/>'
                       f'<text class="tick" x="{x(v):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_num(v)}</text>')
    out.append(f'<text class="axis" x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" text-anchor="middle">step</text>'
               f'<text class="axis" transform="translate(14 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">loss</text>')
    legend_x = LEFT
    for name, title in SERIES:
        series = curves.get(name) or []
        if not series:
            continue
        coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in series)
        out.append(f'<polyline class="{name}" data-points="{len(series)}" points="{coords}"/>')
        out += [f'<circle class="{name}" cx="{x(s):.1f}" cy="{y(v):.1f}" r="{3 if name == "valid" else 2}">'
                f"<title>step {s}: {title} {v:.4f}</title></circle>" for s, v in series]
        out.append(f'<line class="{name} key" x1="{legend_x}" x2="{legend_x + 18}" y1="12" y2="12"/>'
                   f'<text class="legend" x="{legend_x + 22}" y="16">{title}</text>')
        legend_x += 150
    out.append("</svg>")
    return "".join(out)
