"""The files the receiver keeps beside its database."""

from __future__ import annotations

import os


def beside(database: str, suffix: str) -> str:
    """`<database><suffix>`, named after the database's real file.

    Every path to the database, a symlink's too, finds the same file: two
    receivers cannot keep two heads, locks or journals of one database.
    """
    return os.path.realpath(database) + suffix
