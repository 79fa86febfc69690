"""`aiops recommend-backtest`: replays a recorded usage file, writes allocations.

The replay follows the shared data's allocation protocol and runs the same
Fleet, Sizer and policy code as the service; its CSV is what
`score-allocation` scores. Needs the usage file only; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from aiops_cli.progress import ProgressBar
from aiops_common.whole_file import written_whole
from detector.optimizer.fleet import Fleet, Row
from detector.optimizer.policies import POLICY_NAMES, make_policy
from detector.optimizer.prior import PriorError
from detector.optimizer.resources import RECORDED
from detector.optimizer.usage import UsageFileError, load_usage

log = logging.getLogger(__name__)

COMMAND = "recommend-backtest"
# As for most command-line tools, `--out -` is standard output.
STDOUT = "-"


def add_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `recommend-backtest` to the `aiops` command's subparsers."""
    parser = subparsers.add_parser(
        COMMAND,
        help="replay a recorded usage file and write recommended allocations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--usage", type=Path, required=True, help="usage file (CSV or CSV.gz)"
    )
    parser.add_argument(
        "--resource",
        required=True,
        choices=sorted(RECORDED),
        help="which resource the usage file holds",
    )
    # Kept as text: an empty --out would read as the folder ".".
    parser.add_argument(
        "--out",
        required=True,
        help="allocation CSV to write, gzipped where the name ends in .gz; "
        "- for standard output",
    )
    parser.add_argument(
        "--policy",
        default="bandit",
        choices=POLICY_NAMES,
        help="sizing policy (default: bandit, the learning policy)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Replay, write the CSV, summarise on stderr.

    Exits 0 on success, 2 on bad input (as `aiops backtest` does), 1 when the
    output cannot be written.
    """
    layout = RECORDED[args.resource]
    if _same_file(args.out, args.usage):
        print(
            f"aiops {COMMAND}: --out {args.out!r} is the --usage file, "
            "which writing would overwrite",
            file=sys.stderr,
        )
        return 2
    try:
        usage = load_usage(args.usage, layout)
    except UsageFileError as exc:
        print(f"aiops {COMMAND}: {exc}", file=sys.stderr)
        return 2
    if not usage.series:
        print(f"aiops {COMMAND}: {args.usage}: no series", file=sys.stderr)
        return 2
    if usage.dropped:
        # In the scorer's words, so that its report and ours compare.
        print(f"{args.resource}: usage data: {usage.notes()}", file=sys.stderr)
    # Found out before a replay of minutes, not after it.
    if args.out == STDOUT:
        # None where the shell closed it (`>&-`).
        unwritable = "standard output is closed" if sys.stdout is None else ""
    else:
        unwritable = _why_unwritable(args.out)
    if unwritable:
        print(
            f"aiops {COMMAND}: cannot write {args.out!r}: {unwritable}", file=sys.stderr
        )
        return 1
    out = Path(args.out)

    import torch

    # The policy's network is tiny; more threads than one only contend.
    torch.set_num_threads(1)
    try:
        policy, rules = make_policy(args.policy)
    except PriorError as exc:
        print(f"aiops {COMMAND}: {exc}; run `make train-optimizer`", file=sys.stderr)
        return 2
    fleet = Fleet(layout.spec, policy, rules)
    bar = ProgressBar(f"{args.resource} ({args.policy})", 1.0)
    began = time.monotonic()
    rows = fleet.feed(usage.series, progress=bar.update)
    bar.close()

    where = "standard output" if args.out == STDOUT else repr(args.out)
    try:
        if args.out == STDOUT:
            write_rows(sys.stdout, rows)
            sys.stdout.flush()
        else:
            write_allocations(out, rows)
    except BrokenPipeError:
        # The reader took what it wanted (`| head`) and went: no fault of
        # ours. Later writes to the closed pipe, at exit too, go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # The reason alone: the path in it may be the hidden file's.
        reason = exc.strerror or str(exc)
        print(f"aiops {COMMAND}: cannot write {where}: {reason}", file=sys.stderr)
        return 1

    short = sum(1 for s in fleet.sizers.values() if s.allocation is None)
    changes = sum(s.changes for s in fleet.sizers.values())
    print(
        f"{args.resource}: {len(usage.series)} series, {short} too short for a "
        f"recommendation, {len(rows)} rows ({changes} changes) in "
        f"{time.monotonic() - began:.1f}s -> {where}",
        file=sys.stderr,
    )
    return 0


def _same_file(out: str, usage: Path) -> bool:
    """Whether `out` names the usage file, by any path or link."""
    try:
        return os.path.samefile(out, usage)
    except (OSError, ValueError):
        # Not there (nothing to overwrite), or a name no file can have.
        return False


def _why_unwritable(out: str) -> str:
    """What keeps `out` from being written as a file; "" if nothing does."""
    try:
        return _why_path_unwritable(out)
    except OSError as exc:
        # Such as a name too long to look up: open() would fail the same way.
        return exc.strerror or str(exc)


def _why_path_unwritable(out: str) -> str:
    if not out:
        return "the name is empty"
    # Path() drops a trailing slash, and open() would write a file by the
    # folder's name.
    if out.endswith(("/", os.sep)):
        return "it ends in a slash, as a folder does"
    path = Path(out)
    if path.is_dir():
        return "it is a folder"
    try:
        # Through a link, the file written is its target.
        path = path.resolve(strict=False)
    except RuntimeError:
        return "it is a loop of links"
    folder = path.parent
    if not folder.is_dir():
        return f"no folder {str(folder)!r}"
    # Root passes access() everywhere but on a read-only mount, as open() does.
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {str(folder)!r} is not writable"
    if path.exists() and not os.access(path, os.W_OK):
        return "it is not writable"
    return ""


def write_allocations(path: Path, rows: list[Row]) -> None:
    """Write rows as the scorer reads them: timestamp,series,allocation; gzipped
    where the name ends in .gz, as the scorer then reads it.

    A file is written whole or not at all (aiops_common.whole_file): a full
    disk leaves it as it was rather than a CSV cut short.
    """
    with (
        written_whole(path) as place,
        _writing(place, path.suffix == ".gz", path.name) as fh,
    ):
        write_rows(fh, rows)


def write_rows(fh: IO[str], rows: list[Row]) -> None:
    """The CSV itself, to any text stream."""
    writer = csv.writer(fh)
    writer.writerow(("timestamp", "series", "allocation"))
    for row in rows:
        # repr keeps every digit, so the scorer sees the exact values.
        writer.writerow(
            (repr(float(row.timestamp)), row.series, repr(float(row.allocation)))
        )


@contextmanager
def _writing(path: Path, gzipped: bool, name: str) -> Iterator[IO[str]]:
    """`path` open for text; gzipped, with a header that names `name` (the
    file the rows end up in, not the hidden one they are written to)."""
    if not gzipped:
        with open(path, "w", newline="") as fh:
            yield fh
        return
    # mtime=0 leaves the time of writing out of the header: the same rows give
    # the same bytes, as they do in plain CSV.
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=0) as packed,
        io.TextIOWrapper(packed, newline="") as text,
    ):
        yield text
