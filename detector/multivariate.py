"""Reconstruction models of an entity's vector of values: PCA here, the
autoencoder in detector.autoencoder (imported only when configured, as it
needs torch).

The inputs are already in robust units (each member series' deviation from
its own expectation over its own scale), so one model serves every entity of a
group. A vector the model cannot rebuild from the group's usual relations
between members (power up while utilization is flat, say) has a large error.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Protocol

import numpy as np

from detector.store import write_atomically

# Inputs beyond this many robust standard deviations are clipped, so that one
# wild member does not dominate the fit.
CLIP = 8.0
FORMAT_VERSION = 1


class ReconstructorError(Exception):
    """A model that cannot be trained, saved or loaded."""


class Reconstructor(Protocol):
    def fit(self, vectors: np.ndarray) -> None: ...

    def errors(self, vectors: np.ndarray) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...


class PCAReconstructor:
    """Projection on the first `components` principal axes of the training data."""

    filename = "pca.npz"

    def __init__(self, dimensions: int, components: int) -> None:
        self.dimensions = dimensions
        self.components = components
        self._mean = np.zeros(dimensions)
        self._axes = np.zeros((components, dimensions))

    def fit(self, vectors: np.ndarray) -> None:
        x = prepared(vectors, self.dimensions)
        if x.shape[0] <= self.dimensions:
            raise ReconstructorError(f"too few vectors to fit: {x.shape[0]}")
        self._mean = x.mean(axis=0)
        _, _, axes = np.linalg.svd(x - self._mean, full_matrices=False)
        self._axes = axes[: self.components]

    def errors(self, vectors: np.ndarray) -> np.ndarray:
        centred = prepared(vectors, self.dimensions) - self._mean
        rebuilt = centred @ self._axes.T @ self._axes
        return np.sqrt(((centred - rebuilt) ** 2).mean(axis=1))

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            version=FORMAT_VERSION,
            clip=CLIP,
            mean=self._mean,
            axes=self._axes,
        )
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path, dimensions: int, components: int) -> PCAReconstructor:
        try:
            with np.load(path) as saved:
                found = (int(saved["version"]), float(saved["clip"]))
                mean, axes = saved["mean"], saved["axes"]
        except (OSError, KeyError, ValueError) as exc:
            raise ReconstructorError(f"cannot load {str(path)!r}: {exc}") from exc
        if found != (FORMAT_VERSION, CLIP) or axes.shape != (components, dimensions):
            raise ReconstructorError(f"{str(path)!r} does not fit this entity group")
        model = cls(dimensions, components)
        model._mean, model._axes = mean, axes
        return model


def make_reconstructor(method: str, dimensions: int, components: int) -> Reconstructor:
    if method == "autoencoder":
        from detector.autoencoder import AutoencoderReconstructor

        return AutoencoderReconstructor(dimensions, components)
    return PCAReconstructor(dimensions, components)


def load_reconstructor(
    method: str, path: Path, dimensions: int, components: int
) -> Reconstructor:
    if method == "autoencoder":
        from detector.autoencoder import AutoencoderReconstructor

        return AutoencoderReconstructor.load(path, dimensions, components)
    return PCAReconstructor.load(path, dimensions, components)


def reconstructor_file(method: str) -> str:
    return "autoencoder.pt" if method == "autoencoder" else PCAReconstructor.filename


def prepared(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    x = np.asarray(vectors, dtype=float)
    if x.ndim != 2 or x.shape[1] != dimensions:
        raise ReconstructorError(
            f"expected vectors of {dimensions} values, got shape {x.shape!r}"
        )
    return np.clip(x, -CLIP, CLIP)
