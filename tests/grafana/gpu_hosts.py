"""Exporters of GPU hosts for the panel tests: the real exporter's sources over
this host's /proc and a fake NVML that replays GPUs recorded on real machines,
served on 127.0.0.1 for a real Prometheus to scrape."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from exporter.config import ExporterConfig
from exporter.loop import CollectionLoop
from exporter.main import build_exposition, build_snapshot
from exporter.server import MetricsServer, make_app
from tests.exporter.fake_nvml import FakeNvml, load_fixture

GIB = 1 << 30
STOP_SECONDS = 5.0


@dataclass
class GpuHost(AbstractContextManager):
    """One exporter over `count` GPUs of fixture `model`, with this test
    process on GPU 0 and 1 and the Xid events `xids` as (GPU, code)."""

    model: str
    count: int = 2
    xids: tuple[tuple[int, int], ...] = ()
    interval_seconds: float = 1.0
    nvml: FakeNvml = field(init=False)
    url: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.nvml = FakeNvml(load_fixture(self.model), count=self.count)
        pid = os.getpid()
        self.nvml.processes = {0: [(pid, 3 * GIB)], 1: [(pid, GIB)]}
        self.nvml.samples = {0: [(pid, 1_000, 40)]}
        self.nvml.events = list(self.xids)
        config = ExporterConfig(
            listen_address="127.0.0.1:0",
            interval_seconds=self.interval_seconds,
            expected_gpus=self.count,
            kmsg_path="",
        )
        self._snapshot, self._close = build_snapshot(
            config, load_nvml=lambda: self.nvml
        )
        self._loop = CollectionLoop(self._snapshot, self.interval_seconds)
        self._server = MetricsServer(
            config.listen_address, make_app(build_exposition(self._snapshot))
        )

    def sample_kernels(self, timestamp_us: int) -> None:
        """A new NVML utilization sample of this test process on GPU 0 (40% SM),
        as a GPU running its kernels gives one every so often."""
        self.nvml.samples = {0: [(os.getpid(), timestamp_us, 40)]}

    @property
    def target(self) -> str:
        """host:port, as a Prometheus static target."""
        host, port = self._server.address
        return f"{host}:{port}"

    def __enter__(self) -> GpuHost:
        self._loop.start()
        self._server.start()
        self.url = f"http://{self.target}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()
        self._loop.stop(STOP_SECONDS)
        if self._snapshot.join(STOP_SECONDS):
            self._close()
