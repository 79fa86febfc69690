"""When the learning policy's optional network steers, and what it learns from.

The network (correction.py) learns how far each arm's record is off, from
settled periods kept in a bounded buffer, refit every `train_every` settled
periods once `min_periods` are in. It steers the pick only while its own
picks have cost less than the records' picks, both scored on what followed,
so that a network that has learnt nothing useful leaves the records in charge.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detector.optimizer.agent_config import AgentConfig
from detector.optimizer.outcome import Outcome, Period


class Steering:
    """The network, its training buffer and the running cost of each pick."""

    def __init__(self, config: AgentConfig, inputs: int) -> None:
        # Imported here: PyTorch loads only where a network is asked for.
        from detector.optimizer.correction import Correction

        self._config = config
        self._correction = Correction(
            inputs,
            config.hidden,
            config.learning_rate,
            config.weight_decay,
            config.seed,
        )
        self._outcomes: list[Outcome] = []
        self._fresh = 0
        self._records_cost = 0.0
        self._network_cost = 0.0

    def pick(
        self, inputs: np.ndarray, base: np.ndarray, penalty: np.ndarray, by_records: int
    ) -> tuple[int, int]:
        """The arm to play, and the network's own pick (-1 before it has one)."""
        correction = self._correction.predict(inputs)
        if correction is None:
            return by_records, -1
        by_network = int(np.argmin(base + correction + penalty))
        if self._network_cost < self._records_cost:
            return by_network, by_network
        return by_records, by_network

    def settle(self, period: Period, outcome: Outcome, cost: np.ndarray) -> None:
        """Score both picks of a settled period (cost: per arm and reading)."""
        if period.by_network >= 0:
            total = cost * outcome.readings
            d = self._config.series_decay
            self._records_cost = self._records_cost * d + float(
                total[period.by_records]
            )
            self._network_cost = self._network_cost * d + float(
                total[period.by_network]
            )
        # Kept only with a network: 5,000 outcomes took some 50 MB.
        if outcome.base is not None:
            self._outcomes.append(outcome)
            if len(self._outcomes) > self._config.buffer_periods:
                del self._outcomes[0]
        self._fresh += 1

    def learn(self, cost: Callable[[Outcome], np.ndarray]) -> None:
        """Refit to how far the records were off, once enough is new."""
        config = self._config
        if self._fresh < config.train_every:
            return
        self._fresh = 0
        if len(self._outcomes) < config.min_periods:
            return
        self._correction.fit(
            [o.inputs for o in self._outcomes],
            [cost(o) - o.base for o in self._outcomes],  # type: ignore[operator]
            [o.readings for o in self._outcomes],
            config.train_steps,
            config.batch_periods,
        )
