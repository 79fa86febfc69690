"""Where family models live between runs: one folder per family under state_dir.

Each model is written to a temporary file and renamed into place, so a crash
mid-write leaves the previous model, never half of one. A small JSON file next
to it records what the model was trained on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


class StoreError(Exception):
    """A state directory that cannot be used."""


class ModelStore:
    """Paths and metadata for the models of each family.

    Only the shared models are kept here (weights and normalization); each
    series' own model goes to one file beside them (detector.checkpoint).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"state_dir {str(root)!r} is not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create state_dir {str(root)!r}: {exc}") from exc

    def path(self, family: str, name: str) -> Path:
        # Family names are query and entity names, which the config restricts
        # to [a-zA-Z0-9_]: safe as folder names.
        return self.root / family / name

    def write_meta(self, family: str, name: str, meta: dict[str, Any]) -> None:
        path = self.path(family, name + ".json")
        write_atomically(path, json.dumps(meta, sort_keys=True).encode())

    def read_meta(self, family: str, name: str) -> dict[str, Any] | None:
        path = self.path(family, name + ".json")
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("unreadable model metadata path=%s error=%s", path, exc)
            return None
        return meta if isinstance(meta, dict) else None
