"""Command line entry point: reads the config, wires the parts, serves.

Plain HTTP is served by waitress; with TLS configured, by werkzeug's threaded
server, because waitress does not speak TLS.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from types import FrameType

import waitress
from flask import Flask
from prometheus_client import CollectorRegistry, disable_created_metrics
from werkzeug.serving import make_server

from aiops_common.address import parse_listen_address
from aiops_common.config import ConfigError, load_config
from aiops_common.logs import LEVELS, setup_logging
from alertmanager_webhook.app import Auth, create_app
from alertmanager_webhook.config import (
    ENV_PREFIX,
    WebhookConfig,
    is_loopback,
    policy_mode,
)
from alertmanager_webhook.credentials import (
    check_k8s_ca,
    read_k8s_token,
    warn_of_open_secrets,
)
from alertmanager_webhook.database_file import hold_database
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.programs import resolve_programs
from alertmanager_webhook.report.content import ReportBuilder
from alertmanager_webhook.report.prometheus import RangeQuery
from alertmanager_webhook.report.service import Reports
from alertmanager_webhook.store import Store
from alertmanager_webhook.store_errors import StoreError
from alertmanager_webhook.worker_process import WorkerProcess, WorkerStartError

log = logging.getLogger(__name__)

PROG = "aiops-webhook"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Receive Alertmanager webhooks and act on them by policy.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        help="YAML config file (deploy/webhook.yml shows every key)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        help="overrides listen_address of the config file",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        choices=LEVELS,
        help="overrides log_level of the config file",
    )
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> WebhookConfig:
    """Build the config from the file, the environment and the flags."""
    config = load_config(WebhookConfig, args.config_file, env_prefix=ENV_PREFIX)

    overrides = {}
    if args.listen_address is not None:
        try:
            parse_listen_address(args.listen_address)
        except ValueError as exc:
            raise ConfigError(f"--web.listen-address: {exc}") from exc
        overrides["listen_address"] = args.listen_address
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    return dataclasses.replace(config, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the receiver until SIGTERM or Ctrl-C; return the exit status."""
    args = parse_args(argv)
    try:
        config = load(args)
        auth = Auth.from_config(config)
        k8s_token = read_k8s_token(config)
        check_k8s_ca(config)
        tls = tls_context(config)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2

    setup_logging(config.log_level)
    # Each counter and histogram would export a `_created` series beside it:
    # 64 series no dashboard or rule reads, and the exporter and detector
    # export none.
    disable_created_metrics()
    # A request thread gives up the interpreter lock at each SQLite call and
    # waits to take it back; handing it over every millisecond rather than
    # every five keeps the answer quick while the worker's moves are relayed.
    sys.setswitchinterval(0.001)
    if not config.has_auth:
        log.warning("no authentication: listening on loopback only")
    warn_of_plain_http(config)
    warn_of_open_secrets(config)
    warn_of_held_modes(config)
    config = resolve_programs(config)

    # One connection: the worker's moves (it runs in a process of its own,
    # worker_process.py) join the notifications' group commits.
    try:
        held = hold_database(config.database)
    except StoreError as exc:
        print(f"{PROG}: database: {exc}", file=sys.stderr)
        return 2
    try:
        store = Store.open(
            config.database,
            autocheckpoint=False,
            sync=config.database_sync.upper(),
        )
    except StoreError as exc:
        os.close(held)
        print(f"{PROG}: database: {exc}", file=sys.stderr)
        return 2

    metrics = WebhookMetrics(CollectorRegistry())
    metrics.preset_actions((p.action, policy_mode(config, p)) for p in config.policies)
    worker = WorkerProcess(config, Jobs(store), metrics, k8s_token)
    query_range = (
        RangeQuery(config.report_prometheus_url)
        if config.report_prometheus_url
        else None
    )
    reports = Reports(store, ReportBuilder(store, query_range))
    app = create_app(
        config,
        store,
        auth=auth,
        notify=worker.notify,
        metrics=metrics,
        reports=reports,
    )

    # Everything loaded so far lives as long as the receiver: moved out of
    # the collector's sight, it is no longer walked by each full collection,
    # which otherwise stalled every request in flight for some 30 ms.
    gc.collect()
    gc.freeze()
    try:
        serve(config, app, tls, worker)
    except ListenError as exc:
        log.error("cannot listen address=%s error=%s", config.listen_address, exc)
        return 1
    except WorkerStartError as exc:
        log.error("worker did not start err=%s", exc)
        return 1
    finally:
        store.close()
        os.close(held)
    log.info("stopped")
    return 0


