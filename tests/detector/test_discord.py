from __future__ import annotations

import numpy as np

from detector.discord import Discord

SEED = 20240611


def series(n: int) -> np.ndarray:
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 50) + np.random.default_rng(SEED).normal(0, 0.05, n)


def test_a_repeated_shape_has_a_near_neighbour_and_a_new_one_does_not() -> None:
    x = series(1200)
    x[1100:1110] += np.linspace(0, 3, 10)

    d = Discord(length=20, history=800).update(x)

    assert np.isnan(d[:39]).all()
    assert np.nanmax(d[200:1100]) < 0.2
    assert d[1109] > 1.0


def test_batches_and_single_points_agree() -> None:
    x = series(900)

    whole = Discord(20, 500).update(x)
    model = Discord(20, 500)
    parts = np.concatenate([model.update(x[i : i + 7]) for i in range(0, 900, 7)])

    np.testing.assert_allclose(whole, parts, rtol=1e-9, atol=1e-9)


def test_large_values_do_not_lose_precision() -> None:
    # Bytes written per interval: near 1e9, moving by a few units.
    x = 1e9 + series(600)

    d = Discord(20, 400).update(x)

    assert np.nanmax(d[100:]) < 0.2
