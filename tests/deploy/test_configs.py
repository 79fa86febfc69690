"""The deploy/ configs pass Prometheus' and Alertmanager's own checkers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RUNBOOK = DEPLOY.parent / "docs" / "runbook.md"


def run_tool(*argv: str, cwd: Path = DEPLOY) -> str:
    tool = shutil.which(argv[0])
    if tool is None:
        pytest.fail(f"{argv[0]} is not installed; `make test` installs it")
    result = subprocess.run(
        [tool, *argv[1:]], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_prometheus_config_and_rules_pass_promtool():
    out = run_tool("promtool", "check", "config", "prometheus.yml")

    assert "SUCCESS: 2 rules found" in out
    for path in sorted((DEPLOY / "rules").glob("*.yml")):
        assert f"rules/{path.name}" in out


@pytest.mark.parametrize(
    "test_file",
    sorted(p.name for p in (DEPLOY / "rules-tests").glob("*.test.yml")),
)
def test_alert_rules_pass_their_unit_tests(test_file):
    run_tool("promtool", "test", "rules", f"rules-tests/{test_file}")


def test_alertmanager_config_passes_amtool(tmp_path):
    shutil.copy(DEPLOY / "alertmanager.yml", tmp_path)
    (tmp_path / "webhook-token").write_text("secret")

    out = run_tool("amtool", "check-config", "alertmanager.yml", cwd=tmp_path)

    assert "1 receivers" in out
    assert "5 inhibit rules" in out


def test_amtool_rejects_a_broken_route(tmp_path):
    config = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())
    config["route"]["receiver"] = "nobody"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))

    result = subprocess.run(
        ["amtool", "check-config", "alertmanager.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr


def alert_rules():
    """Every alerting rule of deploy/rules/, in file order."""
    for path in sorted((DEPLOY / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from (rule for rule in group["rules"] if "alert" in rule)


def test_every_alert_has_its_runbook_section():
    runbook = RUNBOOK.read_text()
    sections = set(re.findall(r"^## (\w+)$", runbook, flags=re.M))
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
        assert rule["alert"] in sections, f"docs/runbook.md lacks ## {rule['alert']}"
        assert anchor == rule["alert"].lower()
        assert rule["annotations"]["runbook_url"].startswith("docs/runbook.md#")
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert "for" in rule
        # Each section says what fired and what to do.
        body = runbook.split(f"## {rule['alert']}\n", 1)[1].split("\n## ", 1)[0]
        assert "**What fired.**" in body and "**What to do.**" in body, rule["alert"]
