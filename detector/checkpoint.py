"""Each series' model saved to the state directory and taken up after a restart.

A checkpoint holds every tracked series' model (its windows, calibrators, SPOT
state and warm-up progress), every entity's decision state, and how far each
query was scored. Restored, a series scores its next point at once instead of
warming up again, and the engine asks Prometheus only for the points since.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector import statefile
from detector.config import DetectorConfig, EntityConfig, ModelConfig, QueryConfig
from detector.entities import Entity, EntityGroup
from detector.family import Family, Track

log = logging.getLogger(__name__)

# At the root of state_dir: family folders are named like queries, which
# cannot hold a '-' or a '.', so the two never meet.
FILE_NAME = "series-state.pickle"

STAGES = ("read", "write")
QUERY, ENTITY = "query", "entity"


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    """What /metrics shows of the checkpoints, replaced whole after each."""

    last_success_timestamp_seconds: float = 0.0
    duration_seconds: float = 0.0
    size_bytes: int = 0
    series_saved: int = 0
    series_restored: int = 0
    errors: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))


def query_fingerprint(query: QueryConfig, model: ModelConfig) -> str:
    """What a saved series model depends on: the model's settings and its data."""
    return _digest(
        {
            "model": dataclasses.asdict(model),
            "query": [query.promql, query.step_seconds],
        }
    )


def entity_fingerprint(entity: EntityConfig, model: ModelConfig) -> str:
    return _digest(
        {"model": dataclasses.asdict(model), "entity": dataclasses.asdict(entity)}
    )


