"""Entities scored as a whole: the member series of one GPU or host, together.

Each cycle, the points of the member queries that share the group's `join`
labels and a timestamp form one vector per entity, every member in its own
robust units (its deviation from its model's expectation over its model's
scale, read back from the Score). The group's reconstruction model (PCA or an
autoencoder, detector.multivariate), trained on all its entities' recent
vectors, gives each vector an error; per entity, the error goes through the
same calibration, persistence and SPOT decision as a single series.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from detector.alarm import Alarm
from detector.calibration import TailSurprise
from detector.config import EntityConfig, ModelConfig
from detector.model import Score
from detector.multivariate import (
    ReconstructorError,
    load_reconstructor,
    make_reconstructor,
    reconstructor_file,
)
from detector.persistence import Persistence
from detector.spot import Spot
from detector.store import ModelStore
from detector.training import Schedule

log = logging.getLogger(__name__)

EntityKey = tuple[str, ...]

# Vectors kept per entity for the next fit, and drawn from all entities for
# one fit: enough to pin down a few principal axes or a small autoencoder.
HISTORY_VECTORS = 2000
TRAINING_VECTORS = 20_000


@dataclass
class Entity:
    """One entity's recent vectors, its calibration and its decision state."""

    labels: dict[str, str]
    calibrator: TailSurprise
    persistence: Persistence
    alarm: Alarm
    history: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    pending: dict[float, dict[str, float]] = field(default_factory=dict)
    last_timestamp: float = -np.inf
    latest: Score | None = None


@dataclass(frozen=True)
class EntityScores:
    labels: dict[str, str]
    timestamps: list[float]
    scores: list[Score]
    entity: Entity


