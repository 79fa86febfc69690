"""`aiops backtest`: the detector's own engine replayed over CSV files.

Every `timestamp,value` CSV under --data (NAB layout) is served to an Engine
through a replay client that answers range queries from the file, one day of
data per cycle on a simulated clock, with training inline. The scores are the
ones the service would have exported, point by point, from the same model
classes and decision logic; each lands as `timestamp,score,anomaly` at the
same relative path under --out.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aiops_cli.progress import ProgressBar
from aiops_common.config import ConfigError, from_mapping, read_yaml
from aiops_common.whole_file import written_whole
from detector.config import DetectorConfig, ModelConfig, QueryConfig
from detector.engine import Engine
from detector.model import Score
from detector.prometheus import MAX_HISTORY_SECONDS, Series
from detector.training import InlineExecutor

log = logging.getLogger(__name__)

QUERY = "backtest"
DEFAULT_CYCLE_SECONDS = 86_400.0


# A clock that steps back once (NAB's daylight-saving hour) leaves a few rows
# not later than the one before; more than this share is a file out of order.
OUT_OF_ORDER_SHARE = 0.1
# No row for this long: a mistyped date, not a pause.
FAR_APART_SECONDS = 365 * 86400.0


class BacktestError(Exception):
    """An input that cannot be replayed; the message names the file."""


@dataclass(frozen=True)
class Recording:
    """One CSV: its timestamps as written, as Unix seconds, and its values."""

    path: Path
    texts: tuple[str, ...]
    seconds: np.ndarray
    values: np.ndarray

    @property
    def served(self) -> np.ndarray:
        """Rows a Prometheus would serve: each later than every row before it.

        NAB's machine temperature steps back an hour once; the repeated
        timestamps are not served again, and their rows keep the score
        before them.
        """
        t = self.seconds
        if t.size == 0:
            return np.zeros(0, dtype=bool)
        return np.concatenate([[True], t[1:] > np.maximum.accumulate(t)[:-1]])

    @property
    def step(self) -> float:
        gaps = np.diff(self.seconds)
        gaps = gaps[gaps > 0]
        return float(np.median(gaps)) if gaps.size else 60.0


class ReplayClient:
    """Answers range queries from one recording, as Prometheus would.

    A grid point at T stands for the raw samples in (T - step, T], so samples
    off the grid (NAB has :02 and :07 minutes) are each served exactly once.
    """

    def __init__(self, recording: Recording) -> None:
        served = recording.served
        self._seconds = recording.seconds[served]
        self._values = recording.values[served]

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[Series]:
        low = np.searchsorted(self._seconds, start - step, side="right")
        high = np.searchsorted(self._seconds, end, side="right")
        points = [
            (float(t), float(v))
            for t, v in zip(
                self._seconds[low:high], self._values[low:high], strict=True
            )
            if math.isfinite(v)
        ]
        return [Series({}, points)] if points else []


def add_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "backtest",
        help="score CSV series offline with the detector's models",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="folder of timestamp,value CSVs"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="where timestamp,score,anomaly go"
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        help="a detector config, checked whole, whose `model` section to use "
        "(default: the built-in model)",
    )
    parser.add_argument(
        "--query",
        help="with --config.file: use this query's own `model` section, if it "
        "has one, instead of the top-level one",
    )
    parser.add_argument(
        "--cycle-seconds",
        type=float,
        default=DEFAULT_CYCLE_SECONDS,
        help="replayed time per engine cycle (default one day)",
    )
    parser.set_defaults(run=run)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """`aiops backtest`'s arguments from `argv`, for callers other than the CLI:
    its defaults stay its own, as a Namespace spelt out by hand fell behind
    when --query came."""
    parser = argparse.ArgumentParser(prog="aiops")
    add_subcommands(parser.add_subparsers())
    return parser.parse_args(["backtest", *argv])


def run(args: argparse.Namespace) -> int:
    try:
        cycle = args.cycle_seconds
        if not (math.isfinite(cycle) and cycle > 0):
            raise BacktestError(
                f"--cycle-seconds must be a finite number > 0, got {cycle:g}"
            )
        model = _model_config(args.config_file, args.query)
        if not Path(args.data).is_dir():
            raise BacktestError(
                f"--data {str(args.data)!r} is no folder: it holds the recordings, "
                "one timestamp,value CSV each"
            )
        files = sorted(Path(args.data).rglob("*.csv"))
        if not files:
            packed = len(list(Path(args.data).rglob("*.csv.gz")))
            hint = f" ({packed} .csv.gz: unpack them first)" if packed else ""
            raise BacktestError(f"no CSV files under {str(args.data)!r}{hint}")
        _check_out_folder(Path(args.data), Path(args.out))
        recordings = [read_recording(path) for path in files]
        if Path(args.out).exists() and not Path(args.out).is_dir():
            # Found out before the replay, not after its first file.
            raise BacktestError(
                f"--out {str(args.out)!r} is a file; the scores go to a folder "
                "(made if missing), one CSV per input"
            )
        _refuse_overwriting(files, args.data, args.out)
    except (BacktestError, ConfigError) as exc:
        print(f"aiops backtest: {exc}", file=sys.stderr)
        return 2

    total = sum(r.values.size for r in recordings)
    bar = ProgressBar("backtest", total)
    done = 0
    started = time.monotonic()
    for recording in recordings:
        score, anomaly = replay(recording, model, args.cycle_seconds)
        relative = recording.path.relative_to(args.data)
        try:
            write_scores(args.out / relative, recording.texts, score, anomaly)
        except OSError as exc:
            print(f"aiops backtest: cannot write {relative}: {exc}", file=sys.stderr)
            return 1
        done += recording.values.size
        bar.update(done)
    bar.close()
    log.info(
        "backtest done files=%d points=%d seconds=%.1f",
        len(recordings),
        total,
        time.monotonic() - started,
    )
    return 0


def replay(
    recording: Recording, model: ModelConfig, cycle_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and decisions for every row, in the file's order."""
    step = recording.step
    first, last = float(recording.seconds.min()), float(recording.seconds.max())
    config = DetectorConfig(
        queries=(QueryConfig(QUERY, QUERY, step_seconds=step),),
        interval_seconds=cycle_seconds,
        query_delay_seconds=0.0,
        # Longer than the file, so that a gap in the data does not make the
        # engine forget the series and start its model afresh; but no longer
        # than the detector allows, where only a gap of 90 days does so.
        history_seconds=min(
            last - first + 2 * cycle_seconds + step, MAX_HISTORY_SECONDS
        ),
        max_series=1,
        model=model,
    )
    scored: dict[float, Score] = {}

    def observe(
        query: str,
        labels: dict[str, str],
        timestamps: Sequence[float],
        scores: Sequence[Score],
    ) -> None:
        scored.update(zip(timestamps, scores, strict=True))

    clock = _Clock(first)
    engine = Engine(
        config,
        ReplayClient(recording),
        clock=clock,
        observer=observe,
        executor=InlineExecutor(),
    )
    while True:
        engine.run_cycle()
        if clock.now >= last + step:
            break
        clock.now += cycle_seconds
    return _rows(recording, scored)


