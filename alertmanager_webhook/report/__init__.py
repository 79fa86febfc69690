"""Fault reports per incident (one notification of an alert group): a plot of
the anomaly and its band, the timeline, ranked causes, diagnosis and actions."""
