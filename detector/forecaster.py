"""A small PyTorch forecaster shared by the series of one query; needs torch.

A causal 1-D CNN (three dilated convolutions over the last `context` points)
predicts the next point. Every window is normalized by its own median and
robust scale, so one model serves every series of a query (every GPU's
temperature, say) whatever their levels; the family's normalization adds the
clip applied to normalized inputs and targets, and both travel with the
weights when saved.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detector.model import MAD_TO_SIGMA, RELATIVE_SCALE_FLOOR
from detector.store import write_atomically

# Normalized values beyond this many robust standard deviations are clipped:
# one outlier in a training window must not dominate the squared loss.
CLIP = 8.0
BATCH = 256
LEARNING_RATE = 3e-3
FORMAT_VERSION = 1


class ForecasterError(Exception):
    """A forecaster that cannot be trained, saved or loaded."""


class _Net(nn.Module):
    def __init__(self, context: int, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv1d(1, channels, 3, dilation=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, dilation=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, dilation=4),
            nn.ReLU(),
        )
        reach = 1 + 2 * (1 + 2 + 4)
        self.head = nn.Linear(channels * (context - reach + 1), 1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        features = self.layers(windows.unsqueeze(1))
        return self.head(features.flatten(1)).squeeze(1)


@dataclass(frozen=True)
class TrainingReport:
    samples: int
    loss: float


class Forecaster:
    """Next-point forecasts for any series, from a model trained on a family."""

    def __init__(self, context: int, channels: int, seed: int = 0) -> None:
        if context < 16:
            raise ForecasterError(f"context must be >= 16 points, got {context!r}")
        self.context = context
        self.channels = channels
        # The initial weights come from the seed, not from torch's global state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._net = _Net(context, channels)
        self._seed = seed
        self.trained = False

    def fit(
        self, histories: list[np.ndarray], samples: int, epochs: int
    ) -> TrainingReport:
        """Train on windows drawn from the given series' pasts."""
        inputs, targets = _training_set(histories, self.context, samples, self._seed)
        if inputs.shape[0] < BATCH // 4:
            raise ForecasterError(
                f"too little history to train: {inputs.shape[0]} windows"
            )
        x = torch.from_numpy(inputs)
        y = torch.from_numpy(targets)
        generator = torch.Generator().manual_seed(self._seed)
        optimizer = torch.optim.Adam(self._net.parameters(), lr=LEARNING_RATE)
        loss = torch.tensor(0.0)
        self._net.train()
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            for start in range(0, x.shape[0], BATCH):
                batch = order[start : start + BATCH]
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(self._net(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
        self._net.eval()
        self.trained = True
        return TrainingReport(samples=int(x.shape[0]), loss=float(loss.detach()))

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Forecast of the point after each row of `windows` (rows of `context`)."""
        w = np.asarray(windows, dtype=float)
        if w.shape[0] == 0:
            return np.empty(0)
        centre, scale = _window_stats(w)
        normalized = np.clip((w - centre[:, None]) / scale[:, None], -CLIP, CLIP)
        with torch.no_grad():
            out = self._net(torch.from_numpy(normalized.astype(np.float32))).numpy()
        return centre + scale * out.astype(float)

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        torch.save(
            {
                "version": FORMAT_VERSION,
                "context": self.context,
                "channels": self.channels,
                "clip": CLIP,
                "weights": self._net.state_dict(),
            },
            buffer,
        )
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path, context: int, channels: int) -> Forecaster:
        try:
            saved = torch.load(path, weights_only=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ForecasterError(f"cannot load {str(path)!r}: {exc}") from exc
        expected = (FORMAT_VERSION, context, channels, CLIP)
        found = tuple(saved.get(k) for k in ("version", "context", "channels", "clip"))
        if found != expected:
            raise ForecasterError(
                f"{str(path)!r} holds a model for {found!r}, configured {expected!r}"
            )
        model = cls(context, channels)
        model._net.load_state_dict(saved["weights"])
        model._net.eval()
        model.trained = True
        return model


def _window_stats(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centre = np.median(windows, axis=1)
    spread = MAD_TO_SIGMA * np.median(np.abs(windows - centre[:, None]), axis=1)
    mean_spread = np.abs(windows - centre[:, None]).mean(axis=1)
    spread = np.where(spread > 0, spread, mean_spread)
    floor = RELATIVE_SCALE_FLOOR * np.maximum(1.0, np.abs(centre))
    return centre, np.maximum(spread, floor)


def _training_set(
    histories: list[np.ndarray], context: int, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `samples` windows of context + 1 points, drawn evenly at random.

    Indices are drawn first and only the chosen windows are built: a family
    of thousands of series holds millions of windows.
    """
    series = [np.asarray(h, dtype=float) for h in histories if len(h) > context]
    counts = np.array([h.size - context for h in series], dtype=np.int64)
    if counts.sum() == 0:
        return np.empty((0, context), np.float32), np.empty(0, np.float32)
    total = int(counts.sum())
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, min(samples, total), replace=False))
    owner = np.searchsorted(np.cumsum(counts), chosen, side="right")
    offset = chosen - np.concatenate([[0], np.cumsum(counts)[:-1]])[owner]
    rows = np.stack(
        [series[o][i : i + context + 1] for o, i in zip(owner, offset, strict=True)]
    )

    inputs, targets = rows[:, :context], rows[:, context]
    centre, scale = _window_stats(inputs)
    x = np.clip((inputs - centre[:, None]) / scale[:, None], -CLIP, CLIP)
    y = np.clip((targets - centre) / scale, -CLIP, CLIP)
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    return x[keep].astype(np.float32), y[keep].astype(np.float32)
