"""Which series this replica scores: a stable hash of labels, modulo replicas.

The hash is BLAKE2b of the chosen labels in sorted order, so every replica,
whatever its Python version or start order, assigns a series to the same
shard, and n replicas with shards 0..n-1 cover each series exactly once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n), with 0 <= i < n."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {text!r}")
    return i, n


@dataclass(frozen=True)
class Shard:
    """Replica `index` of `count`; `by` names the labels hashed (all if empty)."""

    index: int = 0
    count: int = 1
    by: Sequence[str] = ()

    def owns(self, labels: Mapping[str, str]) -> bool:
        if self.count == 1:
            return True
        return shard_of(labels, self.count, self.by) == self.index


def shard_of(labels: Mapping[str, str], count: int, by: Sequence[str] = ()) -> int:
    names = sorted(by) if by else sorted(labels)
    # Separators that cannot appear in label names keep "a=b,c" apart from
    # "a=b" plus "c"; a missing label hashes as empty.
    text = "\x1f".join(f"{name}\x1e{labels.get(name, '')}" for name in names)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
