"""Root-cause ranking: which candidate series (process groups, containers, GPUs)
moved the way an anomalous host series moved, each against its own baseline.

Pure functions over points; the service feeds them from Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Points = Sequence[tuple[float, float]]

# MAD to standard deviation for normal data.
MAD_SCALE = 1.4826
# A candidate needs this many baseline points to have a baseline of its own.
MIN_BASELINE_POINTS = 3


@dataclass(frozen=True)
class Window:
    """The anomaly window [start, end] and the baseline span before it."""

    baseline_start: float
    start: float
    end: float

    @classmethod
    def ending_at(cls, end: float, window: float, baseline: float) -> Window:
        return cls(end - window - baseline, end - window, end)


@dataclass(frozen=True)
class Candidate:
    """One possible cause: its kind, a display name, its labels and points."""

    kind: str
    name: str
    labels: Mapping[str, str]
    points: Points
    # Usage that did not exist before the window (a process started in it)
    # had a baseline of zero, not an unknown one.
    absent_is_zero: bool = True


@dataclass(frozen=True)
class Cause:
    """A ranked candidate and the figures that ranked it."""

    rank: int
    kind: str
    name: str
    labels: Mapping[str, str]
    score: float
    # Share (0-1) of the host's change over the window that this cause made.
    share: float
    baseline: float
    level: float
    # The shift in robust deviations of the cause's own baseline.
    surprise: float

    @property
    def shift(self) -> float:
        return self.level - self.baseline


@dataclass(frozen=True)
class Ranking:
    """Causes in rank order, and what kept other candidates out."""

    causes: tuple[Cause, ...]
    direction: int
    target_shift: float | None
    missing: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Moved:
    candidate: Candidate
    baseline: float
    level: float
    scale: float
    recent: np.ndarray


def rank_causes(
    candidates: Sequence[Candidate],
    window: Window,
    target: Points | None = None,
    direction: int | None = None,
    top: int = 3,
    min_share: float = 0.05,
    min_surprise: float = 3.0,
) -> Ranking:
    """Rank `candidates` by how much of `target`'s shift each made.

    A candidate's shift is the median of the later half of its window points
    less the median of its baseline points: the detector flags the first
    anomalous point, so the early part of a window can still be normal. Its
    share is that shift, in the direction the target moved, over the target's
    own shift (or, without a target, the sum of all shifts in that direction).
    Its surprise is the larger of a sign test of its recent points against
    its baseline median and the shift over the standard error of a median of that
    many points drawn from its baseline (robust spread / sqrt(n)), the spread
    floored at 1% of the host's level so that a flat baseline does not turn
    noise into a cause. `direction` (+1 up, -1 down) is the side the anomaly
    left its band on, when the caller knows it; else the target's.

    Score = share x u / (u + 3), u being the shift in the baseline's own robust
    spreads: of two causes with like shares, the one less used to such moves
    ranks first. Candidates below `min_share` or `min_surprise` are left out:
    with none left the ranking is empty rather than naming a guess.
    """
    missing: list[str] = []
    moved = [m for c in candidates if (m := _measure(c, window, missing))]
    if not moved:
        if not candidates:
            missing.append("no candidate series in the window")
        return Ranking((), 0, None, tuple(missing))

    target_shift = _target_shift(target, window)
    if target is not None and target_shift is None:
        missing.append("the anomalous series has no points in the window")
    shifts = np.array([m.level - m.baseline for m in moved])
    if direction is not None:
        direction = 1 if direction >= 0 else -1
    elif target_shift is not None and abs(target_shift) > 0:
        direction = 1 if target_shift > 0 else -1
    else:
        # Without the host series, the side with the larger total move wins.
        up, down = shifts[shifts > 0].sum(), -shifts[shifts < 0].sum()
        direction = 1 if up >= down else -1
    directed = np.maximum(shifts * direction, 0.0)
    total = directed.sum()
    if target_shift is not None and target_shift * direction > 0:
        # Other candidates moving the other way can make the host's net change
        # smaller than one cause's; the larger of both keeps shares in 0-1.
        total = max(abs(target_shift), total)

    host_level = sum(abs(m.baseline) for m in moved) + total
    floor = max(0.01 * host_level, 1e-12)
    ranked = []
    for m, push in zip(moved, directed, strict=True):
        if push <= 0 or total <= 0:
            continue
        share = float(push / total)
        surprise = max(
            float(push * math.sqrt(m.recent.size) / max(m.scale, floor)),
            _sign_z(m.recent, m.baseline, direction),
        )
        if share < min_share or surprise < min_surprise:
            continue
        unusual = float(push / max(m.scale, floor))
        score = share * unusual / (unusual + 3.0)
        ranked.append((score, share, surprise, m))

    ranked.sort(key=lambda r: (-r[0], r[3].candidate.name))
    causes = tuple(
        Cause(
            rank=i + 1,
            kind=m.candidate.kind,
            name=m.candidate.name,
            labels=m.candidate.labels,
            score=score,
            share=share,
            baseline=m.baseline,
            level=m.level,
            surprise=surprise,
        )
        for i, (score, share, surprise, m) in enumerate(ranked[:top])
    )
    return Ranking(causes, direction, target_shift, tuple(missing))


def _measure(candidate: Candidate, window: Window, missing: list[str]) -> _Moved | None:
    before = _values(candidate.points, window.baseline_start, window.start)
    during = _values(candidate.points, window.start, window.end, closed=True)
    if during.size == 0:
        # Gone before the window: it cannot have caused what happened in it.
        missing.append(f"{candidate.kind} {candidate.name}: no points in the window")
        return None
    if before.size < MIN_BASELINE_POINTS:
        if not candidate.absent_is_zero or before.size:
            missing.append(f"{candidate.kind} {candidate.name}: too short a baseline")
            return None
        before = np.zeros(1)
    baseline = float(np.median(before))
    scale = MAD_SCALE * float(np.median(np.abs(before - baseline)))
    recent = during[during.size // 2 :]
    return _Moved(candidate, baseline, float(np.median(recent)), scale, recent)


def _target_shift(target: Points | None, window: Window) -> float | None:
    if target is None:
        return None
    before = _values(target, window.baseline_start, window.start)
    during = _values(target, window.start, window.end, closed=True)
    if before.size == 0 or during.size == 0:
        return None
    return _recent_level(during) - float(np.median(before))


def _sign_z(recent: np.ndarray, baseline: float, direction: int) -> float:
    # A sign test: how many recent points lie beyond the baseline's median, as
    # a z-score against the half expected by chance. It sees a series pinned
    # at one value (a GPU stuck at 0) that a spread-based test misses when the
    # baseline swung widely.
    n = recent.size
    beyond = int(((recent - baseline) * direction > 0).sum())
    return (beyond - n / 2) / math.sqrt(n / 4) if n else 0.0


def _recent_level(during: np.ndarray) -> float:
    return float(np.median(during[during.size // 2 :]))


def _values(
    points: Points, start: float, end: float, closed: bool = False
) -> np.ndarray:
    values = [
        v
        for t, v in points
        if start <= t and (t <= end if closed else t < end) and math.isfinite(v)
    ]
    return np.asarray(values, dtype=float)
