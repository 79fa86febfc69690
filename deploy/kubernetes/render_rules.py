"""Writes prometheusrule.yml beside this file: the rule groups of deploy/rules/
as one PrometheusRule for the Prometheus Operator. Needs PyYAML.

    python deploy/kubernetes/render_rules.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "rules"
OUT = HERE / "prometheusrule.yml"

HEADER = """\
# Generated from deploy/rules/*.yml by deploy/kubernetes/render_rules.py; edit
# those files and run it again. The Prometheus Operator picks this up when its
# Prometheus' ruleSelector matches these labels (kube-prometheus-stack's
# default selects release=<its release name>: add that label if so).
"""


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL) as literal blocks, as they were."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def prometheus_rule(rules_dir: Path = RULES) -> dict[str, Any]:
    """The PrometheusRule holding every group of `rules_dir`, in file order."""
    groups = []
    for path in sorted(rules_dir.glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "prom-aiops",
            "namespace": "aiops",
            "labels": {"app.kubernetes.io/part-of": "prom-aiops"},
        },
        "spec": {"groups": groups},
    }


def render(rules_dir: Path = RULES) -> str:
    body = yaml.dump(
        prometheus_rule(rules_dir), Dumper=_Dumper, sort_keys=False, width=100
    )
    return HEADER + body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the file is out of date"
    )
    args = parser.parse_args(argv)

    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(
                f"{OUT.name} is out of date; run {Path(__file__).name}", file=sys.stderr
            )
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
