"""Feeds readings of many series through their Sizers, in time order across all.

Every series moves on one clock: at each instant, the policy first settles
what it can learn, then every series due decides, then the readings of that
instant are seen. A row at time t therefore rests only on readings before t,
of any series. The backtest feeds a whole file at once, the service each
cycle's new readings; both run this same code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector.optimizer.estimate import Policy
from detector.optimizer.resources import ResourceSpec
from detector.optimizer.sizer import DEFAULT, Rules, Sizer

log = logging.getLogger(__name__)

# Keys are any hashable series identity: a name, or label pairs.
Points = Mapping[Any, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Row:
    """From `timestamp` on, `series` is allocated `allocation`."""

    timestamp: float
    series: Hashable
    allocation: float


class Fleet:
    """The Sizers of one resource, one per series, sharing one policy."""

    def __init__(
        self,
        spec: ResourceSpec,
        policy: Policy,
        rules: Rules = DEFAULT,
        max_series: int | None = None,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.rules = rules
        self.max_series = max_series
        self.sizers: dict[Hashable, Sizer] = {}
        self.refused = 0

    def feed(
        self, points: Points, progress: Callable[[float], None] | None = None
    ) -> list[Row]:
        """Take new readings of any series; return the changes they led to.

        Readings not newer than a series' last one are ignored, so that
        overlapping queries never count a reading twice.
        """
        times: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        values: list[np.ndarray] = []
        keys: list[Hashable] = []
        # Within an instant series decide one after another, and a learning
        # policy's first decision for a series teaches it the series' past:
        # an order of their own keeps the rows from following the order in
        # which a file or a query happened to list them.
        for key, (t, u) in sorted(points.items(), key=lambda item: repr(item[0])):
            sizer = self._sizer(key, t)
            if sizer is None:
                continue
            fresh = t > sizer.history.last_timestamp
            t, u = np.asarray(t, dtype=float)[fresh], np.asarray(u, dtype=float)[fresh]
            if t.size == 0:
                continue
            index = len(keys)
            keys.append(key)
            times.append(t)
            owners.append(np.full(t.size, index))
            values.append(u)
            # The end of the warm-up is an instant of its own, seen once a
            # reading at or after it has come.
            if sizer.allocation is None and t[-1] >= sizer.warmup_end:
                times.append(np.array([sizer.warmup_end]))
                owners.append(np.array([index]))
                values.append(np.array([np.nan]))
        if not keys:
            return []

        all_t = np.concatenate(times)
        all_owner = np.concatenate(owners)
        all_u = np.concatenate(values)
        # Within an instant the warm-up ends (NaN) sort before readings.
        order = np.lexsort((~np.isnan(all_u), all_owner, all_t))
        all_t, all_owner, all_u = all_t[order], all_owner[order], all_u[order]
        cuts = np.flatnonzero(np.diff(all_t)) + 1
        starts = np.concatenate(([0], cuts)).tolist()
        ends = np.concatenate((cuts, [all_t.size])).tolist()

        rows = []
        sizers = [self.sizers[k] for k in keys]
        for n, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
            now = float(all_t[lo])
            self.policy.advance(now)
            for i in range(lo, hi):
                owner = int(all_owner[i])
                value = sizers[owner].decide(now)
                if value is not None:
                    rows.append(Row(now, keys[owner], value))
            for i in range(lo, hi):
                if not np.isnan(all_u[i]):
                    sizers[int(all_owner[i])].observe(now, float(all_u[i]))
            if progress is not None and n % 256 == 0:
                progress(n / len(starts))
        if progress is not None:
            progress(1.0)
        return rows

    def forget(self, before: float) -> list[Hashable]:
        """Drop series silent since `before`; return their keys."""
        gone = [k for k, s in self.sizers.items() if s.history.last_timestamp < before]
        for key in gone:
            del self.sizers[key]
        return gone

    def _sizer(self, key: Hashable, t: np.ndarray) -> Sizer | None:
        sizer = self.sizers.get(key)
        if sizer is not None or len(t) == 0:
            return sizer
        if self.max_series is not None and len(self.sizers) >= self.max_series:
            self.refused += 1
            return None
        estimator = self.policy.estimator(self.spec, str(key))
        sizer = Sizer(self.spec, estimator, float(t[0]), self.rules)
        self.sizers[key] = sizer
        return sizer
