"""Draws an anomaly's series and its expected band as a PNG; needs matplotlib,
used headless (Agg), without touching pyplot's global state."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import date2num
from matplotlib.figure import Figure

Points = Sequence[tuple[float, float]]


def band_plot(
    title: str,
    observed: Points,
    lower: Points = (),
    upper: Points = (),
    expected: Points = (),
    marks: Sequence[tuple[float, str]] = (),
) -> bytes:
    """The observed series, the band between lower and upper, and time marks."""
    figure = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()

    if lower and upper:
        band = _aligned(lower, upper)
        axes.fill_between(
            [_time(t) for t, _, _ in band],
            [lo for _, lo, _ in band],
            [hi for _, _, hi in band],
            color="tab:green",
            alpha=0.2,
            label="expected band",
        )
    if expected:
        axes.plot(*_xy(expected), color="tab:green", linewidth=1, label="expected")
    axes.plot(*_xy(observed), color="tab:red", linewidth=1.5, label="observed")
    for t, label in marks:
        axes.axvline(_time(t), color="grey", linestyle="--", linewidth=1)
        axes.annotate(
            label,
            (_time(t), 1),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
        )

    axes.xaxis_date()
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper left", fontsize=7)
    figure.autofmt_xdate()
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _time(t: float) -> float:
    # Matplotlib's own date numbers, so that the axis formats them as times.
    return float(date2num(datetime.fromtimestamp(t, UTC)))


def _xy(points: Points) -> tuple[list[float], list[float]]:
    return [_time(t) for t, _ in points], [v for _, v in points]


def _aligned(lower: Points, upper: Points) -> list[tuple[float, float, float]]:
    highs = dict(upper)
    return [(t, lo, highs[t]) for t, lo in lower if t in highs]
