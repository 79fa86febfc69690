"""Writes the dashboards' JSON: `python -m grafana [--check]`."""

from grafana.render import main

raise SystemExit(main())
