"""What the optimizer tells the log about the series it is fed: readings in
another unit, readings cleaned, labels that do not tell series apart, series
over the cap. Each query returns the same odd series every cycle, so what is
no news after the first time is said at a lower level.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from aiops_common.once import Once
from detector.optimizer.config import SERVICE_RESOURCES
from detector.optimizer.readings import Readings
from detector.optimizer.resources import largest_reading
from detector.optimizer.snapshot import LabelPairs

log = logging.getLogger(__name__)


class InputWarnings:
    """Logs and counts what is odd in each resource's readings."""

    def __init__(self, resources: Sequence[str], max_series: int) -> None:
        self._max_series = max_series
        self._mismatches = dict.fromkeys(resources, 0)
        # Bounded as the series sized are: a whole exporter in another unit is
        # warned of series by series, no more than the cap would size.
        self._mismatched = {resource: Once(max_series) for resource in resources}
        self._cleaned: set[str] = set()
        self._collapsed: set[str] = set()

    @property
    def unit_mismatches(self) -> dict[str, int]:
        """Series skipped for their unit by resource, each cycle counted."""
        return dict(self._mismatches)

    def readings(self, resource: str, readings: Readings) -> None:
        """Warn of series in another unit, and tell of readings cleaned."""
        spec = SERVICE_RESOURCES[resource]
        for key, peak in readings.over_scale:
            self._mismatches[resource] += 1
            # The series comes again each cycle, still in its unit: news once.
            first = self._mismatched[resource].first(key)
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "unit mismatch resource=%s labels=%s max=%r largest=%r skipped=1",
                resource,
                dict(key),
                peak,
                largest_reading(spec.scale, spec.unit),
            )
        if readings.clipped or readings.dropped or readings.repeated:
            # Worth knowing once (an exporter or a query gives odd values);
            # every cycle after that it is no news.
            level = logging.DEBUG if resource in self._cleaned else logging.INFO
            self._cleaned.add(resource)
            log.log(
                level,
                "readings cleaned as the backtest loads them resource=%s "
                "negative_as_zero=%d non_finite_dropped=%d repeated_dropped=%d",
                resource,
                readings.clipped,
                readings.dropped,
                readings.repeated,
            )

    def collapsed(
        self,
        what: str,
        labels: tuple[str, ...],
        duplicates: list[LabelPairs],
        where: str,
    ) -> None:
        """Warn of series that `labels` do not tell apart; `where` is the
        setting that names the labels."""
        # The labels are the config's: said once, every cycle would repeat it.
        level = logging.DEBUG if what in self._collapsed else logging.WARNING
        self._collapsed.add(what)
        identities = len(set(duplicates))
        log.log(
            level,
            "series with the same labels, sized as one by the largest at each time "
            "%s labels=%s series=%d identities=%d; add a label that tells them "
            "apart to %s, or aggregate them in the query",
            what,
            ",".join(labels),
            len(duplicates) + identities,
            identities,
            where,
        )

    def refused(self, before: Mapping[str, int], after: Mapping[str, int]) -> None:
        """Warn of the series a cycle refused, from the counts before and after."""
        # One line a cycle for all resources: a low cap refuses many series.
        refused = {
            resource: count - before[resource]
            for resource, count in after.items()
            if count > before[resource]
        }
        if not refused:
            return
        log.warning(
            "series not sized, over the cap max_series=%d %s; "
            "raise optimizer.max_series to size them",
            self._max_series,
            " ".join(f"{resource}={count}" for resource, count in refused.items()),
        )
