"""Grafana dashboards of the bundle as code, and the JSON and provisioning they
generate; needs grafana-foundation-sdk to build, nothing at Grafana's side."""
