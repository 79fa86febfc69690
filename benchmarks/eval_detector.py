"""Detection quality on NAB: `aiops backtest` plus the shared scorer.

Runs the detector's backtest over ../shared/data/nab/data (relative to the
project's root), scores it with ../shared/tools/score-detection, prints the
scorer's table and the issue's anchors next to our mean, then one line
`RESULT {...}`. Exits 0 with a note when the data or the scorer is absent.

    python benchmarks/eval_detector.py [--quick] [--out DIR] [--config.file F]

--quick replays four files only (one per kind of anomaly) and scores those.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from detector import backtest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
NAB = SHARED / "data" / "nab"
SCORER = SHARED / "tools" / "score-detection"

QUICK_FILES = (
    "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_77c1ca.csv",
    "realAWSCloudwatch/ec2_network_in_257a54.csv",
    "realKnownCause/ec2_request_latency_system_failure.csv",
)

# The table: each detector scored on ../shared/data/nab by the same
# scorer (VUS-PR, mean event F1 of its 0/1 decisions).
ANCHORS = (
    ("Sub-PCA (TSB-AD, not causal)", 0.445, 0.56),
    ("Isolation Forest (TSB-AD, not causal)", 0.388, 0.46),
    ("Numenta HTM (NAB results)", 0.328, 0.60),
    ("Random Cut Forest (NAB results)", 0.293, 0.57),
    ("contextOSE (NAB results)", 0.162, 0.71),
    ("random score", 0.119, 0.07),
)
TARGET = (0.50, 0.75)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="four files only")
    parser.add_argument("--out", type=Path, help="keep the scores here")
    parser.add_argument("--config.file", dest="config_file", type=Path)
    args = parser.parse_args(argv)

    if not (NAB / "labels.json").is_file() or not SCORER.is_file():
        print(f"eval_detector: skipped, needs {NAB} and {SCORER}")
        return 0

    with tempfile.TemporaryDirectory(prefix="eval-detector-") as scratch:
        work = Path(scratch)
        data, labels = _inputs(work, args.quick)
        out = args.out or work / "scores"
        started = time.monotonic()
        config = ["--config.file", str(args.config_file)] if args.config_file else []
        code = backtest.run(
            backtest.parse(["--data", str(data), "--out", str(out), *config])
        )
        seconds = time.monotonic() - started
        if code != 0:
            return code

        report = work / "score.json"
        scored = subprocess.run(
            [
                str(SCORER),
                "--labels",
                str(labels),
                "--data",
                str(data),
                "--scores",
                str(out),
                "--json",
                str(report),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if scored.returncode != 0:
            print(scored.stderr, file=sys.stderr)
            return scored.returncode
        print(scored.stdout)
        result = json.loads(report.read_text())

    mean, pooled = result["mean"], result["pooled"]
    _print_anchors(mean)
    line = {
        "vus_pr": round(mean["VUS-PR"], 4),
        "event_f1": round(mean["event_F1"], 4),
        "auc_pr": round(mean["AUC-PR"], 4),
        "event_precision": round(mean["event_precision"], 4),
        "event_recall": round(mean["event_recall"], 4),
        "pooled_event_f1": round(pooled["event_F1"], 4),
        "false_alarms": pooled["false_alarms"],
        "files": mean["files"],
        "backtest_seconds": round(seconds, 2),
        "quick": args.quick,
    }
    print("RESULT " + json.dumps(line))
    return 0


def _inputs(work: Path, quick: bool) -> tuple[Path, Path]:
    if not quick:
        return NAB / "data", NAB / "labels.json"
    # The scorer scores every file its labels list, so quick mode hands it a
    # labels file of the chosen few and a folder of links to their data.
    labels = json.loads((NAB / "labels.json").read_text())
    data = work / "data"
    for rel in QUICK_FILES:
        target = data / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(NAB / "data" / rel)
    subset = work / "labels.json"
    subset.write_text(json.dumps({rel: labels[rel] for rel in QUICK_FILES}))
    return data, subset


def _print_anchors(mean: dict) -> None:
    rows = [
        ("this detector (causal, one configuration)", mean["VUS-PR"], mean["event_F1"])
    ]
    rows += list(ANCHORS)
    rows.append(("target", *TARGET))
    width = max(len(name) for name, _, _ in rows)
    print(f"{'detector':<{width}}  {'VUS-PR':>7}  {'event F1':>8}")
    for name, vus, f1 in rows:
        print(f"{name:<{width}}  {vus:>7.3f}  {f1:>8.3f}")


if __name__ == "__main__":
    sys.exit(main())
