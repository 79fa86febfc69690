"""Evaluates the diagnosis on labelled scenarios: real GPU pod series from
../shared/data/alibaba-genai with one faulty pod each, and this host's /proc
with processes the evaluation starts and stops. Ends with `RESULT <json>`.

Needs the data directory for the pod scenarios (skipped without it) and a
Linux /proc for the host ones. Randomness is seeded.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.diagnosis import gpufault, pattern
from detector.diagnosis.rootcause import Candidate, Ranking, Window, rank_causes

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEED = 20260504
CANDIDATES = 5
BASELINE_POINTS = 60
WINDOW_POINTS = 20
PER_KIND = 9
# Xid codes and the action NVIDIA's catalog gives them, as the exporter labels
# its aiops_gpu_xid_errors_total series.
XIDS = (
    (13, gpufault.APPLICATION_FAULT),
    (31, gpufault.APPLICATION_FAULT),
    (48, gpufault.RESET_GPU),
    (62, gpufault.RESET_GPU),
    (79, gpufault.REBOOT),
    (64, gpufault.DRAIN_AND_INSPECT),
)


@dataclass(frozen=True)
class Scenario:
    name: str
    candidates: tuple[Candidate, ...]
    window: Window
    target: tuple[tuple[float, float], ...] | None
    direction: int | None
    truth: str
    fault_class: str
    quantity: str
    # Evidence per candidate name, for GPU fault scenarios.
    evidence: dict[str, gpufault.GpuEvidence] | None = None


@dataclass(frozen=True)
class Outcome:
    name: str
    top1: bool
    top3: bool
    fault_class: bool
    said: str


# -- pod scenarios ---------------------------------------------------------


def load_pods(path: Path) -> dict[str, dict[float, float]]:
    pods: dict[str, dict[float, float]] = defaultdict(dict)
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for timestamp, container, value in reader:
            pods[container][float(timestamp)] = float(value)
    return pods


def pod_scenarios(data: Path, rng: np.random.Generator) -> list[Scenario]:
    duty = load_pods(data / "alibaba-genai" / "pod_gpu_duty_cycle.csv.gz")
    memory = load_pods(data / "alibaba-genai" / "pod_gpu_memory_used_bytes.csv.gz")
    grid = sorted({t for series in duty.values() for t in series})
    full = sorted(
        c
        for c in duty
        if len(duty[c]) == len(grid) and len(memory.get(c, {})) == len(grid)
    )
    span = BASELINE_POINTS + WINDOW_POINTS
    makers: dict[str, Callable[..., Scenario | None]] = {
        "runaway": _runaway,
        "memory_leak": _leak,
        "stuck_idle": _stuck_idle,
        "stuck_busy": _stuck_busy,
        "thermal": _thermal,
        "xid_storm": _xid_storm,
    }
    scenarios = []
    for kind, make in makers.items():
        made = 0
        while made < PER_KIND:
            first = int(rng.integers(0, len(grid) - span))
            times = np.array(grid[first : first + span])
            pods = list(rng.choice(full, size=CANDIDATES, replace=False))
            util = {p: np.array([duty[p][t] for t in times]) / 100 for p in pods}
            mem = {p: np.array([memory[p][t] for t in times]) for p in pods}
            scenario = make(f"{kind}-{made}", times, util, mem, rng)
            if scenario is not None:
                scenarios.append(scenario)
                made += 1
    return scenarios


def _window(times: np.ndarray) -> Window:
    return Window(float(times[0]), float(times[BASELINE_POINTS]), float(times[-1]))


def _pick(values: dict[str, np.ndarray], test: Callable[[np.ndarray], bool], rng):
    fit = [p for p, v in values.items() if test(v[:BASELINE_POINTS])]
    return str(rng.choice(fit)) if fit else None


def _scenario(name, times, series, faulty, truth_class, quantity, kind="pod", **extra):
    candidates = tuple(
        Candidate(
            kind,
            p,
            {"container_id": p},
            tuple(zip(times.tolist(), v.tolist(), strict=True)),
        )
        for p, v in series.items()
    )
    total = np.sum(list(series.values()), axis=0)
    target = tuple(zip(times.tolist(), total.tolist(), strict=True))
    if extra.pop("no_target", False):
        target = None
    # The side the detector saw the anomaly leave its band on.
    direction = -1 if truth_class == pattern.STUCK_IDLE else 1
    return Scenario(
        name,
        candidates,
        _window(times),
        target,
        direction,
        faulty,
        truth_class,
        quantity,
        **extra,
    )


def _runaway(name, times, util, mem, rng):
    faulty = _pick(util, lambda b: np.median(b) < 0.5, rng)
    if faulty is None:
        return None
    jump = rng.uniform(0.35, 0.6)
    util[faulty][BASELINE_POINTS:] = np.minimum(
        util[faulty][BASELINE_POINTS:] + jump, 0.995
    )
    return _scenario(name, times, util, faulty, pattern.RUNAWAY, pattern.UTILIZATION)


def _leak(name, times, util, mem, rng):
    faulty = str(rng.choice(list(mem)))
    gigabytes = rng.uniform(6, 14)
    ramp = np.linspace(0, gigabytes * 2**30, WINDOW_POINTS)
    mem[faulty][BASELINE_POINTS:] += ramp
    return _scenario(name, times, mem, faulty, pattern.MEMORY_LEAK, pattern.MEMORY)


def _stuck_idle(name, times, util, mem, rng):
    faulty = _pick(util, lambda b: np.median(b) >= 0.2, rng)
    if faulty is None:
        return None
    util[faulty][BASELINE_POINTS:] = 0.0
    return _scenario(name, times, util, faulty, pattern.STUCK_IDLE, pattern.UTILIZATION)


def _stuck_busy(name, times, util, mem, rng):
    faulty = _pick(util, lambda b: np.median(b) <= 0.6, rng)
    if faulty is None:
        return None
    util[faulty][BASELINE_POINTS:] = 1.0
    return _scenario(name, times, util, faulty, pattern.STUCK_BUSY, pattern.UTILIZATION)


def _thermal(name, times, util, mem, rng):
    # Each pod stands for one GPU; its temperature follows its real duty cycle.
    temps = {p: 34 + 45 * v + rng.normal(0, 0.7, v.size) for p, v in util.items()}
    faulty = str(rng.choice(list(temps)))
    temps[faulty][BASELINE_POINTS:] += np.linspace(
        8, rng.uniform(18, 30), WINDOW_POINTS
    )
    evidence = {p: gpufault.GpuEvidence() for p in temps}
    evidence[faulty] = gpufault.GpuEvidence(clock_reasons={"sw_thermal_slowdown": 1})
    # A busy neighbour at its power cap is normal and must not be the answer.
    other = str(rng.choice([p for p in temps if p != faulty]))
    evidence[other] = gpufault.GpuEvidence(clock_reasons={"sw_power_cap": 1})
    return _scenario(
        name,
        times,
        temps,
        faulty,
        gpufault.THERMAL_THROTTLE,
        "temperature",
        kind="gpu",
        evidence=evidence,
        no_target=True,
    )


def _xid_storm(name, times, util, mem, rng):
    # Xid events per step per GPU; one stray application Xid on a neighbour.
    counts = {p: np.zeros(times.size) for p in util}
    faulty = str(rng.choice(list(counts)))
    xid, action = XIDS[int(rng.integers(len(XIDS)))]
    counts[faulty][BASELINE_POINTS:] = rng.poisson(3, WINDOW_POINTS) + 1
    stray = str(rng.choice([p for p in counts if p != faulty]))
    counts[stray][int(rng.integers(0, times.size))] = 1
    after_remedy = bool(rng.integers(2)) and action != gpufault.DRAIN_AND_INSPECT
    remedies = (
        (gpufault.Remedy(action, float(times[BASELINE_POINTS - 5])),)
        if after_remedy
        else ()
    )
    truth = action
    if after_remedy:
        truth = gpufault.LADDER[gpufault.LADDER.index(action) + 1]
    evidence = {p: gpufault.GpuEvidence() for p in counts}
    evidence[faulty] = gpufault.GpuEvidence(
        xids=(
            gpufault.XidEvent(
                xid, action, float(counts[faulty].sum()), float(times[-1])
            ),
        ),
        remedies=remedies,
    )
    evidence[stray] = gpufault.GpuEvidence(
        xids=(gpufault.XidEvent(13, gpufault.APPLICATION_FAULT, 1.0, float(times[0])),)
    )
    return _scenario(
        name,
        times,
        counts,
        faulty,
        truth,
        "xid",
        kind="gpu",
        evidence=evidence,
        no_target=True,
    )


# -- host scenarios --------------------------------------------------------

_CHILD = """
import ctypes, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
mode, limit = sys.argv[2], time.monotonic() + float(sys.argv[3])
held = [bytearray(8 << 20)]
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
if mode == "cpu":
    while time.monotonic() < limit:
        pass