def _rows(
    recording: Recording, scored: dict[float, Score]
) -> tuple[np.ndarray, np.ndarray]:
    score = np.zeros(recording.values.size)
    anomaly = np.zeros(recording.values.size, dtype=np.int8)
    previous = 0.0
    served = recording.served.tolist()
    for i, t in enumerate(recording.seconds.tolist()):
        found = scored.get(t) if served[i] else None
        # A row without a score (a NaN value, a repeated timestamp) keeps the
        # score before it and no decision, so every row is written.
        if found is not None and math.isfinite(found.score):
            previous = found.score
            anomaly[i] = found.decision
        score[i] = previous
    return score, anomaly


def read_recording(path: Path) -> Recording:
    texts: list[str] = []
    seconds: list[float] = []
    values: list[float] = []
    unreadable: list[tuple[int, str]] = []
    lines: list[int] = []
    try:
        # utf-8-sig: a spreadsheet's byte order mark is no part of the header.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            names = [h.strip() for h in header[:2]] if header else []
            if names != ["timestamp", "value"]:
                raise BacktestError(f"{path}: expected a timestamp,value header")
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                texts.append(row[0])
                lines.append(line)
                seconds.append(_parse_time(row[0], path, line))
                text = row[1] if len(row) > 1 else ""
                value = _parse_value(text)
                if math.isnan(value) and text.strip().lower() != "nan":
                    unreadable.append((line, text))
                values.append(value)
    except OSError as exc:
        raise BacktestError(f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise BacktestError(
            f"{path}: not UTF-8 (byte {exc.object[exc.start : exc.start + 1]!r} "
            f"at offset {exc.start}); save it as UTF-8 text"
        ) from exc

    if not texts:
        raise BacktestError(f"{path}: no rows")
    if not np.isfinite(values).any():
        # Every row a gap: scored, it would be a file of zeros and exit 0.
        raise BacktestError(
            f"{path}: none of its {len(values)} values is a finite number "
            "(NaN, infinite or text); nothing to score"
        )
    if unreadable:
        # Kept as gaps, as Prometheus keeps a missed scrape: one bad cell
        # should not cost the whole file, but the operator should know.
        line, text = unreadable[0]
        log.warning(
            "values that are not numbers scored as gaps file=%s count=%d "
            "first_line=%d first_value=%r",
            path,
            len(unreadable),
            line,
            text,
        )
    recording = Recording(
        path, tuple(texts), np.asarray(seconds), np.asarray(values, dtype=float)
    )
    _refuse_far_apart(recording.seconds, lines, path)
    unserved = np.flatnonzero(~recording.served)
    if unserved.size > OUT_OF_ORDER_SHARE * recording.seconds.size:
        raise BacktestError(
            f"{path}: {unserved.size} of {recording.seconds.size} rows are not "
            f"later than an earlier row (first at line {lines[int(unserved[0])]}); "
            "sort the file by its timestamps, oldest first"
        )
    if unserved.size:
        # Such rows keep the score before them. A clock that stepped back
        # once costs a few; a file sorted newest first or not by time at
        # all would be scored all zeros and exit 0 without this line.
        log.warning(
            "rows not later than an earlier row keep the score before them (a clock "
            "that stepped back, or a file not sorted by time) file=%s count=%d "
            "of=%d first_line=%d",
            path,
            unserved.size,
            recording.seconds.size,
            lines[int(unserved[0])],
        )
    return recording


def _check_out_folder(data: Path, out: Path) -> None:
    """Raise BacktestError for an --out no folder of scores can be.

    "-" is standard output to most tools, which a folder of CSVs cannot go to;
    a folder under --data would have its score files read as recordings by
    the next run (one that is --data itself is _refuse_overwriting's).
    """
    if str(out) == "-":
        raise BacktestError(
            "--out '-': the scores go to a folder, one CSV per input, not to "
            "standard output; name a folder"
        )
    inside = out.resolve().is_relative_to(data.resolve())
    if inside and out.resolve() != data.resolve():
        raise BacktestError(
            f"--out {str(out)!r} is inside --data {str(data)!r}: the next run "
            "would read its scores as recordings; name a folder outside it"
        )


def _refuse_far_apart(seconds: np.ndarray, lines: list[int], path: Path) -> None:
    """Raise BacktestError where a year or more parts two neighbouring times.

    A mistyped year is replayed a cycle at a time across the whole gap, for
    hours; no recording of one series pauses that long.
    """
    if seconds.size < 2:
        return
    order = np.argsort(seconds, kind="stable")
    gaps = np.diff(seconds[order])
    widest = int(np.argmax(gaps))
    if gaps[widest] < FAR_APART_SECONDS:
        return
    before, after = int(order[widest]), int(order[widest + 1])
    raise BacktestError(
        f"{path}: lines {lines[before]} and {lines[after]} are "
        f"{gaps[widest] / 86400:.0f} days apart with no row between; is one "
        "of them a mistyped date?"
    )


def _refuse_overwriting(files: Sequence[Path], data: Path, out: Path) -> None:
    """Raise BacktestError if a score file would replace one of the inputs.

    Each input's scores go to the same relative path under `out`, so an `out`
    that is `data` (by any path or link) would overwrite the recordings.
    """
    for path in files:
        target = out / path.relative_to(data)
        try:
            same = os.path.samefile(target, path)
        except OSError:
            continue  # nothing there yet: nothing to overwrite
        if same:
            raise BacktestError(
                f"--out {str(out)!r} would overwrite the input {str(path)!r}; "
                "write the scores to another folder"
            )


def write_scores(
    path: Path, texts: Sequence[str], score: np.ndarray, anomaly: np.ndarray
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(path) as place, place.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "score", "anomaly"])
        for text, s, a in zip(texts, score.tolist(), anomaly.tolist(), strict=True):
            writer.writerow([text, repr(s), a])


