"""Alertmanager webhook receiver: stores notifications and plans remediations."""
