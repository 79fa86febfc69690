"""The limits an action must pass before it changes a target.

The cooldown per target, the cap on changes in force and the blast radius,
read from the changes the database records (jobs.py) and from those under
way that it does not show yet (admissions.py). A dry run previews them: its
plans that apply would have run count as changes for the plans after them,
never for real changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from sqlite3 import Row

from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.policy_config import PolicyConfig


@dataclass(frozen=True)
class Held:
    """The limit that holds an action back, and why, in words for its record."""

    limit: str
    reason: str


class Limits:
    """Asks whether the cooldown, the cap or the blast radius holds an action back."""

    def __init__(
        self, config: WebhookConfig, jobs: Jobs, clock: Callable[[], float]
    ) -> None:
        self._config = config
        self._jobs = jobs
        self._clock = clock

    def holding(
        self,
        row: Row,
        policy: PolicyConfig,
        target: str,
        under_way: Sequence[str],
        preview: bool = False,
    ) -> Held | None:
        """The limit that holds the action back from `target`; None if none does.

        `under_way` are the targets of actions admitted that the database
        does not show yet. With `preview`, for a dry run, the plans that
        apply would have run count as changes too. The cap counts only the
        changes really in force: a plan never is, and whether apply's change
        would stay in force until its alert resolves depends on the undo that
        only applying returns.
        """
        now = self._clock()
        changed = "changed or planned in dry-run" if preview else "changed"
        last = self._jobs.last_change(row["action"], target, row["id"], preview)
        if last is not None and now - last < policy.cooldown_seconds:
            return Held(
                "cooldown",
                f"cooldown: {target} was {changed} {now - last:.0f}s ago, "
                f"cooldown {policy.cooldown_seconds:g}s",
            )

        active = self._jobs.in_force() + len(under_way)
        most_active = self._config.max_active_actions
        if active >= most_active:
            return Held("cap", f"cap: {active} changes in force, at most {most_active}")

        window = self._config.blast_radius_window_seconds
        most = self._config.blast_radius_targets
        since = now - window
        if self._jobs.changed_since(target, since, preview):
            return None  # a target changed already adds nothing to the radius
        others = set(under_way) - {target}
        # Those under way and not also changed earlier in the window.
        more = sum(1 for t in others if not self._jobs.changed_since(t, since, preview))
        if more >= most or self._jobs.targets_reach(since, most - more, preview):
            return Held(
                "blast_radius",
                f"blast radius: {most} targets {changed} in the last "
                f"{window:g}s, at most {most}",
            )
        return None