elif mode == "step":
    held.append(bytearray(320 << 20))
    time.sleep(max(0.0, limit - time.monotonic()))
else:
    while time.monotonic() < limit:
        if len(held) < 24:
            held.append(bytearray(16 << 20))
        time.sleep(0.1)
"""

SAMPLE_SECONDS = 0.2
HOST_BASELINE = 10
HOST_WINDOW = 12


def _proc_groups(page: int) -> dict[str, tuple[float, float]]:
    """comm -> (CPU ticks, resident bytes) summed over this host's processes."""
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            statm = Path(entry.path, "statm").read_text().split()
        except OSError:
            continue  # exited between the listing and the read
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        groups[comm][0] += float(fields[11]) + float(fields[12])
        groups[comm][1] += float(statm[1]) * page
    return {k: (v[0], v[1]) for k, v in groups.items()}


def _host_totals() -> tuple[float, float]:
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [float(x) for x in cpu]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    info = dict(
        (line.split(":")[0], float(line.split()[1]))
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.split()[0].rstrip(":") in ("MemTotal", "MemAvailable")
    )
    return busy, (info["MemTotal"] - info["MemAvailable"]) * 1024


def host_scenario(name: str, mode: str) -> Scenario:
    """Start one named child, sample /proc before and while it misbehaves."""
    page = os.sysconf("SC_PAGE_SIZE")
    cores = os.cpu_count() or 1
    comm = f"aiops-{mode}{name[-1]}"
    seconds = SAMPLE_SECONDS * (HOST_WINDOW + 2)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, comm, mode, str(seconds + 5)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    samples: list[
        tuple[float, dict[str, tuple[float, float]], tuple[float, float]]
    ] = []
    try:
        assert child.stdout is not None and child.stdin is not None
        child.stdout.readline()
        for i in range(HOST_BASELINE + HOST_WINDOW + 1):
            if i == HOST_BASELINE + 1:
                child.stdin.write("go\n")
                child.stdin.flush()
            samples.append((time.monotonic(), _proc_groups(page), _host_totals()))
            time.sleep(SAMPLE_SECONDS)
    finally:
        child.kill()
        child.wait(timeout=10)

    hz = os.sysconf("SC_CLK_TCK")
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    target = []
    for (t0, g0, h0), (t1, g1, h1) in zip(samples, samples[1:], strict=False):
        capacity = (t1 - t0) * hz * cores
        if mode == "cpu":
            target.append((t1, (h1[0] - h0[0]) / capacity))
            for key, (ticks, _) in g1.items():
                if key in g0:
                    series[key].append((t1, max(0.0, ticks - g0[key][0]) / capacity))
        else:
            target.append((t1, h1[1]))
            for key, (_, rss) in g1.items():
                series[key].append((t1, rss))
    times = [t for t, _ in target]
    window = Window(times[0], times[HOST_BASELINE], times[-1])
    kind = "process_group"
    candidates = tuple(
        Candidate(kind, key, {"command": key}, tuple(points))
        for key, points in series.items()
    )
    truth_class = {
        "cpu": pattern.RUNAWAY,
        "leak": pattern.MEMORY_LEAK,
        "step": pattern.RUNAWAY,
    }[mode]
    quantity = pattern.USAGE if mode == "cpu" else pattern.MEMORY
    # The detector saw the host series leave its band upwards; on a host
    # other work keeps busy, the total itself may barely move.
    return Scenario(
        name, candidates, window, tuple(target), 1, comm, truth_class, quantity
    )


