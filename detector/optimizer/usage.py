"""Reads a recorded usage file (CSV, gzipped or not) under the replay protocol.

The loading rules are the protocol's: rows without a series id or with a
non-finite number are dropped, negative readings become 0, and of readings
sharing a timestamp the largest is kept; each is counted, as the scorer counts
it. A reading above the resource's full size, or above any its unit can
plausibly hold, refuses the whole file, as one in another unit; so does a
timestamp a year or more apart from all the others.
"""

from __future__ import annotations

import csv
import gzip
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from detector.optimizer.resources import ResourceSpec, UsageFile

# What the loading rules drop or change, in the scorer's words.
EMPTY_ID = "rows with an empty series id"
NOT_FINITE = "rows with a non-finite timestamp or value"
NEGATIVE = "negative readings clipped to 0"
REPEATED = "duplicate timestamps (largest reading kept)"
RULES = (EMPTY_ID, NOT_FINITE, NEGATIVE, REPEATED)

# No pause in a recorded trace lasts a year (the shared data's longest trace
# spans 28 days): timestamps a year apart from the rest are in another unit,
# milliseconds among seconds, or broken.
FAR_APART_SECONDS = 365 * 86400.0
# Readings this many steps apart, as a rule: another unit, not a slow scrape
# (an hourly scrape of a 57 s resource is 63 steps).
SPARSE_STEPS = 200


class UsageFileError(Exception):
    """A usage file that cannot be read as the named resource."""


@dataclass(frozen=True)
class Usage:
    """A usage file's series, and how many rows each loading rule touched."""

    # {series: (timestamps, readings)}, both sorted by time, unique.
    series: dict[str, tuple[np.ndarray, np.ndarray]]
    # Only the rules that applied, in RULES' order.
    dropped: dict[str, int]

    def notes(self) -> str:
        """The counts on one line, such as '49 rows with an empty series id'."""
        return ", ".join(f"{n} {rule}" for rule, n in self.dropped.items())


def _open(path: Path) -> IO[str]:
    # utf-8-sig: a byte order mark, as some editors save one, is no part of
    # the header.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def load_usage(path: Path, layout: UsageFile) -> Usage:
    """Read `path` as `layout`'s resource; UsageFileError if it cannot be."""
    dropped: Counter[str] = Counter()
    raw = _read_points(path, layout, dropped)

    series = {}
    for key, points in raw.items():
        a = np.asarray(points)
        t, u = largest_per_timestamp(a[:, 0], a[:, 1])
        dropped[REPEATED] += len(points) - t.size
        series[key] = (t, u)

    _check_full_size(path, layout.spec, series)
    _check_timestamps(path, layout, series)
    _check_spacing(path, layout.spec, series)
    return Usage(series, {rule: dropped[rule] for rule in RULES if dropped[rule]})