def warn_of_plain_http(config: WebhookConfig) -> None:
    """Say at start that credentials travel unencrypted beyond this host."""
    host, _ = parse_listen_address(config.listen_address)
    if config.tls_cert_file or is_loopback(host):
        return
    log.warning(
        "no TLS beyond loopback address=%s: tokens and alerts cross the network "
        "in clear text; set tls_cert_file and tls_key_file",
        config.listen_address,
    )


def warn_of_held_modes(config: WebhookConfig) -> None:
    """Say at start which policies' own modes the receiver's mode holds back.

    A policy may only be more cautious than the receiver: one set to approve
    or apply under a dry-run receiver only plans, which its author may not
    expect.
    """
    for policy in config.policies:
        runs = policy_mode(config, policy)
        if policy.mode and runs != policy.mode:
            log.warning(
                "policy=%s mode=%s runs as %s: the receiver's mode is %s, and a "
                "policy may only be more cautious; set the receiver's mode to %s "
                "to let it",
                policy.name,
                policy.mode,
                runs,
                config.mode,
                policy.mode,
            )


def tls_context(config: WebhookConfig) -> ssl.SSLContext | None:
    if not config.tls_cert_file:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"tls_cert_file: cannot load {config.tls_cert_file!r} with "
            f"{config.tls_key_file!r}: {exc}"
        ) from exc
    return context


class ListenError(Exception):
    """The listen address cannot be bound (taken, not this host's, no right)."""


def serve(
    config: WebhookConfig,
    app: Flask,
    tls: ssl.SSLContext | None,
    worker: WorkerProcess,
) -> None:
    """Serve until a signal arrives; both servers end their loop on SystemExit.

    The address is bound before the worker starts: a receiver that cannot
    listen must not act on what an earlier run left queued.
    """
    try:
        bound, run, close = _bind(config, app, tls)
    except OSError as exc:
        raise ListenError(exc.strerror or str(exc)) from exc
    host, _ = parse_listen_address(config.listen_address)
    try:
        worker.start()
    except WorkerStartError:
        close()
        raise

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("shutting down signal=%s", signal.Signals(signum).name)
        raise SystemExit(0)

    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    log.info(
        "listening address=%s:%s tls=%s mode=%s policies=%d database=%s",
        host,
        bound,
        tls is not None,
        config.mode,
        len(config.policies),
        config.database,
    )
    try:
        run()
    except SystemExit:
        pass
    finally:
        close()
        worker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bind(
    config: WebhookConfig, app: Flask, tls: ssl.SSLContext | None
) -> tuple[int, Callable[[], None], Callable[[], None]]:
    """Bind the listen address; (port bound, run, close) of the server."""
    host, port = parse_listen_address(config.listen_address)
    if tls is None:
        # Waitress buffers a whole body before the app runs. Its own cap sits at
        # twice ours: a huge body is cut off at the socket, a moderately oversized
        # one still reaches the app to be answered in JSON and counted as rejected.
        server = waitress.create_server(
            app, host=host, port=port, max_request_body_size=2 * config.max_body_bytes
        )
        bound, run, close = server.effective_port, server.run, server.close
    else:
        # TODO: werkzeug's server starts a thread per connection, unbounded; a
        # TLS-capable production server (or a terminating proxy in front of
        # waitress) is the right fix once the bundle may take a dependency.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        tls_server = make_server(host, port, app, threaded=True, ssl_context=tls)
        bound, run, close = (
            tls_server.server_port,
            tls_server.serve_forever,
            tls_server.server_close,
        )
    return bound, run, close
