"""Scores the optimizer's policies on the shared usage traces, with the anchors.

Replays every recorded resource under the allocation protocol with the
learning policy and the reference policies (VPA-style, KRR-style, moving-window
max), builds the look-ahead oracle, scores each with the shared
score-allocation tool, adds the hindsight bounds of optimizer_bound.py (how
low a window-percentile rule can go with its choice made in hindsight), then
cross-fits the learnt prior of train_optimizer.py: the series are split in two
halves by a stable hash of their id, a prior learnt on one half of every
resource sizes the other half, both ways, and the two held-out halves are
scored together, next to the policy without a prior on the same halves.
Prints the tables and one `RESULT {...}` line. Needs
`<repo>/../shared/data` and `<repo>/../shared/tools/score-allocation`; exits 0
with a note when they are absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.optimizer_arm_bound import arm_bounds, second_half_cost
from benchmarks.optimizer_bound import bounds
from benchmarks.train_optimizer import collect, fit, half
from detector.optimizer.agent import BanditPolicy
from detector.optimizer.agent_config import AgentConfig
from detector.optimizer.backtest import write_allocations
from detector.optimizer.fleet import Fleet, Row
from detector.optimizer.policies import make_policy
from detector.optimizer.resources import RECORDED, ResourceSpec
from detector.optimizer.sizer import DEFAULT
from detector.optimizer.usage import load_usage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
SCORER = ROOT.parent / "shared" / "tools" / "score-allocation"

# The targets: pooled cost = slack% + 10 x violation%.
TARGETS = {
    "vm_cpu": 75.0,
    "pod_gpu_memory_used_bytes": 30.0,
    "pod_memory_util": 12.0,
    "pod_gpu_duty_cycle": 87.0,
}
VIOLATION_WEIGHT = 10.0
ANCHORS = ("vpa-style", "krr-style", "window-max")
OURS = "bandit"


def oracle(usage: dict, spec: ResourceSpec) -> list[Row]:
    """Each period's own peak, known in advance: the zero-violation look-ahead."""
    rows = []
    period = spec.period_seconds
    for key, (t, u) in usage.items():
        start = t[0] + spec.warmup_seconds
        if t[-1] < start:
            continue
        at, previous = start, None
        while at <= t[-1]:
            inside = u[(t >= at) & (t < at + period)]
            value = float(inside.max()) if inside.size else previous
            if value is None:
                # The first period has no reading: hold the first one to come.
                value = float(u[t >= at][0])
            if value != previous:
                rows.append(Row(at, key, value))
                previous = value
            at += period
    return rows


def score(usage_path: Path, resource: str, csv_path: Path, lookahead: bool) -> dict:
    command = [sys.executable, str(SCORER), str(usage_path), resource, str(csv_path)]
    command += ["--json", "-"] + (["--allow-lookahead"] if lookahead else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"score-allocation rejected {csv_path}: {done.stderr.strip()}"
        )
    aggregate = json.loads(done.stdout)["results"][0]["aggregate"]
    slack = 100 * aggregate["slack"]
    violation = 100 * aggregate["violation_rate"]
    return {
        "slack": round(slack, 2),
        "violation": round(violation, 3),
        "cost": round(slack + 10 * violation, 2),
        "changes_per_day": round(aggregate["changes_per_series_day"], 2),
    }


