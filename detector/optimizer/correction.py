"""The learning policy's optional network: how far a workload's record is off.

A small PyTorch MLP maps (context, arm) inputs to a correction of the record's
expected cost. It starts at zero, so that until it has learnt something the
records decide alone. Seeded without touching the process-wide random state.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Correction:
    """Fits residual costs online; predicts them in cost points."""

    def __init__(
        self,
        inputs: int,
        hidden: int,
        learning_rate: float,
        weight_decay: float,
        seed: int,
    ) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._net = nn.Sequential(
                nn.Linear(inputs, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, 1),
            )
        last = self._net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self._optimizer = torch.optim.Adam(
            self._net.parameters(), lr=learning_rate, weight_decay=weight_decay
        )
        self._rng = np.random.default_rng(seed)
        # Residuals are learnt in units of their first spread; 0: not fitted.
        self._scale = 0.0

    def predict(self, inputs: np.ndarray) -> np.ndarray | None:
        """One correction per row of `inputs`, or None before the first fit."""
        if self._scale == 0.0:
            return None
        with torch.no_grad():
            out = self._net(torch.from_numpy(inputs))[:, 0].numpy()
        correction = out.astype(float) * self._scale
        return correction if np.isfinite(correction).all() else None

    def fit(
        self,
        inputs: list[np.ndarray],
        residuals: list[np.ndarray],
        readings: list[int],
        steps: int,
        batch: int,
    ) -> None:
        """Take `steps` minibatch steps over periods, weighted by their readings."""
        if self._scale == 0.0:
            self._scale = float(max(np.std(np.concatenate(residuals[-500:])), 1e-6))
        for _ in range(steps):
            pick = self._rng.integers(0, len(inputs), size=min(batch, len(inputs)))
            x = torch.from_numpy(np.concatenate([inputs[i] for i in pick]))
            y = np.concatenate([residuals[i] for i in pick]) / self._scale
            n = np.concatenate([np.full(len(residuals[i]), readings[i]) for i in pick])
            # Squared error, not a robust loss: the mean cost is what is
            # minimised, and rare short readings are most of it.
            error = (self._net(x)[:, 0] - torch.from_numpy(y.astype(np.float32))) ** 2
            weight = torch.from_numpy((n / n.mean()).astype(np.float32))
            loss = (error * weight).mean()
            self._optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self._net.parameters(), 1.0)
            self._optimizer.step()