def _model_config(path: Path | None, query: str | None) -> ModelConfig:
    if path is None:
        if query is not None:
            raise BacktestError("--query needs --config.file")
        return ModelConfig()

    raw = read_yaml(path)
    # Every key is checked as the detector checks it, so a typo fails here
    # too instead of silently scoring with defaults; a file with only a
    # `model` section is enough for a backtest.
    known = {f.name for f in dataclasses.fields(DetectorConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; known keys: {names}")
    model = from_mapping(ModelConfig, raw.get("model") or {}, where=f"{path}: model")
    queries = [
        from_mapping(QueryConfig, q, where=f"{path}: queries[{i}]")
        for i, q in enumerate(raw.get("queries") or [])
    ]
    if query is None:
        return model
    for candidate in queries:
        if candidate.name == query:
            return candidate.model or model
    names = ", ".join(q.name for q in queries) or "none"
    raise BacktestError(f"no query {query!r} in {path} (queries: {names})")


def _parse_time(text: str, path: Path, line: int) -> float:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise BacktestError(
            f"{path}:{line}: bad timestamp {text!r} ({exc}); expected a date "
            "and time as NAB writes them, such as 2014-02-14 14:30:00 (UTC "
            "unless a zone is given; not Unix seconds)"
        ) from exc
    if moment.tzinfo is None:
        # NAB's timestamps are UTC without a zone.
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _parse_value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
