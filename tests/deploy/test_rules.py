"""The rules of deploy/rules/ follow the house conventions, and each has its
promtool case: alerts before and after they fire, recording rules evaluated."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# level:metric:operations, each part a metric-name word.
RECORD_NAME = re.compile(r"[a-z_]+:[a-z][a-z0-9_]*:[a-z0-9_]+")
ALERT_NAME = re.compile(r"Aiops(?:[A-Z][a-z0-9]*)+")


def rules(kind: str) -> list[dict]:
    found = []
    for path in sorted((DEPLOY / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if kind in rule]
    return found


def rule_tests() -> list[dict]:
    tests = []
    for path in sorted((DEPLOY / "rules-tests").glob("*.test.yml")):
        tests += yaml.safe_load(path.read_text())["tests"]
    return tests


ALERTS = rules("alert")
RECORDS = rules("record")


def test_names_are_unique_and_follow_the_conventions():
    names = [rule["alert"] for rule in ALERTS] + [rule["record"] for rule in RECORDS]

    assert [n for n, c in Counter(names).items() if c > 1] == []
    for rule in ALERTS:
        assert ALERT_NAME.fullmatch(rule["alert"]), rule["alert"]
    for rule in RECORDS:
        assert RECORD_NAME.fullmatch(rule["record"]), rule["record"]
        assert set(rule) == {"record", "expr"}, rule["record"]


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule["alert"])
def test_alert_has_static_summary_and_templated_description(rule):
    annotations = rule["annotations"]

    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert "{{" not in annotations["summary"]
    assert "{{" in annotations["description"]
    assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule["alert"])
def test_alert_is_tested_before_and_after_it_fires(rule):
    cases = [
        case
        for test in rule_tests()
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == rule["alert"]
    ]

    assert any(not case.get("exp_alerts") for case in cases), "no case before"
    assert any(case.get("exp_alerts") for case in cases), "no case after"


@pytest.mark.parametrize("rule", RECORDS, ids=lambda rule: rule["record"])
def test_recording_rule_is_evaluated_by_a_test(rule):
    exprs = [
        case["expr"]
        for test in rule_tests()
        for case in test.get("promql_expr_test", [])
    ]

    assert exprs.count(rule["record"]) >= 2, "needs a case before and after"
