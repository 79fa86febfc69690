"""Entry point of `aiops`, the operator command.

Each command lives with the part it belongs to and offers the same two
functions: one adds its parser, one runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType, ModuleType

from aiops_common.logs import LEVELS, setup_logging


def _command_modules() -> list[ModuleType]:
    from aiops_cli import demo
    from alertmanager_webhook import cli as webhook_cli
    from detector import backtest
    from detector.optimizer import backtest as recommend_backtest

    return [demo, webhook_cli, backtest, recommend_backtest]


# What `aiops --help` says first; argparse lists the commands below it.
DESCRIPTION = (
    "Operate prom-aiops from a shell: approve the actions the receiver holds "
    "for a person and check its audit log, run the demo, and backtest the "
    "detector and the optimizer on recorded data."
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="aiops",
        description=DESCRIPTION,
        epilog="`aiops COMMAND --help` shows a command's options.",
    )
    parser.add_argument("--log.level", dest="log_level", default="warn", choices=LEVELS)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in _command_modules():
        module.add_subcommands(commands)

    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    # Stopped by a signal (`timeout`, a closed terminal, a job stopped), a
    # command ends as on Ctrl-C: what it was writing is removed and the file
    # before it kept. The demo sets handlers of its own over these.
    signals = (signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, _exit) for number in signals}
    try:
        status = args.run(args)
    except KeyboardInterrupt:
        print("aiops: interrupted", file=sys.stderr)
        status = 128 + signal.SIGINT
    finally:
        # Given back: a caller in-process (a test) keeps its own.
        for number, handler in previous.items():
            signal.signal(number, handler)
    sys.exit(status)


def _exit(number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + number)
