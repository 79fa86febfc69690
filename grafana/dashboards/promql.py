"""Builds the dashboards' PromQL selectors in one place, with the template
variables and escaped label values."""

from __future__ import annotations

# Template variables every dashboard may use in a selector. All are multi-value
# with an "All" of ".*", so they are always matched with =~.
VARIABLES = ("instance", "gpu", "query")

# Grafana's own interval variables; the panel test substitutes them.
RATE_INTERVAL = "$__rate_interval"
RANGE = "$__range"


def quote(value: str) -> str:
    """A PromQL string literal holding `value`."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def sel(metric: str, *variables: str, **matchers: str) -> str:
    """`metric{var=~"$var", ..., label="value", ...}`.

    A matcher value starting with `~` or `!~` or `!` is a regex or negated
    match: sel("up", job="~aiops-.*") gives `up{job=~"aiops-.*"}`.
    """
    parts = []
    for name in variables:
        if name not in VARIABLES:
            raise ValueError(f"unknown template variable {name!r}")
        parts.append(f'{name}=~"${name}"')
    for label, value in matchers.items():
        op = "="
        for prefix in ("!~", "~", "!"):
            if value.startswith(prefix):
                op = {"!~": "!~", "~": "=~", "!": "!="}[prefix]
                value = value[len(prefix) :]
                break
        parts.append(f"{label}{op}{quote(value)}")
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric


def rate(selector: str, window: str = RATE_INTERVAL) -> str:
    return f"rate({selector}[{window}])"


def increase(selector: str, window: str = RATE_INTERVAL) -> str:
    return f"increase({selector}[{window}])"


def quantile(
    q: float, histogram: str, by: tuple[str, ...] = (), **matchers: str
) -> str:
    """The q-quantile of histogram `histogram` (its base name), kept apart by `by`."""
    buckets = sel(f"{histogram}_bucket", **matchers)
    labels = ", ".join(("le", *by))
    return f"histogram_quantile({q:g}, sum by ({labels}) ({rate(buckets)}))"