def _digest(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _NothingToRestore(statefile.StateFileError):
    """A sound file that holds none of the configured queries."""


class Checkpoint:
    """Writes and reads the per-series state of one engine."""

    def __init__(
        self,
        path: Path,
        config: DetectorConfig,
        clock: Callable[[], float] = time.time,
        owner: int | None = None,
    ) -> None:
        self.path = path
        self.status = CheckpointStatus()
        self._config = config
        self._clock = clock
        self._owner = owner
        self._queries = {
            # Each query's own model: changing one query's model section
            # makes only that query learn again.
            q.name: query_fingerprint(q, config.model_for(q))
            for q in config.queries
        }
        self._entities = {
            e.name: entity_fingerprint(e, config.model) for e in config.entities
        }
        # The first periodic write comes one interval after the start.
        self._last_attempt = clock()

    def due(self, now: float) -> bool:
        return now - self._last_attempt >= self._config.checkpoint_interval_seconds

    def save(
        self,
        families: Mapping[str, Family],
        groups: Sequence[EntityGroup],
        cursors: Mapping[str, float],
    ) -> None:
        """Write every series' state; a failure is logged and counted, never raised."""
        started = self._clock()
        self._last_attempt = started
        header = {
            "written_at": started,
            "queries": {
                name: {"fingerprint": self._queries[name], "cursor": cursors[name]}
                for name in families
                if name in cursors
            },
            "entities": {
                g.name: {"fingerprint": self._entities[g.name]} for g in groups
            },
        }
        series = sum(len(f.tracks) for f in families.values())

        try:
            size = statefile.write(self.path, header, _records(families, groups))
        # Pickling reaches into every model object; whatever it raises, the
        # loop goes on and the previous checkpoint stays in place.
        except Exception as exc:
            self._failed("write")
            log.warning("cannot write checkpoint path=%s error=%r", self.path, exc)
            return

        duration = max(0.0, self._clock() - started)
        self.status = dataclasses.replace(
            self.status,
            last_success_timestamp_seconds=self._clock(),
            duration_seconds=duration,
            size_bytes=size,
            series_saved=series,
        )
        log.info(
            "checkpoint written path=%s series=%d bytes=%d seconds=%.3f",
            self.path,
            series,
            size,
            duration,
        )

    def restore(
        self,
        families: Mapping[str, Family],
        groups: Sequence[EntityGroup],
        cursors: dict[str, float],
        owns: Callable[[Mapping[str, str]], bool],
    ) -> int:
        """Put saved series back into `families` and `groups`; return how many.

        A file that cannot be used is named in one log line, and every series
        learns again from its history, as without a checkpoint.
        """
        try:
            header, records = statefile.read(self.path, self._accept, self._owner)
        except FileNotFoundError:
            log.info("no checkpoint yet path=%s", self.path)
            return 0
        except _NothingToRestore as exc:
            log.info("nothing to restore path=%s reason=%s", self.path, exc)
            return 0
        except (OSError, statefile.StateFileError) as exc:
            self._failed("read")
            log.warning(
                "ignoring checkpoint path=%s error=%s; learning again", self.path, exc
            )
            return 0

        accepted = self._accepted(header)
        tracks = self._restore_tracks(families, accepted, records, owns)
        self._restore_entities(groups, accepted, records, owns)
        for name in accepted[QUERY]:
            cursors[name] = float(header["queries"][name]["cursor"])

        written_at = header.get("written_at")
        # The file on disk is what a crash now would fall back to, whichever
        # process wrote it: its age is what the metric should show.
        self.status = dataclasses.replace(
            self.status,
            series_restored=tracks,
            last_success_timestamp_seconds=(
                float(written_at) if isinstance(written_at, int | float) else 0.0
            ),
        )
        log.info(
            "checkpoint restored path=%s series=%d written_at=%s",
            self.path,
            tracks,
            written_at,
        )
        return tracks

    def _accept(self, header: dict[str, Any]) -> None:
        accepted = self._accepted(header)
        saved = {
            kind: set(_section(header, key))
            for kind, key in ((QUERY, "queries"), (ENTITY, "entities"))
        }
        changed = sorted(
            name
            for kind, fingerprints in ((QUERY, self._queries), (ENTITY, self._entities))
            for name in saved[kind] & set(fingerprints)
            if name not in accepted[kind]
        )
        if not any(accepted.values()):
            if changed:
                raise statefile.StateFileError(
                    f"configuration changed for {', '.join(changed)}"
                )
            raise _NothingToRestore("none of the configured queries in it")
        if changed:
            log.warning(
                "checkpoint partly ignored path=%s changed=%s; those learn again",
                self.path,
                ",".join(changed),
            )

    def _accepted(self, header: dict[str, Any]) -> dict[str, set[str]]:
        """Names of the queries and entity groups whose settings are unchanged."""
        out: dict[str, set[str]] = {}
        for kind, key, fingerprints in (
            (QUERY, "queries", self._queries),
            (ENTITY, "entities", self._entities),
        ):
            section = _section(header, key)
            out[kind] = {
                name
                for name, saved in section.items()
                if isinstance(saved, dict)
                and saved.get("fingerprint") == fingerprints.get(name)
                and (kind == ENTITY or isinstance(saved.get("cursor"), int | float))
            }
        return out

    def _restore_tracks(
        self,
        families: Mapping[str, Family],
        accepted: dict[str, set[str]],
        records: list[object],
        owns: Callable[[Mapping[str, str]], bool],
    ) -> int:
        oldest = self._oldest()
        candidates = [
            (track.last_timestamp, name, key, track)
            for kind, name, key, track in _valid(records, QUERY, Track)
            if name in accepted[kind]
            and owns(dict(key))
            and track.last_timestamp >= oldest
        ]

        # The newest first, so that a lowered max_series keeps the live ones.
        candidates.sort(key=lambda c: c[0], reverse=True)
        kept = candidates[: self._config.max_series]
        for _, name, key, track in kept:
            families[name].tracks[key] = track
        if len(candidates) > len(kept):
            log.warning(
                "checkpoint over max_series=%d; restored the newest count=%d",
                self._config.max_series,
                len(kept),
            )
        return len(kept)

    def _restore_entities(
        self,
        groups: Sequence[EntityGroup],
        accepted: dict[str, set[str]],
        records: list[object],
        owns: Callable[[Mapping[str, str]], bool],
    ) -> None:
        by_name = {g.name: g for g in groups}
        oldest = self._oldest()
        for kind, name, key, entity in _valid(records, ENTITY, Entity):
            if (
                name in accepted[kind]
                and owns(entity.labels)
                and entity.last_timestamp >= oldest
            ):
                by_name[name].entities[key] = entity

    def _oldest(self) -> float:
        # A running detector forgets what has been silent for history_seconds
        # before its query's end; a series gone meanwhile is not brought back.
        config = self._config
        return self._clock() - config.query_delay_seconds - config.history_seconds

    def _failed(self, stage: str) -> None:
        errors = dict(self.status.errors)
        errors[stage] += 1
        self.status = dataclasses.replace(self.status, errors=errors)


# TODO: an ensemble series pickles to about 120 KB in about 0.5 ms (its
# calibrators each keep a reference window), so 10,000 of them write 1.2 GB
# and hold the loop for ~5 s; the write stays in the loop's thread because the
# models change every cycle. The fix is a compact per-family format (float32
# arrays in one npz) once the model classes stop changing; and any edit to a
# model module makes the next start learn again (detector.statefile), which
# a versioned state per class would avoid.
def _records(
    families: Mapping[str, Family], groups: Sequence[EntityGroup]
) -> Iterator[tuple[str, str, tuple, object]]:
    # One record per series keeps memory flat while writing: no second copy
    # of the whole state is built first.
    for name, family in families.items():
        for key, track in family.tracks.items():
            yield QUERY, name, key, track
    for group in groups:
        for entity_key, entity in group.entities.items():
            yield ENTITY, group.name, entity_key, entity


def _section(header: dict[str, Any], key: str) -> dict[str, Any]:
    section = header.get(key)
    return section if isinstance(section, dict) else {}


def _valid(
    records: list[object], kind: str, cls: type
) -> Iterator[tuple[str, str, tuple, Any]]:
    for record in records:
        if (
            isinstance(record, tuple)
            and len(record) == 4
            and record[0] == kind
            and isinstance(record[1], str)
            and isinstance(record[2], tuple)
            and isinstance(record[3], cls)
        ):
            yield record
