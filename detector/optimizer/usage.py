"""Reads a recorded usage file (CSV, gzipped or not) under the replay protocol.

The loading rules are the protocol's: rows without a series id or with a
non-finite number are dropped, negative readings become 0, and of readings
sharing a timestamp the largest is kept. A reading above the resource's full
size refuses the whole file, as one in another unit.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections import defaultdict
from pathlib import Path
from typing import IO

import numpy as np

from detector.optimizer.resources import ResourceSpec, UsageFile


class UsageFileError(Exception):
    """A usage file that cannot be read as the named resource."""


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def load_usage(
    path: Path, layout: UsageFile
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return {series: (timestamps, readings)}, both sorted by time, unique."""
    raw: dict[str, list[tuple[float, float]]] = defaultdict(list)
    try:
        with _open(path) as fh:
            reader = csv.reader(fh)
            head = [h.strip() for h in next(reader, [])]
            wanted = ("timestamp", layout.series_column, layout.value_column)
            missing = [c for c in wanted if c not in head]
            if missing:
                raise UsageFileError(
                    f"{path}: no column {missing[0]!r} (columns: {head}); "
                    f"is {layout.spec.name!r} the right resource?"
                )
            it, js, jv = (head.index(c) for c in wanted)
            for line, row in enumerate(reader, start=2):
                key = row[js].strip()
                if not key:
                    continue
                try:
                    t, v = float(row[it]), float(row[jv])
                except (ValueError, IndexError) as exc:
                    raise UsageFileError(f"{path}: line {line}: {exc}") from exc
                if math.isfinite(t) and math.isfinite(v):
                    raw[key].append((t, max(v, 0.0)))
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UsageFileError(f"cannot read {str(path)!r}: {exc}") from exc

    usage = {}
    for key, points in raw.items():
        a = np.asarray(points)
        order = np.lexsort((-a[:, 1], a[:, 0]))
        t, u = a[order, 0], a[order, 1]
        keep = np.concatenate(([True], np.diff(t) > 0))
        usage[key] = (t[keep], u[keep])

    _check_full_size(path, layout.spec, usage)
    return usage


def _check_full_size(
    path: Path, spec: ResourceSpec, usage: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Refuse readings above the resource's full size, as the service does.

    Replayed, they are allocated the full size throughout, and every reading
    counts as short: the replay takes minutes to write nothing of use.
    """
    if spec.scale is None or not usage:
        return
    key = max(usage, key=lambda k: float(usage[k][1].max()))
    largest = float(usage[key][1].max())
    if spec.above_full_size(largest):
        raise UsageFileError(
            f"{path}: readings up to {largest!r} (series {key!r}), above the "
            f"full size of {spec.name} ({spec.scale:g}, {spec.unit}); "
            f"is {spec.name!r} the right resource?"
        )
