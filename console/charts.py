"""Stacked bar charts as SVG geometry, drawn by the server: nothing to fetch, nothing to run.

The template turns a ``Chart`` into ``<rect>`` and ``<text>`` elements; colours
come from the stylesheet by the series' names, so the page needs no inline style.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime

LEFT, BOTTOM, TOP = 44, 22, 8  # room for the count axis, the hour labels, the top label


@dataclass
class Bar:
    """One segment of one hour's stack."""

    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass
class Chart:
    """What the template draws: bars, a count axis and hour labels inside width by height."""

    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    counts: list[tuple[float, int]] = field(default_factory=list)  # (y, value) of grid lines
    hours: list[tuple[float, str]] = field(default_factory=list)  # (x, label) under the bars


def nice_ceiling(value: int) -> int:
    """Return the smallest of 1, 2 or 5 times a power of ten at or above value (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def stacked_bars(
    hours: list[datetime], series: dict[str, list[int]], labels: dict[str, str], *, width=1320
) -> Chart:
    """Return a chart with one stacked bar per hour, series stacked in the order given."""
    height = 200
    plot_width, plot_height = width - LEFT, height - BOTTOM - TOP
    totals = [sum(counts[n] for counts in series.values()) for n in range(len(hours))]
    top = nice_ceiling(max(totals, default=0))
    slot = plot_width / max(len(hours), 1)
    chart = Chart(width=width, height=height)
    for n, hour in enumerate(hours):
        base = float(height - BOTTOM)
        for name, counts in series.items():
            if not counts[n]:
                continue
            tall = counts[n] / top * plot_height
            base -= tall
            title = f"{hour:%a %H:00} UTC: {counts[n]:,} {labels[name]}"
            chart.bars.append(Bar(LEFT + n * slot + 0.5, base, max(slot - 1, 1), tall, name, title))
    marks = (0, top // 2, top) if top % 2 == 0 else (0, top)
    chart.counts = [(height - BOTTOM - plot_height * m / top, m) for m in marks]
    every = math.ceil(len(hours) / (plot_width / 110))  # a label per 110 units at most
    chart.hours = [
        (LEFT + n * slot + slot / 2, f"{hour:%H}h" if len(hours) <= 24 else f"{hour:%a %H}h")
        for n, hour in enumerate(hours)
        if n % every == 0
    ]
    return chart
