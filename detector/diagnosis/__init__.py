"""Diagnosis: which process, container or GPU is behind an anomaly, what kind of
fault it is, security findings, and the collector that exports them."""
