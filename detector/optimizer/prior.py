"""A prior over every arm's outcome from the series' context, learned offline.

A small network's weights, learned by `benchmarks/train_optimizer.py` on
replayed history, predict per arm the slack and the share of short readings
one period would bring. Evaluated with numpy, so the service needs no PyTorch
for it; without a weights file the policy falls back to its fleet average.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Where the policy looks for weights when none are named.
SHIPPED = Path(__file__).with_name("prior.json")
FORMAT = "aiops-arm-prior/1"
# Slack per reading, in references, is learnt up to this much: a series idle
# until now has a reference near zero and slack in the millions of it; such
# arms lose anyway, and unclipped they would be all a squared error sees.
SLACK_CAP = 3.0


class PriorError(ValueError):
    """A weights file that cannot be read or does not fit the inputs."""


@dataclass(frozen=True)
class ArmPrior:
    """Inputs -> (slack per reading over the reference, share of short readings)."""

    center: np.ndarray
    spread: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def inputs(self) -> int:
        return int(self.center.size)

    def predict(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slack and short share per row of `inputs` (one row per arm)."""
        if inputs.shape[1] != self.inputs:
            raise PriorError(
                f"the prior takes {self.inputs} inputs, got {inputs.shape[1]!r}"
            )
        x = (inputs.astype(np.float64) - self.center) / self.spread
        for n, (weight, bias) in enumerate(self.layers):
            x = x @ weight + bias
            if n < len(self.layers) - 1:
                x = np.maximum(x, 0.0)
        # The short share is learnt as a log-odds, so that it stays in (0, 1).
        return x[:, 0], 1.0 / (1.0 + np.exp(-np.clip(x[:, 1], -30, 30)))

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "center": self.center.tolist(),
            "spread": self.spread.tolist(),
            "layers": [
                {"weight": w.tolist(), "bias": b.tolist()} for w, b in self.layers
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> ArmPrior:
        if data.get("format") != FORMAT:
            raise PriorError(
                f"not a prior in format {FORMAT!r}: {data.get('format')!r}"
            )
        try:
            layers = tuple(
                (np.array(x["weight"], dtype=float), np.array(x["bias"], dtype=float))
                for x in data["layers"]
            )
            center = np.array(data["center"], dtype=float)
            spread = np.array(data["spread"], dtype=float)
        except (KeyError, TypeError, ValueError) as exc:
            raise PriorError(f"malformed prior: {exc}") from exc
        width = center.size
        for weight, bias in layers:
            if (
                weight.ndim != 2
                or weight.shape[0] != width
                or bias.shape != (weight.shape[1],)
            ):
                raise PriorError(f"layer shapes do not chain at width {width!r}")
            width = weight.shape[1]
        if width != 2 or spread.shape != center.shape or not (spread > 0).all():
            raise PriorError("a prior needs 2 outputs and positive spreads")
        return cls(center, spread, layers)


def load(path: Path) -> ArmPrior:
    """Read weights written by ArmPrior.to_json; PriorError if they are unfit."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PriorError(f"cannot read prior {str(path)!r}: {exc}") from exc
    return ArmPrior.from_json(data)


class PriorDrift:
    """How far a prior has been off on this fleet, per arm.

    A resource the prior learnt little of is corrected online as its periods
    settle: the mean error so far is added to every later prediction.
    """

    def __init__(self, n_arms: int) -> None:
        self._slack_error = np.zeros(n_arms)
        self._short_error = np.zeros(n_arms)
        self._readings = 0.0

    def corrected(
        self, slack: np.ndarray, short: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A prediction with the mean error so far taken off."""
        if not self._readings:
            return slack, short
        return (
            slack + self._slack_error / self._readings,
            short + self._short_error / self._readings,
        )

    def add(
        self,
        predicted: tuple[np.ndarray, np.ndarray],
        slack: np.ndarray,
        violated: np.ndarray,
        readings: int,
    ) -> None:
        """Count one settled period: its slack and short sums, per arm."""
        slack_predicted, short_predicted = predicted
        # Clipped as in training: an idle series' slack is in the millions of
        # its near-zero reference.
        slack_share = np.minimum(slack / readings, SLACK_CAP)
        self._slack_error += (slack_share - slack_predicted) * readings
        self._short_error += violated - short_predicted * readings
        self._readings += readings
