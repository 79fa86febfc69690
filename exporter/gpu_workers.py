"""Runs one NVML read per GPU, each in its own thread against one deadline, so
that a call hung in the driver on one GPU holds up neither the other GPUs nor
the source they belong to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What one GPU's read gave: a value, the exception it raised, or `hung`
    when it was still running at the deadline (or since an earlier cycle)."""

    value: T | None = None
    error: Exception | None = None
    hung: bool = False


class GpuWorkers:
    """Starts `read(index)` for each GPU and waits at most `timeout_seconds`.

    A GPU whose read is still running is not started again until that read
    returns, so a GPU hung for good holds exactly one thread, not one a cycle.
    Call run() from one thread at a time.
    """

    def __init__(self, name: str, timeout_seconds: float) -> None:
        self._name = name
        self._timeout = timeout_seconds
        self._stuck: dict[int, threading.Thread] = {}

    def run(
        self, read: Callable[[int], T], indices: Iterable[int]
    ) -> dict[int, Outcome[T]]:
        """Each GPU's outcome, in index order."""
        outcomes: dict[int, Outcome[T]] = {}
        started: list[tuple[int, threading.Thread]] = []
        for index in indices:
            stuck = self._stuck.get(index)
            if stuck is not None and stuck.is_alive():
                outcomes[index] = Outcome(hung=True)
                continue
            self._stuck.pop(index, None)

            outcome: Outcome[T] = Outcome()
            outcomes[index] = outcome
            # Daemon: a call hung in the driver must not keep the process alive.
            thread = threading.Thread(
                target=_work,
                args=(read, index, outcome),
                name=f"aiops-{self._name}-gpu{index}",
                daemon=True,
            )
            thread.start()
            started.append((index, thread))

        # One deadline for all: the GPUs are read side by side, so the cycle
        # takes at most one time limit however many of them hang.
        deadline = time.monotonic() + self._timeout
        for index, thread in started:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                # Whatever it returns later goes into an outcome nobody reads.
                self._stuck[index] = thread
                outcomes[index] = Outcome(hung=True)
        return dict(sorted(outcomes.items()))

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for hung reads; True when none runs."""
        deadline = time.monotonic() + timeout
        for thread in list(self._stuck.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._stuck.values())

    @property
    def threads(self) -> int:
        """Reads still running from earlier cycles: at most one per GPU."""
        return sum(thread.is_alive() for thread in self._stuck.values())


def _work(read: Callable[[int], T], index: int, outcome: Outcome[T]) -> None:
    try:
        outcome.value = read(index)
    except Exception as exc:  # handed to the caller, which decides what it means
        outcome.error = exc
