"""The `aiops-exporter` command: read the config, wire the parts, serve until told
to stop. The only place that configures logging, the open-files limit or signal
handlers."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import resource
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector

from aiops_common.config import ConfigError
from aiops_common.logs import LEVELS, setup_logging
from exporter.config import ExporterConfig, read_config
from exporter.gpu import GpuReader
from exporter.gpu_metrics import gpu_families
from exporter.gpu_process_metrics import gpu_process_families
from exporter.gpu_processes import GpuProcessReader
from exporter.host_metrics import process_families
from exporter.identity import IdentityCache
from exporter.kept_files import keepable_files
from exporter.kmsg import Device, KmsgReader, open_kmsg
from exporter.loop import CollectionLoop
from exporter.metrics import AuthFailures
from exporter.nvml_session import NvmlSession, import_pynvml
from exporter.own_process import OwnProcess
from exporter.pod_resources import GpuPodReader, PodResourcesClient
from exporter.pod_resources_metrics import gpu_pod_families
from exporter.processes import ProcessSampler
from exporter.procfs import ProcFs
from exporter.server import MetricsServer, make_app
from exporter.snapshot import Snapshot, Source
from exporter.web_config import BasicAuth, WebConfig, read_web_config, ssl_context
from exporter.xid import NvmlXidEvents, XidCollector
from exporter.xid_metrics import xid_families

PROG = "aiops-exporter"

log = logging.getLogger(__name__)

# How long shutdown waits for the collection thread and running sources.
_STOP_TIMEOUT_SECONDS = 5.0


def main(argv: Sequence[str] | None = None) -> None:
    """Run the exporter; exit 2 on a bad config or flag, 1 if it cannot listen."""
    args = _parse_args(argv)
    try:
        config = _load_config(args)
        web = (
            read_web_config(config.web_config_file) if config.web_config_file else None
        )
        context = ssl_context(web.tls) if web and web.tls else None
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc

    setup_logging(config.log_level)
    _raise_open_files_limit()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: _request_stop(stop, signum))

    serve(config, stop, web=web, context=context)


def serve(
    config: ExporterConfig,
    stop: threading.Event,
    procfs: ProcFs | None = None,
    load_nvml: Callable[[], Any] = import_pynvml,
    open_device: Callable[[str], Device] = open_kmsg,
    web: WebConfig | None = None,
    context: Any = None,
) -> None:
    """Collect and serve until `stop` is set, then shut everything down."""
    snapshot, close = build_snapshot(config, procfs, load_nvml, open_device)
    auth = BasicAuth(web.users) if web and web.users else None
    failures = AuthFailures()
    app = make_app(
        build_exposition(snapshot, failures),
        auth,
        web.headers if web else None,
        on_auth_failure=failures.inc,
    )

    try:
        server = MetricsServer(config.listen_address, app, context)
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
    # address= stays last: scripts read the port from the end of this line.
    log.info(
        "listening tls=%s basic_auth=%s address=%s:%s",
        context is not None,
        auth is not None,
        host,
        port,
    )

    stop.wait()

    server.stop()
    loop.stop(_STOP_TIMEOUT_SECONDS)
    # A source hung in the driver still holds NVML; shutting it down under that
    # call could crash, and the process is about to exit anyway.
    if snapshot.join(_STOP_TIMEOUT_SECONDS):
        close()
    log.info("stopped")


def build_snapshot(
    config: ExporterConfig,
    procfs: ProcFs | None = None,
    load_nvml: Callable[[], Any] = import_pynvml,
    open_device: Callable[[str], Device] = open_kmsg,
) -> tuple[Snapshot, Callable[[], None]]:
    """The snapshot over every source, and what closes NVML and kept files."""
    if procfs is None:
        procfs = ProcFs(config.proc_root)
        # The host sampler reads every process every cycle and keeps their
        # files open; it is the only reader of its ProcFs, as kept files need.
        host_procfs = ProcFs(config.proc_root, keep_open=keepable_files())
    else:
        host_procfs = procfs
    identities = IdentityCache(procfs, cmdline=config.process_cmdline)
    sampler = ProcessSampler(
        config.top_groups,
        host_procfs,
        identities,
        grouping=config.process_grouping,
    )
    session = NvmlSession(load_nvml)
    # Half the source's limit per GPU: a hung GPU is given up on while its
    # source still has time to serve the other GPUs.
    per_gpu_timeout = config.source_timeout_seconds / 2
    gpus = GpuReader(
        session,
        expected_count=config.expected_gpus,
        timeout_seconds=per_gpu_timeout,
    )
    gpu_processes = GpuProcessReader(
        session,
        procfs,
        identities,
        per_pid=config.gpu_processes_per_pid,
        known=lambda: sampler.started,
        timeout_seconds=per_gpu_timeout,
    )
    xids = XidCollector(
        session,
        KmsgReader(config.kmsg_path, open_device) if config.kmsg_path else None,
        NvmlXidEvents(session) if config.nvml_xid_events else None,
    )

    sources = [
        Source("processes", lambda: process_families(sampler.sample())),
        Source("gpu", lambda: gpu_families(gpus.read())),
        Source("gpu_processes", lambda: gpu_process_families(gpu_processes.read())),
        Source("xid", lambda: xid_families(xids.collect())),
    ]
    if config.kubelet_pod_resources_socket:
        pods = GpuPodReader(
            PodResourcesClient(
                config.kubelet_pod_resources_socket,
                # Well inside the source's limit, so a slow kubelet shows as
                # the call's own deadline error rather than a source timeout.
                timeout_seconds=config.source_timeout_seconds / 2,
            ),
            lambda: session.identities,
        )
        sources.append(Source("pod_resources", lambda: gpu_pod_families(pods.read())))

    snapshot = Snapshot(
        sources,
        timeout_seconds=config.source_timeout_seconds,
        stale_after_seconds=config.stale_after_seconds,
    )

    def close() -> None:
        # Likewise for a single GPU's read hung in the driver (see serve()).
        if gpus.join(_STOP_TIMEOUT_SECONDS) and gpu_processes.join(
            _STOP_TIMEOUT_SECONDS
        ):
            session.close()
        host_procfs.close()

    return snapshot, close


def build_exposition(
    snapshot: Snapshot, auth_failures: AuthFailures | None = None
) -> Callable[[], bytes]:
    """What /metrics serves: the snapshot plus the exporter's own process metrics."""
    own = CollectorRegistry()
    own.register(OwnProcess())
    if auth_failures is not None:
        own.register(auth_failures)
    PlatformCollector(registry=own)
    return lambda: snapshot.exposition(own)


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
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="TLS and basic auth config, in Prometheus' web config format; "
        "overrides web_config_file from the config",
    )
    parser.add_argument(
        "--kubelet.pod-resources-socket",
        dest="kubelet_pod_resources_socket",
        metavar="PATH",
        help="the kubelet's PodResources socket, to name each GPU's pod; '' to "
        "ask none; overrides kubelet_pod_resources_socket from the config",
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
            ("web_config_file", args.web_config_file),
            ("kubelet_pod_resources_socket", args.kubelet_pod_resources_socket),
        )
        if value is not None
    }
    # replace() runs __post_init__ again, so flags are checked like the file.
    return dataclasses.replace(config, **overrides)


def _raise_open_files_limit() -> None:
    # The host sampler keeps three files open per process; the soft limit is
    # often 1024 while the hard one allows far more.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("open files limit stays soft=%s error=%s", soft, exc)
        return
    log.debug("open files limit raised soft=%s hard=%s", soft, hard)


def _request_stop(stop: threading.Event, signum: int) -> None:
    log.info("shutting down signal=%s", signal.Signals(signum).name)
    stop.set()
