"""The diagnosis settings: one frozen dataclass, nested in the detector's config
under the `diagnosis` key."""

from __future__ import annotations

from dataclasses import dataclass

from aiops_common.config import check

# Process names of common GPU and CPU miners; matched against the exporter's
# `command` label (the /proc comm, at most 15 characters), case-insensitive.
DEFAULT_MINER_NAMES = (
    "xmrig",
    "t-rex",
    "trex",
    "phoenixminer",
    "nbminer",
    "lolminer",
    "gminer",
    "teamredminer",
    "ethminer",
    "nanominer",
    "bzminer",
    "cgminer",
    "bfgminer",
    "srbminer",
    "claymore",
)


@dataclass(frozen=True)
class DiagnosisConfig:
    """What to rank, over which windows, and what counts as allowed on a GPU."""

    enabled: bool = True
    # The anomaly window ends at the anomalous point and reaches this far back;
    # the baseline is the span of this length before it.
    window_seconds: float = 900.0
    baseline_seconds: float = 3600.0
    step_seconds: float = 60.0
    # Causes exported per incident, and incidents diagnosed per cycle.
    top_causes: int = 3
    max_incidents: int = 20
    # A cause must explain this share of the host's change and stand this many
    # robust deviations off its own baseline; weaker movers are not causes.
    min_share: float = 0.05
    min_surprise: float = 3.0
    # Security: who may run on a GPU. Empty lists turn the check off.
    allowed_gpu_users: tuple[str, ...] = ()
    allowed_gpu_containers: tuple[str, ...] = ()
    miner_names: tuple[str, ...] = DEFAULT_MINER_NAMES
    # Mining-like: at least this SM share with at most this much GPU memory,
    # for the whole mining window.
    mining_min_sm_ratio: float = 0.9
    mining_max_memory_bytes: float = 1.0 * 2**30
    mining_window_seconds: float = 1800.0
    # A user is new on a host's GPUs when absent for this long before.
    new_user_lookback_seconds: float = 7 * 86400.0
    auth_window_seconds: float = 600.0
    # Xid history looked at for repeats after a remedy.
    xid_lookback_seconds: float = 86400.0

    def __post_init__(self) -> None:
        for key in (
            "window_seconds",
            "baseline_seconds",
            "step_seconds",
            "mining_window_seconds",
            "new_user_lookback_seconds",
            "auth_window_seconds",
            "xid_lookback_seconds",
        ):
            value = getattr(self, key)
            check(value > 0, key, f"must be > 0, got {value!r}")
        check(
            1 <= self.top_causes <= 10,
            "top_causes",
            f"must be 1 to 10, got {self.top_causes!r}",
        )
        check(
            self.max_incidents >= 1,
            "max_incidents",
            f"must be >= 1, got {self.max_incidents!r}",
        )
        check(
            0 <= self.min_share <= 1,
            "min_share",
            f"must be 0 to 1, got {self.min_share!r}",
        )
        check(
            0 < self.mining_min_sm_ratio <= 1,
            "mining_min_sm_ratio",
            f"must be in (0, 1], got {self.mining_min_sm_ratio!r}",
        )
