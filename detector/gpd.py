"""The generalized Pareto distribution of excesses over a threshold; needs numpy.

Extreme-value theory (Pickands-Balkema-de Haan) says that excesses over a high
enough threshold follow a GPD with shape `gamma` and scale `sigma`, whatever
the distribution below; both SPOT and the score calibrators rest on that.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Below this |gamma| the GPD is treated as its exponential limit, where the
# closed forms divide by gamma.
_EXPONENTIAL = 1e-9

# Grimshaw's equation is solved on a grid, geometric away from 0 since the
# intervals span many decades, then each sign change is narrowed by finer
# linear grids: 5 rounds of 16 points shrink a bracket 15^5 (7.6e5) times.
_GRID = 48
_REFINE_POINTS = 16
_REFINE_ROUNDS = 5


class Tail(NamedTuple):
    """A fitted GPD of excesses: P(X - u > y | X > u) = survival(y)."""

    gamma: float
    sigma: float

    def survival(self, excess: np.ndarray) -> np.ndarray:
        """P(excess > y); 0 beyond the upper end point when gamma < 0."""
        y = np.maximum(np.asarray(excess, dtype=float), 0.0)
        if abs(self.gamma) < _EXPONENTIAL:
            return np.exp(-y / self.sigma)
        base = 1.0 + self.gamma * y / self.sigma
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(base > 0, np.abs(base) ** (-1.0 / self.gamma), 0.0)
        return out

    def quantile(self, probability: float) -> float:
        """The excess y with survival(y) == probability, for 0 < probability <= 1."""
        if abs(self.gamma) < _EXPONENTIAL:
            return -self.sigma * float(np.log(probability))
        return self.sigma / self.gamma * (probability ** (-self.gamma) - 1.0)


def fit_moments(excesses: np.ndarray) -> Tail:
    """Method-of-moments fit: cheap, for calibrators refitted every few points.

    Valid for gamma < 1/2, the finite-variance tails that machine metrics have
    once clipped; the callers clip gamma to that range anyway.
    """
    y = np.asarray(excesses, dtype=float)
    mean = float(y.mean())
    var = float(y.var())
    if mean <= 0 or var <= 0:
        return Tail(0.0, max(mean, 1e-12))
    ratio = mean * mean / var
    return Tail(0.5 * (1.0 - ratio), 0.5 * mean * (1.0 + ratio))


def fit_grimshaw(excesses: np.ndarray) -> Tail:
    """Maximum-likelihood fit by Grimshaw's reduction, as SPOT uses it.

    With x = gamma/sigma the likelihood equations reduce to u(x) v(x) = 1,
    where u(x) = mean(1 / (1 + x Y)) and v(x) = 1 + mean(log(1 + x Y)); each
    root gives gamma = v(x) - 1 and sigma = gamma / x. Roots lie in
    (-1/Y_max, 0) and (0, 2 (mean - Y_min) / Y_min^2) (Siffer et al., KDD 2017,
    section 3.2.2). The root of highest likelihood wins, the exponential
    (gamma = 0) included.
    """
    y = np.asarray(excesses, dtype=float)
    y = y[y > 0]
    if y.size == 0:
        return Tail(0.0, 1e-12)
    mean = float(y.mean())
    candidates = [Tail(0.0, mean)]
    if y.size < 3 or float(y.max()) == float(y.min()):
        return candidates[0]

    smallest, largest = float(y.min()), float(y.max())
    eps = 1e-8 / mean
    negative = 1.0 / largest - eps
    positive = 2.0 * (mean - smallest) / (smallest * smallest)
    if negative > eps:
        grid = -np.geomspace(negative, eps, _GRID)
        candidates += [_tail_at(y, x) for x in _roots(y, grid)]
    if positive > eps:
        grid = np.geomspace(eps, positive, _GRID)
        candidates += [_tail_at(y, x) for x in _roots(y, grid)]

    return max(candidates, key=lambda t: _log_likelihood(y, t))


def _grimshaw_w(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    t = 1.0 + np.outer(x, y)
    return (1.0 / t).mean(axis=1) * (1.0 + np.log(t).mean(axis=1)) - 1.0


def _roots(y: np.ndarray, grid: np.ndarray) -> list[float]:
    values = _grimshaw_w(y, grid)
    roots = []
    for i in np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0):
        a, b = grid[i], grid[i + 1]
        for _ in range(_REFINE_ROUNDS):
            fine = np.linspace(a, b, _REFINE_POINTS)
            signs = np.sign(_grimshaw_w(y, fine))
            change = np.flatnonzero(signs[:-1] * signs[1:] <= 0)
            j = int(change[0]) if change.size else 0
            a, b = fine[j], fine[j + 1]
        roots.append(0.5 * (a + b))
    return roots


def _tail_at(y: np.ndarray, x: float) -> Tail:
    gamma = float(np.log1p(x * y).mean())
    return Tail(gamma, gamma / x)


def _log_likelihood(y: np.ndarray, tail: Tail) -> float:
    gamma, sigma = tail
    if sigma <= 0:
        return -np.inf
    if abs(gamma) < _EXPONENTIAL:
        return float(-y.size * np.log(sigma) - y.sum() / sigma)
    base = 1.0 + gamma * y / sigma
    if np.any(base <= 0):
        return -np.inf
    return float(-y.size * np.log(sigma) - (1.0 + 1.0 / gamma) * np.log(base).sum())
