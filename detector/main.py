"""Wires config, client, engine and HTTP endpoint into the aiops-detector service."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading

import requests
from prometheus_client import CollectorRegistry

from aiops_common.address import parse_listen_address
from aiops_common.config import ConfigError, load_config
from aiops_common.logs import setup_logging
from detector.config import ENV_PREFIX, DetectorConfig
from detector.diagnosis.collector import DiagnosisCollector
from detector.diagnosis.incident import anomalies_from
from detector.diagnosis.service import Diagnoser
from detector.engine import Engine
from detector.factory import uses_forecaster
from detector.metrics import DetectorCollector
from detector.optimizer.collector import OptimizerCollector
from detector.optimizer.config import OptimizerConfig
from detector.optimizer.optimizer import Optimizer
from detector.prometheus import PrometheusClient
from detector.shard import parse_shard
from detector.store import StoreError
from detector.training import background_executor
from detector.web import WebServer

log = logging.getLogger(__name__)

PROG = "aiops-detector"
SHUTDOWN_SIGNALS = {signal.SIGTERM, signal.SIGINT}

# How long shutdown waits for the last checkpoint once it is being written:
# 10,000 ensemble series take about 5 s; the rest is room for a slow disk.
CHECKPOINT_JOIN_SECONDS = 60.0
# How often the optimizer's thread asks whether its interval has passed.
OPTIMIZER_POLL_SECONDS = 1.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Scores series from Prometheus and exports anomaly metrics.",
    )
    parser.add_argument(
        "--config.file", dest="config_file", metavar="FILE", help="YAML config file"
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        help="where to serve /metrics (default 127.0.0.1:9843)",
    )
    parser.add_argument(
        "--prometheus.url",
        dest="prometheus_url",
        metavar="URL",
        help="Prometheus to query (default http://127.0.0.1:9090)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        metavar="LEVEL",
        help="debug, info, warn or error (default info)",
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="score only the series whose label hash falls in shard I of N "
        "(default 0/1: all)",
    )
    parser.add_argument(
        "--state.dir",
        dest="state_dir",
        metavar="DIR",
        help="where shared models and each series' model are saved and reloaded "
        "(default: none)",
    )
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> DetectorConfig:
    """File, then environment, then flags; each later one wins."""
    config = load_config(DetectorConfig, args.config_file, env_prefix=ENV_PREFIX)
    overrides = {
        key: getattr(args, key)
        for key in (
            "listen_address",
            "prometheus_url",
            "log_level",
            "shard",
            "state_dir",
        )
        if getattr(args, key) is not None
    }
    try:
        # replace() runs __post_init__ again, so flags are checked like the file.
        return dataclasses.replace(config, **overrides)
    except ValueError as exc:
        raise ConfigError(f"command line: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load(args)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)

    session = requests.Session()
    session.headers["User-Agent"] = PROG
    client = PrometheusClient(
        config.prometheus_url, session, timeout=config.query_timeout_seconds
    )
    if _uses_torch(config):
        import torch

        # Small models gain nothing from intra-op threads; one keeps training
        # from taking every core from the scoring loop.
        torch.set_num_threads(1)
    executor = background_executor()
    diagnoser = Diagnoser(
        config.diagnosis,
        client.query_range,
        fleet_wide=parse_shard(config.shard)[0] == 0,
    )
    sizing = optimizer_in_shard(config)
    optimizer = Optimizer(sizing, client.query_range) if sizing else None

    def after_cycle() -> None:
        if config.diagnosis.enabled:
            diagnoser.run_cycle(anomalies_from(engine.snapshot))

    try:
        engine = Engine(config, client, executor=executor, after_cycle=after_cycle)
    except StoreError as exc:
        log.error("cannot use state directory error=%s", exc)
        return 1

    registry = CollectorRegistry()
    registry.register(
        DetectorCollector(lambda: engine.snapshot, lambda: engine.checkpoint_status)
    )
    if config.diagnosis.enabled:
        # Off, it would export a last success of 0 for ever, which reads as
        # a diagnosis that stopped (AiopsDiagnosisStale).
        registry.register(DiagnosisCollector(lambda: diagnoser.snapshot))
    else:
        log.info("diagnosis off; set diagnosis.enabled: true to rank causes")
    if optimizer is not None:
        registry.register(OptimizerCollector(lambda: optimizer.snapshot))
    host, port = parse_listen_address(config.listen_address)
    try:
        web = WebServer(host, port, registry)
    except OSError as exc:
        log.error("cannot listen address=%s error=%s", config.listen_address, exc)
        return 1

    log.info(
        "detector started listen_address=%s prometheus_url=%s queries=%d "
        "model=%s shard=%s",
        config.listen_address,
        config.prometheus_url,
        len(config.queries),
        config.model.kind,
        config.shard,
    )
    for query in config.queries:
        if query.model is not None:
            log.info(
                "query has its own model query=%s model=%s",
                query.name,
                query.model.kind,
            )
    log_optimizer(config.optimizer, config.shard)
    # Blocked before any thread starts, so that every thread inherits the mask
    # and the signal waits for sigwait() below; a Python handler could instead
    # fire while this thread holds the very lock that stop.set() needs.
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
    try:
        # A query in flight gets its timeout to finish before we leave it.
        _serve(
            engine,
            web,
            join_seconds=config.query_timeout_seconds + 1.0,
            optimizer=optimizer,
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        executor.shutdown(wait=False, cancel_futures=True)
        session.close()
    log.info("stopped")
    return 0


def optimizer_in_shard(config: DetectorConfig) -> OptimizerConfig | None:
    """The optimizer's settings where this replica runs it, else None.

    The optimizer does not split its series by shard: every replica would size
    all of them and export each recommendation twice. Shard 0 alone runs it.
    """
    index, _ = parse_shard(config.shard)
    return config.optimizer if index == 0 else None


def log_optimizer(config: OptimizerConfig | None, shard: str = "0/1") -> None:
    """Say whether the optimizer runs and what it sizes.

    `optimizer:` left empty is a YAML null and turns it off, where
    `optimizer: {}` turns it on; without this line both start alike.
    """
    if config is None:
        log.info("optimizer off; set `optimizer: {}` for its defaults")
        return
    if parse_shard(shard)[0] != 0:
        log.info("optimizer off in shard %s; shard 0 sizes every series", shard)
        return
    resources = ",".join(r.resource for r in config.resources) or "none"
    log.info(
        "optimizer on policy=%s resources=%s power=%s interval_seconds=%g",
        config.policy,
        resources,
        "off" if config.power is None else "on",
        config.interval_seconds,
    )


def _uses_torch(config: DetectorConfig) -> bool:
    models = [config.model, *(config.model_for(q) for q in config.queries)]
    return any(uses_forecaster(m) for m in models) or any(
        e.method == "autoencoder" for e in config.entities
    )


def size_until(
    optimizer: Optimizer, stop: threading.Event, poll: float = OPTIMIZER_POLL_SECONDS
) -> None:
    """Run the optimizer's cycles, each once its interval has passed, until stop.

    Its own thread: the first cycle replays `history_seconds` of every series
    (300 series of two days took 38 s of a core), which in the scoring loop
    would have held every query's scores that long.
    """
    while True:
        try:
            optimizer.run_cycle()
        except Exception:
            # Its stages count their own failures; this is a fault of the
            # loop's own, which must not end the recommendations for good.
            log.exception("optimizer cycle failed; trying again next interval")
        if stop.wait(poll):
            return


def _serve(
    engine: Engine,
    web: WebServer,
    join_seconds: float,
    optimizer: Optimizer | None = None,
) -> None:
    """Run the loop, the optimizer and the endpoint until SIGTERM or SIGINT."""
    stop = threading.Event()
    web.start()
    # Daemons, so that a query hung past its timeout cannot keep the process up.
    loop = threading.Thread(
        target=engine.run, args=(stop,), name="detector-loop", daemon=True
    )
    loop.start()
    if optimizer is not None:
        threading.Thread(
            target=size_until, args=(optimizer, stop), name="optimizer", daemon=True
        ).start()

    received = signal.sigwait(SHUTDOWN_SIGNALS)
    log.info("shutting down signal=%s", signal.Signals(received).name)
    stop.set()
    loop.join(timeout=join_seconds)
    if loop.is_alive() and engine.saving:
        log.info("waiting for the checkpoint to be written")
        loop.join(timeout=CHECKPOINT_JOIN_SECONDS)
    if loop.is_alive():
        log.warning("detector loop still busy at exit; leaving it behind")
    web.stop()