def evaluate(resource: str, data: Path, workdir: Path) -> dict[str, dict]:
    layout = RECORDED[resource]
    path = data / layout.path
    usage = load_usage(path, layout).series
    results = {}
    for name in (OURS, *ANCHORS):
        policy, rules = make_policy(name)
        began = time.monotonic()
        rows = Fleet(layout.spec, policy, rules).feed(usage)
        out = workdir / f"{resource}.{name}.csv"
        write_allocations(out, rows)
        results[name] = score(path, resource, out, lookahead=False)
        results[name]["seconds"] = round(time.monotonic() - began, 1)
        if name == OURS:
            results[name]["second_half_cost"] = second_half_cost(
                usage, layout.spec, rows, VIOLATION_WEIGHT
            )
        print(f"  {resource} {name}: {results[name]}", file=sys.stderr)
    out = workdir / f"{resource}.oracle.csv"
    write_allocations(out, oracle(usage, layout.spec))
    results["oracle"] = score(path, resource, out, lookahead=True)
    # Memory's target also caps short readings at the VPA-style policy's rate.
    cap = results["vpa-style"]["violation"] if layout.spec.kind == "memory" else None
    results["bounds"] = bounds(usage, layout.spec, VIOLATION_WEIGHT, cap)
    results["arm_bounds"] = arm_bounds(usage, layout.spec, VIOLATION_WEIGHT)
    return results


def cross_fit(
    resources: list[str], data: Path, workdir: Path
) -> dict[str, dict[str, dict]]:
    """Held-out scores: each half sized by a prior learnt on the other half."""
    usages = {
        r: load_usage(data / RECORDED[r].path, RECORDED[r]).series for r in resources
    }
    halves = {
        r: [{k: v for k, v in u.items() if half(k) == h} for h in (0, 1)]
        for r, u in usages.items()
    }
    # A prior learns across every resource, as `make train-optimizer` does.
    priors = [fit(collect(halves[r][1 - h], r) for r in resources) for h in (0, 1)]
    results: dict[str, dict[str, dict]] = {}
    for resource in resources:
        spec, path = RECORDED[resource].spec, data / RECORDED[resource].path
        results[resource] = {}
        for name, chosen in (("none", [None, None]), ("prior", priors)):
            rows: list[Row] = []
            for h in (0, 1):
                policy = BanditPolicy(AgentConfig(), prior=chosen[h])
                rows += Fleet(spec, policy, DEFAULT).feed(halves[resource][h])
            out = workdir / f"{resource}.held-out.{name}.csv"
            write_allocations(out, rows)
            results[resource][name] = score(path, resource, out, lookahead=False)
            print(
                f"  {resource} held out, {name}: {results[resource][name]}",
                file=sys.stderr,
            )
    return results


