"""Right-sizing: recommended allocations learned from each series' own usage.

Runs inside the detector service on series it queried from Prometheus, and as
`aiops recommend-backtest` on recorded usage files.
"""
