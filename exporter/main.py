"""The `aiops-exporter` command: read the config, wire the parts, serve until told
to stop. The only place that configures logging or installs signal handlers."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from aiops_common.config import ConfigError
from aiops_common.logs import LEVELS, setup_logging
from exporter.config import ExporterConfig, read_config
from exporter.gpu import GpuReader, import_pynvml
from exporter.loop import CollectionLoop
from exporter.metrics import gpu_families, process_families
from exporter.processes import ProcessSampler
from exporter.server import MetricsServer, make_app
from exporter.snapshot import Snapshot, Source

PROG = "aiops-exporter"

log = logging.getLogger(__name__)

# How long shutdown waits for the collection thread and running sources.
_STOP_TIMEOUT_SECONDS = 5.0


def main(argv: Sequence[str] | None = None) -> None:
    """Run the exporter; exit 2 on a bad config or flag, 1 if it cannot listen."""
    args = _parse_args(argv)
    try:
        config = _load_config(args)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc

    setup_logging(config.log_level)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: _request_stop(stop, signum))

    serve(config, stop)


def serve(
    config: ExporterConfig,
    stop: threading.Event,
    ps: Any = psutil,
    load_nvml: Callable[[], Any] = import_pynvml,
) -> None:
    """Collect and serve until `stop` is set, then shut everything down."""
    snapshot, gpus = build_snapshot(config, ps=ps, load_nvml=load_nvml)

    try:
        server = MetricsServer(
            config.listen_address, make_app(build_registry(snapshot))
        )
    except OSError as exc:
        print(
            f"{PROG}: cannot listen on {config.listen_address!r}: {exc}",
            file=sys.stderr,
        )
        raise SystemExit(1) from exc

    loop = CollectionLoop(snapshot, config.interval_seconds)
    loop.start()
    server.start()
    host, port = server.address
    log.info("listening address=%s:%s", host, port)

    stop.wait()

    server.stop()
    loop.stop(_STOP_TIMEOUT_SECONDS)
    # A source hung in the driver still holds NVML; shutting it down under that
    # call could crash, and the process is about to exit anyway.
    if snapshot.join(_STOP_TIMEOUT_SECONDS):
        gpus.close()
    log.info("stopped")


def build_snapshot(
    config: ExporterConfig,
    ps: Any = psutil,
    load_nvml: Callable[[], Any] = import_pynvml,
) -> tuple[Snapshot, GpuReader]:
    """The snapshot over the process and GPU sources, and the GPU reader to close."""
    sampler = ProcessSampler(config.top_groups, ps=ps)
    gpus = GpuReader(load_nvml)
    snapshot = Snapshot(
        [
            Source("processes", lambda: process_families(sampler.sample())),
            Source("gpu", lambda: gpu_families(gpus.read())),
        ],
        timeout_seconds=config.source_timeout_seconds,
        stale_after_seconds=config.stale_after_seconds,
    )
    return snapshot, gpus


def build_registry(snapshot: Snapshot) -> CollectorRegistry:
    """The exporter's own registry: the snapshot plus its own process metrics."""
    registry = CollectorRegistry()
    registry.register(snapshot)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve host, process-group and GPU metrics."
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        help="YAML config file; defaults apply without one",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        help="address to serve on; overrides listen_address from the config",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        choices=LEVELS,
        help="overrides log_level from the config",
    )
    return parser.parse_args(argv)


def _load_config(args: argparse.Namespace) -> ExporterConfig:
    config = read_config(args.config_file)

    overrides = {
        key: value
        for key, value in (
            ("listen_address", args.listen_address),
            ("log_level", args.log_level),
        )
        if value is not None
    }
    # replace() runs __post_init__ again, so flags are checked like the file.
    return dataclasses.replace(config, **overrides)


def _request_stop(stop: threading.Event, signum: int) -> None:
    log.info("shutting down signal=%s", signal.Signals(signum).name)
    stop.set()
