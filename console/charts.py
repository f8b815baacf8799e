"""Stacked bar charts as SVG geometry, drawn by the server: nothing to fetch, nothing to run.

``_chart.html`` turns a ``Chart`` into ``<rect>`` and ``<text>`` elements; colours
come from the stylesheet by the series' names, so the page needs no inline style.
"""

import math
from collections import namedtuple
from datetime import datetime
from itertools import count

LEFT, BOTTOM, TOP = 44, 22, 8  # room for the count axis, the hour labels, the top label
HEIGHT = 200

Bar = namedtuple("Bar", "x y width height series title")  # one segment of one hour's stack
# Bars, then the count axis's lines as (y, value) and the hour labels as (x, text).
Chart = namedtuple("Chart", "width height bars counts hours")


def nice_ceiling(value: int) -> int:
    """Return the smallest of 1, 2 or 5 times a power of ten at or above value (at least 1)."""
    return next(s * f for s in (10**n for n in count()) for f in (1, 2, 5) if s * f >= value)


def stacked_bars(
    hours: list[datetime], series: dict[str, list[int]], labels: dict[str, str], *, width=1320
) -> Chart:
    """Return a chart with one stacked bar per hour, series stacked in the order given."""
    plot_width, floor = width - LEFT, HEIGHT - BOTTOM
    plot_height = floor - TOP
    top = nice_ceiling(max(map(sum, zip(*series.values(), strict=True)), default=0))
    slot = plot_width / max(len(hours), 1)
    bars = []
    for n, hour in enumerate(hours):
        base = float(floor)
        for name, counts in series.items():
            if counts[n]:
                tall = counts[n] / top * plot_height
                base -= tall
                title = f"{hour:%a %H:00} UTC: {counts[n]:,} {labels[name]}"
                bars.append(Bar(LEFT + n * slot + 0.5, base, max(slot - 1, 1), tall, name, title))
    marks = (0, top // 2, top) if top % 2 == 0 else (0, top)
    every = math.ceil(len(hours) / (plot_width / 110))  # a label per 110 units at most
    hour_format = "%Hh" if len(hours) <= 24 else "%a %Hh"
    axis = [(floor - plot_height * mark / top, mark) for mark in marks]
    hour_labels = [
        (LEFT + n * slot + slot / 2, f"{hour:{hour_format}}") for n, hour in enumerate(hours)
    ]
    return Chart(width, HEIGHT, bars, axis, hour_labels[::every])
