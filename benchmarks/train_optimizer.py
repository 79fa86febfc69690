"""Learns the optimizer's arm prior from replayed usage (`make train-optimizer`).

Replays the series of every recorded resource with the policy's fallback (no
prior), collects at each settled period the context and every arm's outcome,
and fits a small network that predicts an arm's slack and share of short
readings from them; writes the weights that detector/optimizer/prior.py reads.
`--half` learns on one half of the series only (split by a stable hash of the
series id), so that eval_optimizer.py can score the other half held out.
Needs `<repo>/../shared/data` or `--data`.
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detector.optimizer.agent import BanditPolicy
from detector.optimizer.agent_config import AgentConfig
from detector.optimizer.fleet import Fleet
from detector.optimizer.outcome import Outcome
from detector.optimizer.prior import SHIPPED, SLACK_CAP, ArmPrior
from detector.optimizer.resources import RECORDED
from detector.optimizer.sizer import DEFAULT
from detector.optimizer.usage import load_usage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

# Every arm of every period would be ~2.5 million rows; a seeded sample of
# arms per period keeps training to seconds and loses little, as neighbouring
# arms have near-identical outcomes.
ARMS_PER_PERIOD = 48
HIDDEN = 32
EPOCHS = 6
BATCH = 2048
LEARNING_RATE = 3e-3
SEED = 0


def half(key: Hashable) -> int:
    """0 or 1, stable across runs and machines (unlike Python's hash)."""
    return zlib.crc32(str(key).encode()) % 2


@dataclass
class Samples:
    """Rows of (context, arm) inputs with the outcome that followed."""

    inputs: np.ndarray
    slack: np.ndarray
    short: np.ndarray


def collect(usage: dict, resource: str, seed: int = SEED) -> Samples:
    """Replay `usage` with the fallback policy; every settled period's rows."""
    rng = np.random.default_rng(seed)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def keep(outcome: Outcome) -> None:
        n = outcome.inputs.shape[0]
        # The hold arm (last) is always kept: it is the one chosen most.
        rows = np.append(rng.choice(n - 1, ARMS_PER_PERIOD, replace=False), n - 1)
        parts.append(
            (
                outcome.inputs[rows],
                outcome.slack[rows] / outcome.readings,
                outcome.violated[rows] / outcome.readings,
            )
        )

    policy = BanditPolicy(AgentConfig(), listener=keep)
    Fleet(RECORDED[resource].spec, policy, DEFAULT).feed(usage)
    if not parts:
        return Samples(np.empty((0, 0), np.float32), np.empty(0), np.empty(0))
    inputs, slack, short = (np.concatenate(p) for p in zip(*parts, strict=True))
    return Samples(inputs, slack, short)


def fit(samples: Iterable[Samples], seed: int = SEED) -> ArmPrior:
    """Fit the prior's network: squared error on slack, log-loss on short share."""
    chunks = [s for s in samples if s.inputs.size]
    x = np.concatenate([s.inputs for s in chunks]).astype(np.float64)
    y_slack = np.concatenate([s.slack for s in chunks])
    y_short = np.concatenate([s.short for s in chunks])
    # Arms that hold nothing yet carry NaN sizes upstream; they never win.
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y_slack)
    x, y_slack, y_short = x[ok], y_slack[ok], y_short[ok]
    y_slack = np.clip(y_slack, 0.0, SLACK_CAP)
    center = x.mean(axis=0)
    spread = np.maximum(x.std(axis=0), 1e-6)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Linear(x.shape[1], HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, 2),
        )
        inputs = torch.from_numpy(((x - center) / spread).astype(np.float32))
        slack = torch.from_numpy(y_slack.astype(np.float32))
        short = torch.from_numpy(np.clip(y_short, 0, 1).astype(np.float32))
        optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        log_loss = nn.BCEWithLogitsLoss()
        for _ in range(EPOCHS):
            order = torch.randperm(len(inputs))
            for lo in range(0, len(order), BATCH):
                pick = order[lo : lo + BATCH]
                out = net(inputs[pick])
                loss = ((out[:, 0] - slack[pick]) ** 2).mean() + log_loss(
                    out[:, 1], short[pick]
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    linears = [m for m in net if isinstance(m, nn.Linear)]
    layers = tuple(
        (
            m.weight.detach().numpy().T.astype(float),
            m.bias.detach().numpy().astype(float),
        )
        for m in linears
    )
    return ArmPrior(center, spread, layers)


def learn(data: Path, halves: set[int]) -> ArmPrior:
    """One prior across every recorded resource, from the series in `halves`."""
    samples = []
    for resource, layout in RECORDED.items():
        usage = load_usage(data / layout.path, layout).series
        kept = {k: v for k, v in usage.items() if half(k) in halves}
        samples.append(collect(kept, resource))
        print(
            f"  {resource}: {len(kept)} series, {len(samples[-1].slack)} rows",
            file=sys.stderr,
        )
    return fit(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data")
    parser.add_argument("--out", type=Path, default=SHIPPED, help="weights to write")
    parser.add_argument(
        "--half", type=int, choices=(0, 1), help="learn on this half only"
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"cannot learn: no data at {args.data}", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    np.seterr(all="ignore")

    halves = {0, 1} if args.half is None else {args.half}
    prior = learn(args.data, halves)
    args.out.write_text(json.dumps(prior.to_json()) + "\n")
    print(f"prior learnt on halves {sorted(halves)} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