def held_out_table(held: dict[str, dict[str, dict]]) -> str:
    lines = [
        "| resource (held-out halves) | no prior: slack / viol. / cost "
        "| learnt prior: slack / viol. / cost |",
        "|---|---|---|",
    ]
    for resource, r in held.items():
        cells = [
            f"{r[n]['slack']:.1f} / {r[n]['violation']:.3f} / {r[n]['cost']:.1f}"
            for n in ("none", "prior")
        ]
        lines.append(f"| {resource} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def arm_table(all_results: dict[str, dict[str, dict]]) -> str:
    lines = [
        "| resource | target | whole series: ours | whole: one arm per series, "
        "in hindsight | second halves: ours | second halves: one arm per "
        "series, in hindsight | second halves: the arm the first half picks |",
        "|---|---|---|---|---|---|---|",
    ]
    for resource, r in all_results.items():
        a = r["arm_bounds"]
        lines.append(
            f"| {resource} | <= {TARGETS[resource]:g} | {r[OURS]['cost']:.1f} "
            f"| {a['arm_per_series']:.1f} | {r[OURS]['second_half_cost']:.1f} "
            f"| {a['arm_per_series_second_half']:.1f} "
            f"| {a['arm_learnt_on_first_half']:.1f} |"
        )
    return "\n".join(lines)


def table(all_results: dict[str, dict[str, dict]]) -> str:
    def pair(r: dict) -> str:
        return f"{r['slack']:.1f} / {r['violation']:.2f}"

    head = (
        "| resource | VPA-style slack / viol. | KRR-style | moving-window max "
        "| best anchor cost | oracle (zero viol.) | target | ours slack / viol. "
        "| ours cost | met | hindsight: one rule / rule per series "
        "(within VPA's violations) [and under the OOM floor] / look-ahead |"
    )
    lines = [head, "|" + "---|" * 11]
    for resource, r in all_results.items():
        best = min(r[a]["cost"] for a in ANCHORS)
        ours, b = r[OURS], r["bounds"]
        capped = b.get("rule_per_series_capped")
        per_series = f"{b['rule_per_series']:.1f}" + (
            "" if capped is None else f" ({capped:.1f})"
        )
        floored = b.get("rule_per_series_floor_capped")
        if floored is not None:
            per_series += f" [{floored:.1f}]"
        met = ours["cost"] <= TARGETS[resource]
        if RECORDED[resource].spec.kind == "memory":
            met = met and ours["violation"] <= r["vpa-style"]["violation"]
        lines.append(
            f"| {resource} | {pair(r['vpa-style'])} | {pair(r['krr-style'])} "
            f"| {pair(r['window-max'])} | {best:.1f} | {r['oracle']['slack']:.1f} "
            f"| <= {TARGETS[resource]:g} | {pair(ours)} | {ours['cost']:.1f} "
            f"| {'yes' if met else 'no'} | {b['one_rule']:.1f} / "
            f"{per_series} / {b['lookahead']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data")
    parser.add_argument(
        "--resource", action="append", choices=sorted(RECORDED), help="repeatable"
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir() or not SCORER.is_file():
        print(f"skipped: needs {args.data} and {SCORER}", file=sys.stderr)
        return 0
    torch.set_num_threads(1)
    np.seterr(all="ignore")

    all_results = {}
    resources = args.resource or list(RECORDED)
    with tempfile.TemporaryDirectory(prefix="eval-optimizer-") as tmp:
        for resource in resources:
            all_results[resource] = evaluate(resource, args.data, Path(tmp))
        held = cross_fit(resources, args.data, Path(tmp))
    print(
        "cost: slack% + 10 x violation%, pooled over every scored reading of "
        "the resource (the protocol's score; the learning policy weighs a "
        "short memory reading 3 times more while it learns, this score does "
        "not). ours: the default learning policy, bandit. A policy's column "
        "gives slack% / violation%. target: the project's cost target for "
        "the resource; met: cost at or under it and, on memory, no more "
        "violations than the VPA-style policy. best anchor: the cheapest of "
        "VPA-style, KRR-style and moving-window max. oracle: each period "
        "sized to its own peak, known in advance (no violation; look-ahead "
        "below may take some where they cost less)."
    )
    print(table(all_results))
    print(
        "hindsight: the cost of a causal rule (a percentile of the last H "
        "periods plus a margin, set every U) picked with hindsight for all "
        "series, per series, and each period's best allocation (look-ahead); "
        "no reactions; in round brackets, for memory, the rule per series with "
        "no more violations than the VPA-style policy; in square brackets, that "
        "rule under the OOM floor the optimizer keeps (never below a reading "
        "that ran short)."
    )
    print(arm_table(all_results))
    print(
        "arms: the learning policy's own arms, one held per series (above the "
        "OOM floor on memory), picked knowing the series, knowing its second "
        "half, or on its first half alone; second halves: the cost on the "
        "readings of each series' second half of whole update periods."
    )
    print(held_out_table(held))
    print(
        "held-out halves: the series split in two by a hash of their id, each "
        "half replayed on its own (a learner of its own; the prior learnt on "
        "the other half), both halves scored together; not the time halves "
        "above."
    )
    summary = {
        resource: {
            "cost": r[OURS]["cost"],
            "slack": r[OURS]["slack"],
            "violation": r[OURS]["violation"],
            "changes_per_day": r[OURS]["changes_per_day"],
            "target": TARGETS[resource],
            "vpa_violation": r["vpa-style"]["violation"],
            "best_anchor_cost": min(r[a]["cost"] for a in ANCHORS),
            "oracle_slack": r["oracle"]["slack"],
            "hindsight_bounds": r["bounds"],
            "arm_bounds": r["arm_bounds"],
            "second_half_cost": r[OURS]["second_half_cost"],
            "held_out": held[resource],
        }
        for resource, r in all_results.items()
    }
    print("RESULT " + json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
