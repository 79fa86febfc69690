"""Names the operator command `aiops` as a person would type it, for log hints.

Looks it up on PATH, then beside the receiver's own command and interpreter.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

NAME = "aiops"


def aiops_command(
    which: Callable[[str], str | None] = shutil.which,
    argv0: str | None = None,
    executable: str | None = None,
) -> str:
    """`aiops` where PATH finds it; else its path beside the receiver's command
    (`argv0`) or interpreter (`executable`), as found: absolute, so that it can
    be pasted anywhere, and with symlinks unresolved, so that it is the path
    the operator knows; plain `aiops` where there is none.
    """
    if which(NAME):
        return NAME

    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    # A virtualenv's bin/ holds both aiops-webhook and aiops; its python may
    # be the one a console script's first line named, by another path.
    for start in (argv0, executable):
        if not start:
            continue
        beside = os.path.join(os.path.dirname(os.path.abspath(start)), NAME)
        if os.path.isfile(beside) and os.access(beside, os.X_OK):
            return beside
    return NAME
