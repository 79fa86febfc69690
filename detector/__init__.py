"""The anomaly detector: reads series from Prometheus, scores them, exports scores."""