# -- scoring ---------------------------------------------------------------


def judge(scenario: Scenario) -> Outcome:
    ranking: Ranking = rank_causes(
        scenario.candidates, scenario.window, scenario.target, scenario.direction
    )
    names = [c.name for c in ranking.causes]
    said = names[0] if names else "(none)"
    if scenario.evidence is not None:
        evidence = scenario.evidence.get(said, gpufault.GpuEvidence())
        fault = gpufault.diagnose_gpu(evidence).fault_class
    elif names:
        top = next(c for c in scenario.candidates if c.name == said)
        before = [v for t, v in top.points if t < scenario.window.start]
        during = [v for t, v in top.points if t >= scenario.window.start]
        fault = pattern.classify_shape(before, during, scenario.quantity)
    else:
        fault = pattern.UNKNOWN
    return Outcome(
        scenario.name,
        said == scenario.truth,
        scenario.truth in names[:3],
        fault == scenario.fault_class,
        f"{said} / {fault}",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--host", type=int, default=2, help="host scenarios per kind")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(SEED)
    scenarios: list[Scenario] = []
    if (args.data / "alibaba-genai").is_dir():
        scenarios += pod_scenarios(args.data, rng)
    else:
        print(f"no data at {args.data}: pod scenarios skipped", file=sys.stderr)
    if Path("/proc/stat").exists():
        for mode in ("cpu", "leak", "step"):
            scenarios += [
                host_scenario(f"host-{mode}-{i}", mode) for i in range(args.host)
            ]

    outcomes = [judge(s) for s in scenarios]
    for outcome in outcomes:
        marks = "".join(
            "+" if ok else "-"
            for ok in (outcome.top1, outcome.top3, outcome.fault_class)
        )
        print(f"{outcome.name:<20} {marks}  {outcome.said}")
    count = len(outcomes) or 1
    result = {
        "scenarios": len(outcomes),
        "top1": round(sum(o.top1 for o in outcomes) / count, 4),
        "top3": round(sum(o.top3 for o in outcomes) / count, 4),
        "fault_class": round(sum(o.fault_class for o in outcomes) / count, 4),
    }
    print(
        "top-1 {top1:.3f}  top-3 {top3:.3f}  fault class {fault_class:.3f}".format(
            **result
        )
    )
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
