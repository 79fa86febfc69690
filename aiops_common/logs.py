"""Configures logging for a service's main(); libraries only call getLogger."""

from __future__ import annotations

import logging
import sys
from typing import Literal, get_args

# A type, so that a config loader refuses a bad level (a YAML boolean such as
# `off` too) naming the levels.
LogLevel = Literal["debug", "info", "warn", "error"]
LEVELS: tuple[str, ...] = get_args(LogLevel)


def setup_logging(level: str = "info", stream=sys.stderr) -> None:
    """Send `key=value` style records to `stream` at `level` (Prometheus' names)."""
    numeric = {"warn": logging.WARNING}.get(level, None) or getattr(
        logging, level.upper(), None
    )
    if not isinstance(numeric, int):
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter(
            "ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
