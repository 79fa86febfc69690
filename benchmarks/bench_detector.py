"""Detector cost: cores for 10,000 series at a 15 s step, upkeep against a
Prophet fit, and the NAB backtest time. Ends with one line `RESULT {json}`.

Cores: a real Engine with the full suite (the ensemble per series, a
forecaster per query, a PCA and an autoencoder group over the four queries of
each GPU) scores synthetic seeded series from an in-memory client. Every
series starts from the state of a model that has already seen 2,600 points,
cloned, so that the measured cycles run in steady state; the CPU of the
cycles plus the daily retraining, spread over the day, divided by wall time
is the figure. Upkeep: the CPU of the scheduled fits (forecaster, PCA,
autoencoder) per series, against Prophet fitting one two-week 5-minute series
in a separate environment (.venv-bench, created here with pip when missing).

    python benchmarks/bench_detector.py [--quick] [--series N] [--cycles N]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from detector import backtest
from detector.config import (
    DetectorConfig,
    EnsembleConfig,
    EntityConfig,
    ForecasterConfig,
    ModelConfig,
    QueryConfig,
)
from detector.engine import Engine
from detector.prometheus import Series
from detector.training import InlineExecutor, Schedule

ROOT = Path(__file__).resolve().parent.parent
NAB_DATA = ROOT.parent / "shared" / "data" / "nab" / "data"
BENCH_VENV = ROOT / ".venv-bench"
SEED = 20260511
STEP = 15.0
QUERIES = ("gpu_utilization", "gpu_memory", "gpu_temperature", "gpu_power")
HISTORY_POINTS = 2600
TWO_WEEKS = 14 * 288
DAY = 86_400.0

PROPHET_SCRIPT = textwrap.dedent(
    """
    import json, logging, resource, sys, time
    import numpy as np, pandas as pd
    logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
    from prophet import Prophet

    values = np.array(json.loads(sys.stdin.read()))
    ds = pd.date_range("2024-01-01", periods=values.size, freq="5min")
    frame = pd.DataFrame({"ds": ds, "y": values})

    def cpu():
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    fits = []
    for _ in range(3):
        start = cpu()
        model = Prophet(daily_seasonality=True, weekly_seasonality=True)
        model.fit(frame)
        fits.append(cpu() - start)
    start = cpu()
    future = model.make_future_dataframe(periods=288, freq="5min")
    model.predict(future)
    print(json.dumps({"fit": min(fits), "predict": cpu() - start}))
    """
)


class SyntheticClient:
    """Range queries over seeded series: daily cycle, noise, rare spikes."""

    def __init__(self, gpus: int) -> None:
        rng = np.random.default_rng(SEED)
        self.gpus = gpus
        self.level = rng.uniform(20, 80, (len(QUERIES), gpus))
        self.swing = rng.uniform(1, 15, (len(QUERIES), gpus))
        self.phase = rng.uniform(0, 2 * math.pi, (len(QUERIES), gpus))
        self.noise = rng.normal(0, 1, 65_537)
        self.labels = [
            {"gpu": str(g), "instance": f"node-{g // 8}"} for g in range(gpus)
        ]

    def values(self, query: int, t: np.ndarray) -> np.ndarray:
        """Values of every GPU of one query at times t: shape (gpus, len(t))."""
        day = 2 * math.pi * t[None, :] / DAY
        k = (t[None, :] / STEP).astype(np.int64) + np.arange(self.gpus)[:, None] * 7919
        return (
            self.level[query][:, None]
            + self.swing[query][:, None] * np.sin(day + self.phase[query][:, None])
            + self.noise[k % self.noise.size]
        )

    def query_range(self, promql: str, start: float, end: float, step: float):
        query = QUERIES.index(promql)
        grid = start + step * np.arange(math.floor((end - start) / step + 1e-9) + 1)
        values = self.values(query, grid)
        times = grid.tolist()
        return [
            Series(dict(labels), list(zip(times, row.tolist(), strict=True)))
            for labels, row in zip(self.labels, values, strict=True)
        ]


def suite_config(gpus: int, history_seconds: float) -> DetectorConfig:
    model = ModelConfig(
        kind="ensemble",
        ensemble=EnsembleConfig(forecaster=ForecasterConfig(enabled=True)),
    )
    return DetectorConfig(
        queries=tuple(QueryConfig(q, q, step_seconds=STEP) for q in QUERIES),
        entities=(
            EntityConfig("gpu_pca", QUERIES, ("instance", "gpu"), method="pca"),
            EntityConfig(
                "gpu_autoencoder", QUERIES, ("instance", "gpu"), method="autoencoder"
            ),
        ),
        model=model,
        interval_seconds=STEP,
        query_delay_seconds=0.0,
        history_seconds=history_seconds,
        max_series=len(QUERIES) * gpus,
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def steady_engine(gpus: int, templates: int) -> tuple[Engine, Clock, SyntheticClient]:
    """An engine over `gpus` GPUs whose models all start warm.

    `templates` GPUs are run through the engine for real (a long first cycle,
    then one point per cycle until every model and entity decides); the other
    GPUs get copies of their states. The harness reaches into the engine for
    that, which the service never does.
    """
    start = 1_700_000_000.0
    client = SyntheticClient(gpus)
    small = SyntheticClient(templates)
    small.level, small.swing, small.phase = (
        a[:, :templates] for a in (client.level, client.swing, client.phase)
    )
    clock = Clock(start + HISTORY_POINTS * STEP)
    history = (HISTORY_POINTS + 10) * STEP
    warm = Engine(
        suite_config(templates, history), small, clock=clock, executor=InlineExecutor()
    )
    warm.run_cycle()
    while not _entities_decide(warm):
        clock.now += STEP
        warm.run_cycle()

    clock_big = Clock(clock.now)
    big = Engine(
        suite_config(gpus, history), client, clock=clock_big, executor=InlineExecutor()
    )
    for name, family in big._families.items():
        source = warm._families[name]
        family._forecaster = source._forecaster
        family.schedule = _schedule_like(source.schedule)
        for g, labels in enumerate(client.labels):
            key = tuple(sorted(labels.items()))
            template = source.tracks[tuple(sorted(small.labels[g % templates].items()))]
            family.tracks[key] = copy.deepcopy(template)
        big._cursor[name] = warm._cursor[name]
    for group, source in zip(big._groups, warm._groups, strict=True):
        group._reconstructor = source._reconstructor
        group.schedule = _schedule_like(source.schedule)
        templates_by_gpu = list(source.entities.values())
        for g, labels in enumerate(client.labels):
            key = tuple(labels[j] for j in group.config.join)
            entity = copy.deepcopy(templates_by_gpu[g % templates])
            entity.labels = {j: labels[j] for j in group.config.join}
            group.entities[key] = entity
    return big, clock_big, client


def _schedule_like(schedule: Schedule | None) -> Schedule | None:
    if schedule is None:
        return None
    return Schedule(schedule.every_seconds, schedule.last_trained)


def _entities_decide(engine: Engine) -> bool:
    return all(
        e.latest is not None and e.latest.warm
        for g in engine._groups
        for e in g.entities.values()
    ) and all(
        t.latest is not None and t.latest.warm
        for f in engine._families.values()
        for t in f.tracks.values()
    )


def measure_cycles(engine: Engine, clock: Clock, cycles: int) -> list[float]:
    cpu = []
    for _ in range(cycles):
        clock.now += STEP
        start = time.process_time()
        engine.run_cycle()
        cpu.append(time.process_time() - start)
    return cpu


def measure_training(engine: Engine, clock: Clock) -> dict[str, float]:
    """CPU of one scheduled fit of every shared model, on the big engine."""
    out = {}
    for name, family in engine._families.items():
        family.schedule._last_attempt = -math.inf
        start = time.process_time()
        family.maybe_retrain(clock.now)
        out[f"forecaster:{name}"] = time.process_time() - start
    for group in engine._groups:
        group.schedule._last_attempt = -math.inf
        start = time.process_time()
        group.maybe_retrain(clock.now)
        out[f"{group.config.method}:{group.name}"] = time.process_time() - start
    return out


def prophet_seconds(values: np.ndarray) -> dict[str, float] | None:
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {BENCH_VENV} with prophet (once)", file=sys.stderr)
        created = subprocess.run(
            [sys.executable, "-m", "venv", str(BENCH_VENV)], check=False
        )
        installed = created.returncode == 0 and (
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "prophet"], check=False
            ).returncode
            == 0
        )
        if not installed:
            print("prophet unavailable; upkeep_vs_prophet is null", file=sys.stderr)
            return None
    run = subprocess.run(
        [str(python), "-c", PROPHET_SCRIPT],
        input=json.dumps(values.tolist()),
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        print(run.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])


def two_week_series() -> np.ndarray:
    client = SyntheticClient(1)
    t = 1_700_000_000.0 + 300.0 * np.arange(TWO_WEEKS)
    return client.values(0, t)[0]


def nab_backtest_seconds(quick: bool) -> float | None:
    if not NAB_DATA.is_dir():
        return None
    with tempfile.TemporaryDirectory(prefix="bench-detector-") as out:
        data = NAB_DATA
        if quick:
            data = NAB_DATA / "realAWSCloudwatch"
        start = time.monotonic()
        code = backtest.run(backtest.parse(["--data", str(data), "--out", out]))
        seconds = time.monotonic() - start
    return seconds if code == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="1,000 series, fewer cycles"
    )
    parser.add_argument("--series", type=int, help="series in all (default 10,000)")
    parser.add_argument("--cycles", type=int, help="measured cycles (default 20)")
    args = parser.parse_args(argv)
    series = args.series or (1_000 if args.quick else 10_000)
    cycles = args.cycles or (5 if args.quick else 20)
    gpus = max(1, series // len(QUERIES))

    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    started = time.monotonic()
    engine, clock, _ = steady_engine(gpus, templates=min(8, gpus))
    setup = time.monotonic() - started
    print(f"steady state for {gpus * len(QUERIES)} series in {setup:.0f}s")

    cycle_cpu = measure_cycles(engine, clock, cycles)
    per_cycle = float(np.median(cycle_cpu))
    training = measure_training(engine, clock)
    # Each shared model retrains once a day (retrain_seconds): its CPU spread
    # over the day's wall time.
    training_share = sum(training.values()) / DAY
    cores = per_cycle / STEP + training_share
    print(f"cycle CPU median {per_cycle:.3f}s over {cycles} cycles of {STEP:.0f}s")
    for name, seconds in training.items():
        print(f"fit {name}: {seconds:.2f}s CPU")

    n = gpus * len(QUERIES)
    upkeep = sum(training.values()) / n
    prophet = prophet_seconds(two_week_series())
    ratio = upkeep / prophet["fit"] if prophet else None

    nab = nab_backtest_seconds(args.quick)
    result = {
        "cores": round(cores, 4),
        "upkeep_vs_prophet": None if ratio is None else round(ratio, 6),
        "backtest_seconds": None if nab is None else round(nab, 2),
        "series": n,
        "step_seconds": STEP,
        "cycle_cpu_seconds": round(per_cycle, 4),
        "training_cpu_seconds_per_day": round(sum(training.values()), 3),
        "upkeep_cpu_seconds_per_series": round(upkeep, 6),
        "prophet_fit_cpu_seconds": None
        if prophet is None
        else round(prophet["fit"], 3),
        "prophet_predict_cpu_seconds": (
            None if prophet is None else round(prophet["predict"], 3)
        ),
        "quick": args.quick,
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
