"""A one-line progress bar for long command-line work."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Redraws in place on a terminal; prints a line every 10% elsewhere."""

    def __init__(self, label: str, total: float, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 1e-9)
        # Looked up now, not when the module loaded: sys.stderr may have been
        # replaced since (a test's capture, a redirected stream).
        self.stream = sys.stderr if stream is None else stream
        self.interactive = self.stream.isatty()
        self.began = time.monotonic()
        self.last_tenth = -1

    def update(self, done: float) -> None:
        fraction = min(1.0, max(0.0, done / self.total))
        elapsed = time.monotonic() - self.began
        if self.interactive:
            filled = int(fraction * 30)
            bar = "#" * filled + "-" * (30 - filled)
            self.stream.write(f"\r{self.label} [{bar}] {fraction:4.0%} {elapsed:5.0f}s")
            self.stream.flush()
        elif int(fraction * 10) > self.last_tenth:
            self.last_tenth = int(fraction * 10)
            self.stream.write(f"{self.label}: {fraction:.0%} after {elapsed:.0f}s\n")
            self.stream.flush()

    def close(self) -> None:
        self.update(self.total)
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
