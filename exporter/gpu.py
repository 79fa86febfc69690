"""Reads every GPU through the shared NVML session: state, health and identity.

A GPU that is lost, needs a reset or hangs in an NVML call is reported as such
while the other GPUs keep reporting; without NVML the sample says so and holds
no GPUs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.gpu_device import DeviceReader, GpuReading
from exporter.gpu_workers import GpuWorkers, Outcome
from exporter.nvml_session import (
    HEALTHY,
    NOT_RESPONDING,
    GpuGone,
    GpuIdentity,
    NvmlSession,
)
from exporter.once import Once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuState:
    """Whether a GPU answers; uuid is the last one it gave, or empty."""

    index: int
    uuid: str
    state: str


@dataclass(frozen=True)
class GpuSample:
    """All GPUs; `available` is False when NVML could not start."""

    available: bool
    driver_version: str = ""
    cuda_version: str = ""
    device_count: int | None = None
    expected_count: int | None = None
    gpus: tuple[GpuReading, ...] = ()
    states: tuple[GpuState, ...] = ()
    errors: Mapping[int, int] = field(default_factory=dict)

    @property
    def lost(self) -> tuple[int, ...]:
        """Indices of the GPUs that did not answer."""
        return tuple(s.index for s in self.states if s.state != HEALTHY)


class GpuReader:
    """Reads all GPUs once per call; call read() from one thread at a time.

    Each GPU is read in its own thread; one that has not answered within
    `timeout_seconds` is reported not responding and its values are left out.
    """

    def __init__(
        self,
        session: NvmlSession,
        expected_count: int | None = None,
        timeout_seconds: float = 2.0,
    ) -> None:
        self._session = session
        self._devices = DeviceReader(session)
        self._workers = GpuWorkers("gpu", timeout_seconds)
        self._timeout = timeout_seconds
        self._expected = expected_count
        self._errors: dict[int, int] = {}
        self._once = Once(log)

    def read(self) -> GpuSample:
        """Start NVML if it is not running yet, then read every GPU."""
        session = self._session
        if session.start() is None:
            return GpuSample(available=False, expected_count=self._expected)

        driver = session.call("nvmlSystemGetDriverVersion") or ""
        count = session.device_count()
        outcomes = self._workers.run(self._devices.read, range(count))

        gpus, states = [], []
        known = dict(session.identities)
        for index, outcome in outcomes.items():
            previous = known.get(index)
            uuid = previous.uuid if previous else ""
            state = self._state_of(index, uuid, outcome)
            if state is not None:
                states.append(state)
                continue

            reading = outcome.value
            assert reading is not None
            if self._once.forget(("gone", index)):
                log.info("GPU answers again gpu=%s uuid=%s", index, reading.uuid)
            gpus.append(reading)
            states.append(GpuState(index, reading.uuid, HEALTHY))
            known[index] = GpuIdentity(
                index,
                reading.uuid,
                reading.pci_bus_id,
                tuple(mig.uuid for mig in reading.mig if mig.uuid),
            )
            self._count_errors(reading)

        session.identities = known
        return GpuSample(
            available=True,
            driver_version=driver,
            cuda_version=_cuda_version(session.call("nvmlSystemGetCudaDriverVersion")),
            device_count=count,
            expected_count=self._expected,
            gpus=tuple(gpus),
            states=tuple(states),
            errors={s.index: self._errors.get(s.index, 0) for s in states},
        )

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` for reads hung in the driver; True when none is."""
        return self._workers.join(timeout)

    def close(self) -> None:
        """End the NVML session, if one was started."""
        self._session.close()

    def _state_of(
        self, index: int, uuid: str, outcome: Outcome[GpuReading]
    ) -> GpuState | None:
        """The unhealthy state of a GPU that gave no reading; None if it gave one."""
        if outcome.hung:
            self._once.log(
                logging.WARNING,
                ("gone", index),
                "GPU call hung, reporting it not responding and dropping its "
                "values gpu=%s uuid=%s timeout_seconds=%s",
                index,
                uuid,
                self._timeout,
            )
            return GpuState(index, uuid, NOT_RESPONDING)
        if isinstance(outcome.error, GpuGone):
            self._once.log(
                logging.WARNING,
                ("gone", index),
                "GPU not answering, reporting it unhealthy gpu=%s uuid=%s "
                "state=%s error=%s",
                index,
                uuid,
                outcome.error.state,
                outcome.error,
            )
            return GpuState(index, uuid, outcome.error.state)
        if outcome.error is not None:
            # Not a GPU fault NVML names (a failed handle lookup, a bug): the
            # source fails and counts it, as it did before GPUs were read apart.
            raise outcome.error
        return None

    def _count_errors(self, reading: GpuReading) -> None:
        for error in reading.errors:
            self._errors[reading.index] = self._errors.get(reading.index, 0) + 1
            self._once.log(
                logging.WARNING,
                ("call", reading.index, error.function, error.code),
                "NVML call failed, leaving its fields out gpu=%s error=%s",
                reading.index,
                error,
            )


def _cuda_version(value: int | None) -> str:
    # NVML encodes CUDA 12.4 as 12040: major * 1000 + minor * 10.
    if not value:
        return ""
    return f"{value // 1000}.{value % 1000 // 10}"
