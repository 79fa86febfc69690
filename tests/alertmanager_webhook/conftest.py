"""Shared fixtures: captured-shape Alertmanager payloads, a store, an app."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from aiops_common.config import from_mapping
from alertmanager_webhook.actions import ProcessInfo
from alertmanager_webhook.app import create_app
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.policy import Planner
from alertmanager_webhook.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "s3cret-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

POLICIES = [
    {
        "name": "cap-testcap",
        "match": {"alertname": "AiopsProcessCpuHog", "command": "aiops-testcap"},
        "action": "cpu_cap",
        "params": {"cpu_cores": 0.5},
    },
    {
        "name": "watch-only",
        "match": {"alertname": "AiopsProcessCpuHog"},
        "action": "none",
    },
]

# What psutil would report for the processes the fixture's alerts name.
FAKE_PROCESSES = (
    ProcessInfo(4211, "aiops-testcap", "root"),
    ProcessInfo(4212, "aiops-testcap", "root"),
    ProcessInfo(4213, "aiops-testcap", "nobody"),
    ProcessInfo(1, "systemd", "root"),
)


def load_payload(name: str) -> dict[str, Any]:
    """Return a fresh copy of a fixture payload, for tests that change it."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def make_config(**overrides: Any) -> WebhookConfig:
    raw: dict[str, Any] = {"bearer_token": TOKEN, "policies": POLICIES}
    raw.update(overrides)
    return from_mapping(WebhookConfig, raw)


@pytest.fixture
def firing() -> dict[str, Any]:
    return load_payload("alertmanager-0.25-firing")


@pytest.fixture
def resolved() -> dict[str, Any]:
    return load_payload("alertmanager-0.25-resolved")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(str(tmp_path / "webhook.db"))
    yield opened
    opened.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_client(
    store: Store, registry: CollectorRegistry
) -> Callable[..., FlaskClient]:
    def build(config: WebhookConfig | None = None) -> FlaskClient:
        config = config or make_config()
        planner = Planner(config.policies, config.mode, lambda: iter(FAKE_PROCESSES))
        app = create_app(config, store, token=TOKEN, planner=planner, registry=registry)
        return app.test_client()

    return build


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client()
