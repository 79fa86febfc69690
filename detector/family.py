"""The series of one query and the models they share; needs numpy, torch if used.

Every series has its own model (detector.factory). The query's forecaster,
when enabled, is shared: trained on windows from all its series on a schedule,
saved to the state directory, and run once per cycle over every series' new
points in one batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from detector.config import ModelConfig, QueryConfig
from detector.factory import SeriesModel, make_model, uses_forecaster
from detector.model import Score
from detector.store import ModelStore
from detector.training import Schedule

if TYPE_CHECKING:
    from detector.forecaster import Forecaster

log = logging.getLogger(__name__)

LabelKey = tuple[tuple[str, str], ...]

FORECASTER_FILE = "forecaster.pt"


@dataclass
class Track:
    """One source series: its model and how far it has been scored."""

    model: SeriesModel
    last_timestamp: float = -math.inf
    latest: Score | None = None


@dataclass
class Batch:
    """New points of one series, to be scored together with the others."""

    track: Track
    timestamps: np.ndarray
    values: np.ndarray
    scores: list[Score] = field(default_factory=list)


class Family:
    """Models for the series of one query."""

    def __init__(
        self,
        query: QueryConfig,
        model: ModelConfig,
        executor: Executor,
        store: ModelStore | None,
    ) -> None:
        self.name = query.name
        self.query = query
        self.model_config = model
        self.tracks: dict[LabelKey, Track] = {}
        self._executor = executor
        self._store = store
        self._forecaster: Forecaster | None = None
        self.schedule: Schedule | None = None
        if uses_forecaster(model):
            settings = model.ensemble.forecaster
            self.schedule = Schedule(settings.retrain_seconds)
            self._load_forecaster()

    @property
    def forecaster_ready(self) -> bool:
        return self._forecaster is not None

    def new_track(self, key: LabelKey) -> Track:
        track = Track(make_model(self.model_config, self.query.step_seconds))
        self.tracks[key] = track
        return track

    def score(self, batches: Sequence[Batch]) -> None:
        """Score every batch, forecasting all of them in one pass if trained."""
        forecasts = self._forecast(batches)
        for batch, forecast in zip(batches, forecasts, strict=True):
            batch.scores = batch.track.model.update(
                batch.values, batch.timestamps, forecast
            )

    def maybe_retrain(self, now: float) -> None:
        """Start a fit of the forecaster when one is due and data allow."""
        if self.schedule is None or not self.schedule.due(now):
            return
        settings = self.model_config.ensemble.forecaster
        histories = [t.model.history() for t in self.tracks.values()]
        if sum(h.size for h in histories) < settings.min_points:
            return

        # torch loads only for a query that has its forecaster enabled.
        from detector.forecaster import Forecaster

        def job() -> Forecaster:
            model = Forecaster(settings.context_points, settings.channels)
            model.fit(histories, settings.samples, settings.epochs)
            return model

        self.schedule.start(
            self._executor, now, job, lambda m: self._adopt(m, now), self.name
        )

    def _adopt(self, model: Forecaster, trained_at: float) -> None:
        # Rebinding is atomic: the loop sees either the old or the new model.
        self._forecaster = model
        if self._store is None:
            return
        try:
            model.save(self._store.path(self.name, FORECASTER_FILE))
            self._store.write_meta(
                self.name, FORECASTER_FILE, {"trained_at": trained_at}
            )
        except OSError as exc:
            log.warning("cannot save forecaster family=%s error=%s", self.name, exc)

    def _load_forecaster(self) -> None:
        if self._store is None or self.schedule is None:
            return
        path = self._store.path(self.name, FORECASTER_FILE)
        if not path.exists():
            return
        from detector.forecaster import Forecaster, ForecasterError

        settings = self.model_config.ensemble.forecaster
        try:
            self._forecaster = Forecaster.load(
                path, settings.context_points, settings.channels
            )
        except ForecasterError as exc:
            log.warning("ignoring saved forecaster family=%s error=%s", self.name, exc)
            return
        meta = self._store.read_meta(self.name, FORECASTER_FILE) or {}
        trained_at = meta.get("trained_at")
        if isinstance(trained_at, int | float):
            self.schedule = Schedule(self.schedule.every_seconds, float(trained_at))
        log.info("loaded forecaster family=%s", self.name)

    def _forecast(self, batches: Sequence[Batch]) -> list[np.ndarray | None]:
        model = self._forecaster
        if model is None:
            return [None] * len(batches)

        context = model.context
        rows: list[np.ndarray] = []
        spans: list[tuple[int, int, np.ndarray] | None] = []
        for batch in batches:
            data = np.concatenate([batch.track.model.recent(context), batch.values])
            # Point i of the batch is forecast from the `context` points before it.
            first = data.size - batch.values.size
            usable = first - context
            if data.size <= context:
                spans.append(None)
                continue
            windows = sliding_window_view(data[:-1], context)
            skip = max(0, -usable)
            start = len(rows)
            rows.extend(windows[max(0, usable) :])
            spans.append((start, len(rows), np.full(skip, np.nan)))

        predicted = model.predict(np.array(rows)) if rows else np.empty(0)
        out: list[np.ndarray | None] = []
        for span in spans:
            if span is None:
                out.append(None)
                continue
            start, stop, missing = span
            out.append(np.concatenate([missing, predicted[start:stop]]))
        return out
