"""The autoencoder reconstruction model of an entity group; needs torch.

A dense network squeezes the group's vectors through a `components`-wide
bottleneck and rebuilds them; see detector.multivariate for the inputs.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detector.multivariate import (
    CLIP,
    FORMAT_VERSION,
    ReconstructorError,
    prepared,
)
from detector.store import write_atomically


class _Autoencoder(nn.Module):
    def __init__(self, dimensions: int, bottleneck: int, hidden: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Linear(dimensions, hidden), nn.Tanh(), nn.Linear(hidden, bottleneck)
        )
        self.decode = nn.Sequential(
            nn.Linear(bottleneck, hidden), nn.Tanh(), nn.Linear(hidden, dimensions)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class AutoencoderReconstructor:
    """A small dense autoencoder with a `components`-wide bottleneck."""

    filename = "autoencoder.pt"
    hidden = 16
    epochs = 20
    batch = 256
    learning_rate = 1e-2

    def __init__(self, dimensions: int, components: int, seed: int = 0) -> None:
        self.dimensions = dimensions
        self.components = components
        self._seed = seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._net = _Autoencoder(dimensions, components, self.hidden)
        self._net.eval()

    def fit(self, vectors: np.ndarray) -> None:
        x = torch.from_numpy(prepared(vectors, self.dimensions).astype(np.float32))
        if x.shape[0] <= self.dimensions:
            raise ReconstructorError(f"too few vectors to fit: {x.shape[0]}")
        generator = torch.Generator().manual_seed(self._seed)
        optimizer = torch.optim.Adam(self._net.parameters(), lr=self.learning_rate)
        self._net.train()
        for _ in range(self.epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            for start in range(0, x.shape[0], self.batch):
                rows = x[order[start : start + self.batch]]
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(self._net(rows), rows)
                loss.backward()
                optimizer.step()
        self._net.eval()

    def errors(self, vectors: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(prepared(vectors, self.dimensions).astype(np.float32))
        with torch.no_grad():
            rebuilt = self._net(x)
        return torch.sqrt(((x - rebuilt) ** 2).mean(dim=1)).numpy().astype(float)

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        torch.save(
            {
                "version": FORMAT_VERSION,
                "clip": CLIP,
                "shape": (self.dimensions, self.components, self.hidden),
                "weights": self._net.state_dict(),
            },
            buffer,
        )
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(
        cls, path: Path, dimensions: int, components: int
    ) -> AutoencoderReconstructor:
        try:
            saved = torch.load(path, weights_only=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ReconstructorError(f"cannot load {str(path)!r}: {exc}") from exc
        expected = (FORMAT_VERSION, CLIP, (dimensions, components, cls.hidden))
        found = (saved.get("version"), saved.get("clip"), tuple(saved.get("shape", ())))
        if found != expected:
            raise ReconstructorError(f"{str(path)!r} does not fit this entity group")
        model = cls(dimensions, components)
        model._net.load_state_dict(saved["weights"])
        model._net.eval()
        return model
