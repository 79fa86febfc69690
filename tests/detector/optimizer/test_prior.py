from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from detector.optimizer.agent import BanditPolicy
from detector.optimizer.features import ARM_FEATURES, NAMES
from detector.optimizer.fleet import Fleet
from detector.optimizer.prior import ArmPrior, PriorError, load
from tests.detector.optimizer.usage import MEMORY, steps, wave

WIDTH = len(NAMES) + ARM_FEATURES
# Where the arm's size over the long peak sits in a policy's inputs.
SIZE = len(NAMES) + 5


def size_prior(short_below: float) -> ArmPrior:
    """A hand-set prior: slack grows with size, every arm below a size runs short."""
    center = np.zeros(WIDTH)
    spread = np.ones(WIDTH)
    weight = np.zeros((WIDTH, 2))
    weight[SIZE, 0] = 2.0
    # Log-odds of a short reading: 40 per log-unit below `short_below`.
    weight[SIZE, 1] = -40.0
    bias = np.array([0.0, 40.0 * np.log(short_below)])
    return ArmPrior(center, spread, ((weight, bias),))


def test_a_prior_survives_its_json() -> None:
    prior = size_prior(1.2)
    inputs = np.random.default_rng(3).normal(size=(5, WIDTH)).astype(np.float32)

    again = ArmPrior.from_json(json.loads(json.dumps(prior.to_json())))

    for a, b in zip(prior.predict(inputs), again.predict(inputs), strict=True):
        np.testing.assert_allclose(a, b)


def test_short_shares_stay_in_zero_one() -> None:
    inputs = np.zeros((2, WIDTH), dtype=np.float32)
    inputs[:, SIZE] = [-4.0, 4.0]

    _, short = size_prior(1.0).predict(inputs)

    assert 0 < short[1] < 1e-6 and 1 - 1e-6 < short[0] < 1


@pytest.mark.parametrize(
    "change",
    [
        {"format": "other/1"},
        {"center": [0.0] * (WIDTH - 1)},
        {"spread": [0.0] * WIDTH},
        {"layers": [{"weight": [[0.0]], "bias": [0.0]}]},
        {"layers": "nonsense"},
    ],
)
def test_unfit_weights_are_refused(change: dict) -> None:
    data = size_prior(1.0).to_json() | change

    with pytest.raises(PriorError):
        ArmPrior.from_json(data)


def test_a_missing_file_is_a_prior_error(tmp_path) -> None:
    with pytest.raises(PriorError, match="cannot read prior"):
        load(tmp_path / "absent.json")


def test_a_prior_of_the_wrong_width_is_refused() -> None:
    narrow = ArmPrior(np.zeros(3), np.ones(3), ((np.zeros((3, 2)), np.zeros(2)),))

    with pytest.raises(ValueError, match="inputs"):
        BanditPolicy(prior=narrow)


def test_the_prior_steers_a_first_choice_with_no_past_to_replay() -> None:
    # A warm-up shorter than half a period leaves nothing to replay, so the
    # first size rests on the prior alone. The widest arm is the peak + 40%.
    spec = replace(MEMORY, warmup_seconds=MEMORY.period_seconds / 4)
    t, u = steps([40.0], minutes_each=2 * 60)

    cautious = Fleet(spec, BanditPolicy(prior=size_prior(1.3))).feed({"f": (t, u)})
    trusting = Fleet(spec, BanditPolicy(prior=size_prior(0.5))).feed({"f": (t, u)})

    assert cautious[0].allocation >= 1.3 * 40.0
    assert trusting[0].allocation < cautious[0].allocation


def test_a_prior_wrong_on_this_fleet_is_corrected_online() -> None:
    # The prior says every arm under 1.3 times the peak runs short; a flat
    # series shows none does, and sizing comes back down to its level.
    t, u = steps([40.0], minutes_each=12 * 60)

    rows = Fleet(MEMORY, BanditPolicy(prior=size_prior(1.3))).feed({"f": (t, u)})

    assert rows[-1].allocation < 1.3 * 40.0


def test_every_settled_period_reaches_the_listener() -> None:
    heard = []
    policy = BanditPolicy(listener=heard.append)

    Fleet(MEMORY, policy).feed({"w": wave(8, seed=5)})

    assert heard and len(heard) == policy.periods
    assert all(o.inputs.shape == (policy.n_arms, WIDTH) for o in heard)