class EntityGroup:
    """All entities of one configured group and their shared model."""

    def __init__(
        self,
        config: EntityConfig,
        model: ModelConfig,
        executor: Executor,
        store: ModelStore | None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.entities: dict[EntityKey, Entity] = {}
        self._model_config = model
        self._executor = executor
        self._store = store
        self._reconstructor = None
        self.schedule = Schedule(config.retrain_seconds)
        self._load()

    @property
    def members(self) -> tuple[str, ...]:
        return self.config.queries

    def collect(
        self,
        query: str,
        labels: Mapping[str, str],
        timestamps: Sequence[float],
        scores: Sequence[Score],
    ) -> None:
        """Remember a member series' new points in robust units."""
        if query not in self.members or any(j not in labels for j in self.config.join):
            return
        key = tuple(labels[j] for j in self.config.join)
        entity = self.entities.get(key) or self._new_entity(key)
        for t, score in zip(timestamps, scores, strict=True):
            units = _robust_units(score, self._model_config.threshold)
            if t > entity.last_timestamp and np.isfinite(units):
                entity.pending.setdefault(t, {})[query] = units

    def score(self) -> list[EntityScores]:
        """Score every complete vector gathered since the last call.

        A vector is complete when every member has a point at the same
        timestamp, which members queried on one step always do.
        """
        # TODO: members on different steps never share a timestamp and so are
        # never scored together; the fix is to align each member on the
        # coarsest member step (the last point at or before each grid time).
        out = []
        for entity in self.entities.values():
            complete = sorted(
                t
                for t, parts in entity.pending.items()
                if len(parts) == len(self.members)
            )
            if not complete:
                continue
            vectors = np.array(
                [[entity.pending[t][m] for m in self.members] for t in complete]
            )
            # Anything older than the newest complete vector will never complete.
            entity.pending = {
                t: p for t, p in entity.pending.items() if t > complete[-1]
            }
            kept = entity.history if entity.history.size else vectors[:0]
            entity.history = np.concatenate([kept, vectors])[-HISTORY_VECTORS:]
            entity.last_timestamp = complete[-1]

            model = self._reconstructor
            if model is None:
                continue
            scores = _decide(entity, model.errors(vectors), self.config.evidence_floor)
            out.append(EntityScores(entity.labels, complete, scores, entity))
        return out

    def maybe_retrain(self, now: float) -> None:
        if not self.schedule.due(now):
            return
        pooled = [e.history for e in self.entities.values() if e.history.size]
        total = sum(h.shape[0] for h in pooled)
        if total < self.config.min_points:
            return
        vectors = np.concatenate(pooled)
        if total > TRAINING_VECTORS:
            pick = np.random.default_rng(0).choice(
                total, TRAINING_VECTORS, replace=False
            )
            vectors = vectors[np.sort(pick)]
        method, dims, k = self.config.method, len(self.members), self.config.components

        def job() -> object:
            model = make_reconstructor(method, dims, k)
            model.fit(vectors)
            return model

        self.schedule.start(
            self._executor, now, job, lambda m: self._adopt(m, now), self.name
        )

    def forget(self, older_than: float) -> None:
        gone = [k for k, e in self.entities.items() if e.last_timestamp < older_than]
        for key in gone:
            del self.entities[key]

    def _adopt(self, model: object, trained_at: float) -> None:
        self._reconstructor = model
        if self._store is None:
            return
        filename = reconstructor_file(self.config.method)
        try:
            model.save(self._store.path(self.name, filename))  # type: ignore[attr-defined]
            self._store.write_meta(self.name, filename, {"trained_at": trained_at})
        except OSError as exc:
            log.warning("cannot save model entity=%s error=%s", self.name, exc)

    def _load(self) -> None:
        if self._store is None:
            return
        filename = reconstructor_file(self.config.method)
        path = self._store.path(self.name, filename)
        if not path.exists():
            return
        try:
            self._reconstructor = load_reconstructor(
                self.config.method, path, len(self.members), self.config.components
            )
        except ReconstructorError as exc:
            log.warning("ignoring saved model entity=%s error=%s", self.name, exc)
            return
        trained_at = (self._store.read_meta(self.name, filename) or {}).get(
            "trained_at"
        )
        if isinstance(trained_at, int | float):
            self.schedule = Schedule(self.config.retrain_seconds, float(trained_at))
        log.info("loaded model entity=%s method=%s", self.name, self.config.method)

    def _new_entity(self, key: EntityKey) -> Entity:
        e = self._model_config.ensemble
        entity = Entity(
            labels=dict(zip(self.config.join, key, strict=True)),
            calibrator=TailSurprise(
                e.reference_points, e.refit_points, 0.95, False, e.min_history
            ),
            persistence=Persistence(e.persistence_points, e.decay_per_point),
            alarm=Alarm(
                Spot(e.risk, e.spot_init_points, e.spot_level, max_shape=0.0),
                e.hysteresis,
                e.quiet_points,
                self.config.evidence_floor,
            ),
        )
        self.entities[key] = entity
        return entity


def _robust_units(score: Score, threshold: float) -> float:
    scale = (score.upper - score.lower) / (2.0 * threshold)
    if not np.isfinite(scale) or scale <= 0:
        return float("nan")
    return (score.value - score.expected) / scale


def _decide(entity: Entity, errors: np.ndarray, floor: float) -> list[Score]:
    # The band is what the entity's errors have been lately: their median as
    # the expectation, their largest as the upper edge.
    past = entity.calibrator.past
    typical = float(np.median(past)) if past.size else float("nan")
    highest = float(past.max()) if past.size else float("nan")
    surprise = entity.calibrator.update(errors)
    persisted = entity.persistence.update(surprise)
    decisions, limits = entity.alarm.update(persisted)
    half = floor
    return [
        Score(
            value=float(err),
            expected=typical,
            lower=0.0,
            upper=highest,
            z=float(p),
            score=float(p / (p + half)),
            decision=int(d) if np.isfinite(limit) else 0,
            warm=bool(np.isfinite(limit)),
        )
        for err, p, d, limit in zip(errors, persisted, decisions, limits, strict=True)
    ]
