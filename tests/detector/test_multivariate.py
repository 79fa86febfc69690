from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.autoencoder import AutoencoderReconstructor
from detector.multivariate import (
    PCAReconstructor,
    ReconstructorError,
    load_reconstructor,
    make_reconstructor,
    reconstructor_file,
)

SEED = 20240611


def gpu_vectors(n: int) -> np.ndarray:
    """Utilization, memory, temperature, power: all driven by one load."""
    rng = np.random.default_rng(SEED)
    load = rng.normal(0, 1, n)
    noise = rng.normal(0, 0.1, (n, 4))
    return np.column_stack([load, 0.8 * load, 0.9 * load, load]) + noise


def broken(x: np.ndarray) -> np.ndarray:
    """Power up while everything else is flat: a relation, not a level, breaks."""
    y = x.copy()
    y[:, 3] = -y[:, 0]
    return y


@pytest.mark.parametrize("method", ["pca", "autoencoder"])
def test_a_broken_relation_reconstructs_worse(method: str) -> None:
    model = make_reconstructor(method, dimensions=4, components=1)
    model.fit(gpu_vectors(3000))

    usual = model.errors(gpu_vectors(200))
    odd = model.errors(broken(gpu_vectors(200)))

    assert np.median(odd) > 5 * np.median(usual)


@pytest.mark.parametrize("method", ["pca", "autoencoder"])
def test_a_saved_model_loads_back(tmp_path: Path, method: str) -> None:
    model = make_reconstructor(method, 4, 1)
    model.fit(gpu_vectors(1000))
    path = tmp_path / reconstructor_file(method)

    model.save(path)
    loaded = load_reconstructor(method, path, 4, 1)

    x = gpu_vectors(50)
    assert loaded.errors(x) == pytest.approx(model.errors(x), rel=1e-6)


def test_a_saved_model_of_another_shape_is_refused(tmp_path: Path) -> None:
    model = PCAReconstructor(4, 1)
    model.fit(gpu_vectors(1000))
    model.save(tmp_path / "pca.npz")

    with pytest.raises(ReconstructorError):
        PCAReconstructor.load(tmp_path / "pca.npz", 4, 2)
    with pytest.raises(ReconstructorError):
        AutoencoderReconstructor.load(tmp_path / "missing.pt", 4, 1)


def test_vectors_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(ReconstructorError, match="4 values"):
        PCAReconstructor(4, 1).fit(np.zeros((100, 3)))
