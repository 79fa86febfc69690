"""Every PromQL expression the diagnosis runs, built in one place with label
values escaped."""

from __future__ import annotations

from collections.abc import Mapping


def quote(value: str) -> str:
    """A PromQL string literal for `value`: backslash and quote escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def selector(metric: str, matchers: Mapping[str, str]) -> str:
    """`metric{k="v",...}` with equality matchers in key order."""
    inner = ",".join(f"{k}={quote(v)}" for k, v in sorted(matchers.items()))
    return f"{metric}{{{inner}}}"


def candidates(metric: str, matchers: Mapping[str, str]) -> str:
    """The candidate series of one incident: `metric` on the anomaly's host."""
    # The "(other)" bucket sums the groups past the exporter's top N: it is not
    # one cause and is never ranked.
    inner = ",".join(
        [f"{k}={quote(v)}" for k, v in sorted(matchers.items())]
        + [f"command!={quote('(other)')}"]
    )
    return f"{metric}{{{inner}}}"


def xid_increase(window_seconds: float) -> str:
    # Same shape as the gpu_xid recording rule: a series born inside the window
    # counts whole, an older one by its increase.
    sel = "aiops_gpu_xid_errors_total"
    window = f"{int(window_seconds)}s"
    return f"({sel} unless {sel} offset {window}) or increase({sel}[{window}])"


def xid_resets(lookback_seconds: float) -> str:
    # The exporter's Xid counters start again at 0 when it restarts, which on a
    # GPU node is mostly a reboot: a reset within the lookback marks a remedy.
    return f"resets(aiops_gpu_xid_errors_total[{int(lookback_seconds)}s])"


def over_window(function: str, metric: str, window_seconds: float) -> str:
    """`function(metric[window])`, e.g. the lowest SM share over an hour."""
    return f"{function}({metric}[{int(window_seconds)}s])"


def gpu_users(lookback_seconds: float | None = None, skip_seconds: float = 0) -> str:
    """GPUs held per host and user, now or at any time over a past lookback.

    The lookback ends `skip_seconds` ago, so that a user who arrived just now
    is not part of the history that should tell whether they are new.
    """
    per_gpu = "count by (instance, user, gpu) (aiops_gpu_processes > 0)"
    now = f"count by (instance, user) ({per_gpu})"
    if lookback_seconds is None:
        return now
    # A subquery at a 5-minute resolution: enough to see a user, cheap over days.
    return (
        f"max_over_time(({now})[{int(lookback_seconds)}s:5m]"
        f" offset {int(skip_seconds)}s)"
    )


def auth_failures(window_seconds: float) -> str:
    # The receiver counts refused requests; an exporter that counts them under
    # aiops_exporter_auth_failures_total is read the same way.
    window = f"{int(window_seconds)}s"
    return (
        f"increase(aiops_webhook_auth_failures_total[{window}])"
        f" or increase(aiops_exporter_auth_failures_total[{window}])"
    )
