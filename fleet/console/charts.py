"""Charts drawn on the server as SVG: no script, nothing to load, and every text
in them escaped like the rest of the page."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from fleet.core.advisories import Severity
from fleet.core.exposure import DayExposure

__all__ = ["SEVERITY_ORDER", "exposure_chart"]

SEVERITY_ORDER = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW)

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 112, 16, 34


def _ticks(top: int) -> list[int]:
    """About five round steps from 0 to at least `top`."""
    if top <= 5:
        return list(range(0, max(top, 1) + 1))
    raw = top / 5
    magnitude = 10 ** (len(str(int(raw))) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return list(range(0, top + step, step))


def exposure_chart(days: Sequence[DayExposure]) -> Markup:
    """Instances affected per severity per day: one line per severity."""
    if not days:
        return Markup("")
    top = max((d.count(s) for d in days for s in SEVERITY_ORDER), default=0)
    ticks = _ticks(top)
    ceiling = ticks[-1] or 1
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(days) - 1)

    def x(i: int) -> float:
        return LEFT + (i * step if len(days) > 1 else plot_w / 2)

    def y(value: int) -> float:
        return TOP + plot_h - value / ceiling * plot_h

    first, last = days[0].day, days[-1].day
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" aria-labelledby="exposure-title exposure-desc" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="exposure-title">Instances affected per severity, {escape(first)} to '
        f"{escape(last)}</title>",
        '<desc id="exposure-desc">One line per severity; each point is the number of '
        "instances running a version an advisory of that severity affects, at the end of "
        "the day (today: now).</desc>",
    ]
    for tick in ticks:
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" '
            f'y2="{y(tick):.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" '
            f'text-anchor="end">{tick}</text>'
        )
    every = max(1, len(days) // 6)
    for i, day in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            parts.append(
                f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 18}" '
                f'text-anchor="middle">{escape(day.day.strftime("%b %d"))}</text>'
            )
    for n, severity in enumerate(SEVERITY_ORDER):
        points = " ".join(f"{x(i):.1f},{y(d.count(severity)):.1f}" for i, d in enumerate(days))
        parts.append(f'<polyline class="sev-{severity.value}" fill="none" points="{points}"/>')
        for i, d in enumerate(days):
            value = d.count(severity)
            parts.append(
                f'<circle class="sev-{severity.value}" cx="{x(i):.1f}" cy="{y(value):.1f}" '
                f'r="2.5"><title>{escape(d.day.isoformat())}: {value} '
                f"{escape(severity.value)}</title></circle>"
            )
        legend_y = TOP + 14 + n * 20
        parts.append(
            f'<line class="sev-{severity.value}" x1="{WIDTH - RIGHT + 14}" '
            f'x2="{WIDTH - RIGHT + 34}" y1="{legend_y - 4}" y2="{legend_y - 4}"/>'
            f'<text class="legend" x="{WIDTH - RIGHT + 40}" y="{legend_y}">'
            f"{escape(severity.value)} ({days[-1].count(severity)})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
