"""GPU power limit through a fake NVML module shaped like pynvml."""

from __future__ import annotations

from types import SimpleNamespace

import pynvml
import pytest

from alertmanager_webhook.actuators.base import ActuatorError
from alertmanager_webhook.actuators.gpu import GpuPowerLimit
from alertmanager_webhook.policy_config import PolicyConfig

USED = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetPowerManagementLimitConstraints",
    "nvmlDeviceGetPowerManagementLimit",
    "nvmlDeviceSetPowerManagementLimit",
    "NVMLError",
)


class FakeNvmlError(Exception):
    pass


def fake_nvml(refuse_set: bool = False, no_driver: bool = False) -> SimpleNamespace:
    """An H200-like board: 200-700 W allowed, 700 W in force; milliwatts."""
    state = {"limit": 700_000, "calls": []}

    def init() -> None:
        if no_driver:
            raise FakeNvmlError("Driver Not Loaded")
        state["calls"].append("init")

    def set_limit(handle: str, milliwatts: int) -> None:
        if refuse_set:
            raise FakeNvmlError("Insufficient Permissions")
        state["calls"].append(("set", handle, milliwatts))
        state["limit"] = milliwatts

    return SimpleNamespace(
        state=state,
        NVMLError=FakeNvmlError,
        nvmlInit=init,
        nvmlShutdown=lambda: state["calls"].append("shutdown"),
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetHandleByUUID=lambda u: f"uuid:{u}",
        nvmlDeviceGetPowerManagementLimitConstraints=lambda h: [200_000, 700_000],
        nvmlDeviceGetPowerManagementLimit=lambda h: state["limit"],
        nvmlDeviceSetPowerManagementLimit=set_limit,
    )


def _policy(watts: float) -> PolicyConfig:
    return PolicyConfig(
        name="g",
        match={"a": "b"},
        action="gpu_power_limit",
        params={"power_watts": watts},
    )


def test_the_fake_uses_only_what_pynvml_offers() -> None:
    assert all(hasattr(pynvml, name) for name in USED)


@pytest.mark.parametrize(
    ("watts", "limit", "text"),
    [
        (
            450.0,
            450_000,
            "set GPU 0 power limit from 700 W to 450 W, allowed 200-700 W",
        ),
        (
            100.0,
            200_000,
            "set GPU 0 power limit from 700 W to 200 W (asked 100 W), "
            "allowed 200-700 W",
        ),
    ],
)
def test_plan_clamps_to_the_allowed_range(watts: float, limit: int, text: str) -> None:
    nvml = fake_nvml()
    gpu = GpuPowerLimit(lambda: nvml)

    plan = gpu.plan({"gpu": "0"}, _policy(watts), {"power_watts": watts})

    assert (plan.text, plan.spec["milliwatts"]) == (text, limit)
    assert nvml.state["limit"] == 700_000  # planning changes nothing
    assert nvml.state["calls"] == ["init", "shutdown"]


def test_apply_and_restore(tmp_path) -> None:
    nvml = fake_nvml()
    gpu = GpuPowerLimit(lambda: nvml)
    uuid = "GPU-3f2a9c1e-0000-4b6e-9d7a-1a2b3c4d5e6f"
    plan = gpu.plan({"gpu_uuid": uuid}, _policy(300.0), {"power_watts": 300.0})

    outcome = gpu.apply(plan.spec)
    assert nvml.state["limit"] == 300_000
    restored = gpu.restore(outcome.undo)

    assert outcome.text == "power limit 700 W -> 300 W"
    assert restored == "power limit back to 700 W"
    assert nvml.state["limit"] == 700_000
    assert ("set", f"uuid:{uuid}", 300_000) in nvml.state["calls"]


def test_refused_set_is_an_error_and_nvml_is_shut_down() -> None:
    nvml = fake_nvml(refuse_set=True)
    gpu = GpuPowerLimit(lambda: nvml)
    plan = gpu.plan({"gpu": "1"}, _policy(300.0), {"power_watts": 300.0})

    with pytest.raises(ActuatorError, match="Insufficient Permissions"):
        gpu.apply(plan.spec)
    assert nvml.state["calls"][-1] == "shutdown"


def test_no_driver_fails_the_plan() -> None:
    gpu = GpuPowerLimit(lambda: fake_nvml(no_driver=True))

    plan = gpu.plan({"gpu": "0"}, _policy(300.0), {"power_watts": 300.0})

    assert (plan.result, plan.text) == (
        "failed",
        "cannot read the power range: NVML unavailable: Driver Not Loaded",
    )


@pytest.mark.parametrize("labels", [{"gpu": "0; reboot"}, {"gpu_uuid": "../x"}, {}])
def test_bad_gpu_labels_are_refused(labels) -> None:
    nvml = fake_nvml()

    plan = GpuPowerLimit(lambda: nvml).plan(labels, _policy(300.0), {})

    assert plan.result == "refused"
    assert nvml.state["calls"] == []
