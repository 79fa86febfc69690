"""Entry point of `aiops`, the operator command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from aiops_common.logs import setup_logging

# Relative to the project root, as the data sets are given to every checkout.
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aiops", description=__doc__)
    parser.add_argument("--log.level", dest="log_level", default="warn")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="run the whole bundle on recorded data and a live CPU hog"
    )
    demo.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("AIOPS_DATA_DIR", DEFAULT_DATA_DIR)),
        help="folder with nab/ and alibaba-genai/ (default: ../shared/data, "
        "or $AIOPS_DATA_DIR)",
    )
    demo.add_argument(
        "--nab", type=Path, help="a NAB layout or checkout (default: DATA/nab)"
    )
    demo.add_argument(
        "--alibaba",
        type=Path,
        help="folder with pod_gpu_duty_cycle.csv[.gz] (default: DATA/alibaba-genai)",
    )
    demo.add_argument(
        "--live-seconds", type=float, default=200.0, help="length of the live replay"
    )
    demo.add_argument(
        "--keep", action="store_true", help="leave the bundle running afterwards"
    )
    demo.add_argument("--run-dir", type=Path, help="where configs, data and logs go")

    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    if args.command == "demo":
        from aiops_cli.datasets import DatasetError
        from aiops_cli.demo import run_demo
        from aiops_cli.stack import StackError

        try:
            run_demo(
                args.nab or args.data / "nab",
                args.alibaba or args.data / "alibaba-genai",
                args.live_seconds,
                args.keep,
                args.run_dir,
            )
        except (DatasetError, StackError) as exc:
            print(f"aiops demo: {exc}", file=sys.stderr)
            sys.exit(1)
