"""Command line entry point: reads the config, opens the store, serves with waitress."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import waitress

from aiops_common.address import parse_listen_address
from aiops_common.config import ConfigError, load_config
from aiops_common.logs import LEVELS, setup_logging
from alertmanager_webhook.app import create_app
from alertmanager_webhook.config import ENV_PREFIX, WebhookConfig, read_token
from alertmanager_webhook.store import Store, StoreError

log = logging.getLogger(__name__)

PROG = "aiops-webhook"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Receive Alertmanager webhooks and plan remediations."
    )
    parser.add_argument("--config.file", dest="config_file", metavar="PATH")
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
        token = read_token(config)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2

    setup_logging(config.log_level)

    try:
        store = Store.open(config.database)
    except StoreError as exc:
        print(f"{PROG}: database: {exc}", file=sys.stderr)
        return 2

    try:
        serve(config, store, token)
    finally:
        store.close()
    log.info("stopped")
    return 0


def serve(config: WebhookConfig, store: Store, token: str) -> None:
    """Serve until a signal arrives; waitress ends its run loop on SystemExit."""
    host, port = parse_listen_address(config.listen_address)
    app = create_app(config, store, token=token)
    # Waitress buffers a whole body before the app runs. Its own cap sits at twice
    # ours: a huge body is cut off at the socket, a moderately oversized one still
    # reaches the app to be answered in JSON and counted as rejected.
    server = waitress.create_server(
        app, host=host, port=port, max_request_body_size=2 * config.max_body_bytes
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("shutting down signal=%s", signal.Signals(signum).name)
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    log.info(
        "listening address=%s:%s mode=%s policies=%d database=%s",
        host,
        server.effective_port,
        config.mode,
        len(config.policies),
        config.database,
    )
    try:
        # run() returns after shutting its worker threads down on SystemExit or
        # KeyboardInterrupt; close() then releases the listening socket.
        server.run()
    finally:
        server.close()
        signal.signal(signal.SIGTERM, previous)