def largest_per_timestamp(
    t: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The readings sorted by time, the largest kept of those sharing one."""
    order = np.lexsort((-u, t))
    t, u = t[order], u[order]
    keep = np.concatenate(([True], np.diff(t) > 0))
    return t[keep], u[keep]


def _read_points(
    path: Path, layout: UsageFile, dropped: Counter[str]
) -> dict[str, list[tuple[float, float]]]:
    """Every kept row's (timestamp, reading) by series, in the file's order;
    what was dropped or clipped is counted into `dropped`."""
    try:
        fh = _open(path)
    except OSError as exc:
        raise UsageFileError(f"cannot read {str(path)!r}: {exc}") from exc

    with fh:
        rows = _numbered_rows(path, fh)
        columns = _columns(path, layout, next(rows, (1, []))[1])
        it, js, jv = columns.values()
        width = max(it, js, jv) + 1

        raw: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for line, row in rows:
            if len(row) < width:
                raise _short_row(path, line, row, columns)
            key = row[js].strip()
            if not key:
                dropped[EMPTY_ID] += 1
                continue
            if "\0" in key:
                # Not the same series as the id without it, nor a usable label.
                raise UsageFileError(
                    f"{path}: line {line}: a NUL byte in {layout.series_column} {key!r}"
                )
            t = _number(row[it], "timestamp", path, line)
            v = _number(row[jv], layout.value_column, path, line)
            if not (math.isfinite(t) and math.isfinite(v)):
                dropped[NOT_FINITE] += 1
                continue
            if v < 0:
                dropped[NEGATIVE] += 1
                v = 0.0
            raw[key].append((t, v))
    return raw


def _number(text: str, column: str, path: Path, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageFileError(
            f"{path}: line {line}: {column} {text!r} is not a number"
        ) from None


def _columns(path: Path, layout: UsageFile, header: list[str]) -> dict[str, int]:
    """Where the timestamp, the series id and the reading are, in this order."""
    head = [h.strip() for h in header]
    wanted = ("timestamp", layout.series_column, layout.value_column)
    missing = [c for c in wanted if c not in head]
    if missing:
        raise UsageFileError(
            f"{path}: no column {missing[0]!r} (columns: {head}); "
            f"is {layout.spec.name!r} the right resource?"
        )
    # Which of two same-named columns holds the readings is anyone's guess.
    repeated = [c for c in wanted if head.count(c) > 1]
    if repeated:
        raise UsageFileError(
            f"{path}: column {repeated[0]!r} appears {head.count(repeated[0])} "
            f"times in the header (columns: {head}); keep one"
        )
    return {c: head.index(c) for c in wanted}


def _short_row(
    path: Path, line: int, row: list[str], columns: dict[str, int]
) -> UsageFileError:
    """The leftmost column a row is too short to hold, named by its line."""
    missing = {i: name for name, i in columns.items() if i >= len(row)}
    first = min(missing)
    ends = f"the row ends at field {len(row)}" if row else "the line is empty"
    return UsageFileError(
        f"{path}: line {line}: no {missing[first]!r} (field {first + 1}): {ends}"
    )


def _numbered_rows(path: Path, fh: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """Each CSV row with the line it starts on; a file that cannot be read on
    is a UsageFileError naming the line."""
    reader = csv.reader(fh)
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise _not_utf8(path, exc) from exc
        except csv.Error as exc:
            # Such as a field over the csv module's limit: a quote left open
            # runs on to the end of the file, so the line it opens on is named.
            raise UsageFileError(f"{path}: line {line}: {exc}") from exc
        except (OSError, EOFError, zlib.error) as exc:
            # A damaged or cut gzip file raises any of the three, midway.
            after = f" after line {line - 1}" if line > 1 else ""
            raise UsageFileError(f"cannot read {str(path)!r}{after}: {exc}") from exc
        yield line, row
        line = reader.line_num + 1


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> UsageFileError:
    line = _undecodable_line(path)
    where = f"line {line}: " if line else ""
    bad = exc.object[exc.start : exc.end]
    return UsageFileError(f"{path}: {where}not UTF-8 ({bad!r}: {exc.reason})")


def _undecodable_line(path: Path) -> int | None:
    """The first line that is not UTF-8, read again as bytes.

    The text reader decodes blocks of many lines ahead of the csv reader, so
    neither knows the line; a line break is never part of a UTF-8 sequence.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for line, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return line
    return None


def _check_full_size(
    path: Path, spec: ResourceSpec, usage: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Refuse readings above the resource's full size, or above any reading its
    unit can plausibly hold, as the service does.

    Replayed, they are allocated the full size throughout, and every reading
    counts as short: the replay takes minutes to write nothing of use. Without
    a full size, the allocation follows them past what a float holds.
    """
    largest_plausible = spec.largest_reading
    if largest_plausible is None or not usage:
        return
    key = max(usage, key=lambda k: float(usage[k][1].max()))
    largest = float(usage[key][1].max())
    if spec.above_full_size(largest):
        what = "full size" if spec.scale is not None else "largest plausible reading"
        raise UsageFileError(
            f"{path}: readings up to {largest!r} (series {key!r}), above the "
            f"{what} of {spec.name} ({largest_plausible:g}, {spec.unit}); "
            f"is {spec.name!r} the right resource?"
        )


def _check_timestamps(
    path: Path, layout: UsageFile, usage: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Refuse timestamps a year or more apart from the file's other ones, by
    the first line that holds one.

    Replayed, such a reading moves its series' clock: one at 0 ends the
    warm-up decades before the series' other readings, one in milliseconds
    stretches the series over millennia and its changes per day to nothing.
    The scorer takes either without a word.
    """
    if not usage:
        return
    t = np.sort(np.concatenate([times for times, _ in usage.values()]))
    breaks = np.flatnonzero(np.diff(t) >= FAR_APART_SECONDS) + 1
    if breaks.size == 0:
        return

    # The rows between two breaks are a group; the largest is the file's time.
    edges = np.concatenate(([0], breaks, [t.size]))
    main = int(np.argmax(np.diff(edges)))
    first, last = float(t[edges[main]]), float(t[edges[main + 1] - 1])
    line, key, far = _first_row_outside(path, layout, first, last)
    raise UsageFileError(
        f"{path}: line {line}: timestamp {far!r} (series {key!r}) is a year or "
        f"more from the other rows, which run from {first!r} to {last!r}; "
        "is it in milliseconds, or broken?"
    )


def _check_spacing(
    path: Path, spec: ResourceSpec, usage: dict[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Refuse a file whose readings are far sparser than the resource's step.

    Every timestamp in milliseconds is consistent with itself, so the
    year-apart check passes it; replayed, its warm-up of hours lasts seconds
    and the series changes at every reading.
    """
    gaps = [np.median(np.diff(t)) for t, _ in usage.values() if t.size > 1]
    if not gaps:
        return
    typical = float(np.median(gaps))
    if typical >= SPARSE_STEPS * spec.step_seconds:
        raise UsageFileError(
            f"{path}: readings are a median {typical:g} s apart, where "
            f"{spec.name}'s step is {spec.step_seconds:g} s; are the "
            "timestamps in milliseconds? They must be Unix seconds"
        )


def _first_row_outside(
    path: Path, layout: UsageFile, first: float, last: float
) -> tuple[int, str, float]:
    """The first kept row timed outside first..last, read again: the loaded
    series no longer know their lines."""
    with _open(path) as fh:
        rows = _numbered_rows(path, fh)
        it, js, jv = _columns(path, layout, next(rows, (1, []))[1]).values()
        for line, row in rows:
            key, t, v = row[js].strip(), float(row[it]), float(row[jv])
            finite = math.isfinite(t) and math.isfinite(v)
            if key and finite and not first <= t <= last:
                return line, key, t
    raise UsageFileError(f"{path}: changed while it was read")
