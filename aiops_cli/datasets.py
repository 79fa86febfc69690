"""Reads the labelled public data sets the demo replays: NAB and Alibaba GenAI.

Needs a data directory laid out like `../shared/data` (NAB's `data/` and
`labels.json`, Alibaba's `pod_*.csv.gz`); nothing is downloaded.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


class DatasetError(ValueError):
    """A data file that is missing or does not have the documented layout."""


@dataclass(frozen=True)
class LabelledSeries:
    """One series with its anomaly windows, as indexes into `values`."""

    name: str
    timestamps: tuple[float, ...]  # seconds since the epoch, increasing
    values: tuple[float, ...]
    windows: tuple[tuple[int, int], ...]  # inclusive [first, last] row indexes


def load_nab(data_dir: Path, relative: str) -> LabelledSeries:
    """Load `relative` (e.g. 'realKnownCause/x.csv') from NAB's layout.

    `data_dir` holds `data/` and either `labels.json` or, as in a checkout of
    NAB itself, `labels/combined_windows.json`.
    """
    csv_path = data_dir / "data" / relative
    labels_path = data_dir / "labels.json"
    if not labels_path.exists():
        labels_path = data_dir / "labels" / "combined_windows.json"
    rows = list(_read_rows(csv_path, ("timestamp", "value")))
    timestamps = tuple(_parse_nab_time(r["timestamp"], csv_path) for r in rows)
    values = tuple(_parse_float(r["value"], csv_path) for r in rows)

    try:
        labels = json.loads(labels_path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"cannot read NAB labels {str(labels_path)!r}: {exc}"
        ) from exc
    if relative not in labels:
        raise DatasetError(f"{str(labels_path)!r} has no entry for {relative!r}")

    windows = tuple(
        _window_indexes(
            timestamps,
            _parse_nab_time(start, labels_path),
            _parse_nab_time(end, labels_path),
        )
        for start, end in labels[relative]
    )
    return LabelledSeries(Path(relative).stem, timestamps, values, windows)


def load_pod_series(path: Path, container: str | None = None) -> LabelledSeries:
    """Load one container of an Alibaba GenAI file; the longest, busiest if None.

    The trace has no labels; callers inject faults and label those.
    """
    by_container: dict[str, list[tuple[float, float]]] = {}
    for row in _read_rows(path, ("timestamp", "container", "value")):
        if not row["container"]:
            continue
        point = (_parse_float(row["timestamp"], path), _parse_float(row["value"], path))
        by_container.setdefault(row["container"], []).append(point)
    if not by_container:
        raise DatasetError(f"{str(path)!r} holds no container series")

    if container is None:
        # Deterministic choice: the most samples, then the highest mean use.
        container = max(
            by_container,
            key=lambda c: (len(by_container[c]), sum(v for _, v in by_container[c])),
        )
    if container not in by_container:
        raise DatasetError(f"{str(path)!r} has no container {container!r}")

    points = sorted(by_container[container])
    return LabelledSeries(
        container,
        tuple(t for t, _ in points),
        tuple(v for _, v in points),
        (),
    )


def inject_stuck(
    series: LabelledSeries, start: int, length: int, value: float
) -> LabelledSeries:
    """Hold the series at `value` for `length` rows from `start`: a stuck GPU."""
    if not 0 <= start < start + length <= len(series.values):
        raise ValueError(
            f"fault [{start}, {start + length}) lies outside {len(series.values)} rows"
        )
    values = list(series.values)
    values[start : start + length] = [value] * length
    windows = series.windows + ((start, start + length - 1),)
    return LabelledSeries(series.name, series.timestamps, tuple(values), windows)


def _read_rows(path: Path, columns: tuple[str, ...]) -> Iterator[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or ())]
            if missing:
                raise DatasetError(f"{str(path)!r} lacks column {missing[0]!r}")
            yield from reader
    except OSError as exc:
        raise DatasetError(f"cannot read {str(path)!r}: {exc}") from exc


def _parse_float(text: str, path: Path) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise DatasetError(f"{str(path)!r}: not a number: {text!r}") from exc


def _parse_nab_time(text: str, path: Path) -> float:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise DatasetError(f"{str(path)!r}: bad timestamp {text!r}") from exc
    return parsed.replace(tzinfo=UTC).timestamp()


def _window_indexes(
    timestamps: tuple[float, ...], start: float, end: float
) -> tuple[int, int]:
    inside = [i for i, t in enumerate(timestamps) if start <= t <= end]
    if not inside:
        raise DatasetError(f"label window {start}..{end} covers no row")
    return inside[0], inside[-1]
