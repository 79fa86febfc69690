"""GpuReader and the GPU families through the fake NVML and its H100 and H200
fixtures: every field, unsupported fields absent, fans, MIG, no driver, lost
GPUs, GPUs needing a reset, a GPU hung in a call, failing calls and the expected
GPU count."""

from __future__ import annotations

import logging
import threading

import pynvml
import pytest

from exporter.gpu import GpuReader
from exporter.gpu_metrics import gpu_families
from exporter.nvml_session import NvmlCallError, NvmlSession
from tests.exporter.exposition import names, series, value
from tests.exporter.fake_nvml import H100, H200, FakeNvml, load_fixture

H100_UUID = "GPU-3b4c6a9e-5f21-8d07-c2e4-71a0f9d3b600"
GPU0 = {"gpu": "0", "uuid": H100_UUID}
WAIT = 10.0

EVERY_H100_SERIES = {
    "aiops_nvml_available",
    "aiops_gpu_devices",
    "aiops_gpu_info",
    "aiops_gpu_health_state",
    "aiops_gpu_nvml_errors_total",
    "aiops_gpu_utilization_ratio",
    "aiops_gpu_memory_utilization_ratio",
    "aiops_gpu_memory_used_bytes",
    "aiops_gpu_memory_free_bytes",
    "aiops_gpu_memory_total_bytes",
    "aiops_gpu_temperature_celsius",
    "aiops_gpu_memory_temperature_celsius",
    "aiops_gpu_power_watts",
    "aiops_gpu_power_limit_watts",
    "aiops_gpu_power_limit_min_watts",
    "aiops_gpu_power_limit_max_watts",
    "aiops_gpu_energy_joules_total",
    "aiops_gpu_sm_clock_hertz",
    "aiops_gpu_memory_clock_hertz",
    "aiops_gpu_pcie_transmit_bytes_per_second",
    "aiops_gpu_pcie_receive_bytes_per_second",
    "aiops_gpu_pcie_replays_total",
    "aiops_gpu_pcie_link_generation",
    "aiops_gpu_pcie_link_width",
    "aiops_gpu_nvlink_transmit_bytes_total",
    "aiops_gpu_nvlink_receive_bytes_total",
    "aiops_gpu_nvlink_errors_total",
    "aiops_gpu_ecc_corrected_errors_total",
    "aiops_gpu_ecc_uncorrected_errors_total",
    "aiops_gpu_remapped_rows",
    "aiops_gpu_remapped_rows_pending",
    "aiops_gpu_remapped_rows_failed",
    "aiops_gpu_performance_state",
    "aiops_gpu_persistence_mode_enabled",
    "aiops_gpu_mig_mode_enabled",
    "aiops_gpu_clock_event_reason_active",
}


def reader_for(nvml, expected=None):
    return GpuReader(NvmlSession(lambda: nvml), expected_count=expected)


def scrape_gpus(nvml, expected=None):
    return series(gpu_families(reader_for(nvml, expected).read()))


def test_h100_reports_every_field_in_base_units():
    parsed = scrape_gpus(FakeNvml(load_fixture(H100), count=2))

    assert names(parsed) == EVERY_H100_SERIES
    info = {
        **GPU0,
        "name": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": "00000000:18:00.0",
        "driver_version": "550.54.15",
        "cuda_version": "12.4",
        "serial": "1654922000100",
    }
    assert value(parsed, "aiops_gpu_info", **info) == 1
    assert value(parsed, "aiops_gpu_memory_total_bytes", **GPU0) == 85520809984
    assert value(parsed, "aiops_gpu_memory_free_bytes", **GPU0) == 84954578944
    # NVML reports milliwatts, millijoules and megahertz.
    assert value(parsed, "aiops_gpu_power_watts", **GPU0) == pytest.approx(69.876)
    assert value(parsed, "aiops_gpu_power_limit_watts", **GPU0) == 700
    assert value(parsed, "aiops_gpu_power_limit_min_watts", **GPU0) == 200
    assert value(parsed, "aiops_gpu_power_limit_max_watts", **GPU0) == 700
    assert value(parsed, "aiops_gpu_energy_joules_total", **GPU0) == pytest.approx(
        1843027615.042
    )
    assert value(parsed, "aiops_gpu_memory_clock_hertz", **GPU0) == 2619e6
    assert value(parsed, "aiops_gpu_memory_temperature_celsius", **GPU0) == 31
    assert value(parsed, "aiops_gpu_pcie_link_width", **GPU0) == 16
    assert (
        value(parsed, "aiops_gpu_clock_event_reason_active", **GPU0, reason="gpu_idle")
        == 1
    )
    assert (
        value(parsed, "aiops_gpu_health_state", **GPU0, state="healthy"),
        value(parsed, "aiops_gpu_health_state", **GPU0, state="lost"),
    ) == (1, 0)
    # Only identity labels on every per-GPU series but the labelled families.
    for name, labels in parsed:
        keys = {k for k, _ in labels}
        if name.startswith("aiops_gpu_") and keys - {"gpu", "uuid"}:
            assert name in {
                "aiops_gpu_info",
                "aiops_gpu_health_state",
                "aiops_gpu_clock_event_reason_active",
                "aiops_gpu_nvlink_errors_total",
                "aiops_gpu_remapped_rows",
            }


def test_unsupported_fields_are_absent_never_zero():
    parsed = scrape_gpus(FakeNvml(load_fixture(H100), count=1))

    # An SXM H100 has no fan, retires no pages (it remaps rows), has no display
    # clock reason, and driver 550 has no recovery action field.
    absent = {
        "aiops_gpu_fan_speed_ratio",
        "aiops_gpu_retired_pages",
        "aiops_gpu_retired_pages_pending",
        "aiops_gpu_recovery_action",
        "aiops_gpu_mig_instance_info",
    }
    assert not absent & names(parsed)
    reasons = {
        dict(labels)["reason"]
        for name, labels in parsed
        if name == "aiops_gpu_clock_event_reason_active"
    }
    assert "display_clock_setting" not in reasons


def test_h200_in_mig_mode_reports_instances_and_no_whole_gpu_utilization():
    parsed = scrape_gpus(FakeNvml(load_fixture(H200), count=1))

    gpu0 = {"gpu": "0", "uuid": "GPU-9c2e1f4a-7b3d-4e58-a6c1-02d8e5f7b900"}
    assert value(parsed, "aiops_gpu_mig_mode_enabled", **gpu0) == 1
    assert "aiops_gpu_utilization_ratio" not in names(parsed)
    instance = {**gpu0, "gpu_instance": "1", "compute_instance": "0"}
    assert value(
        parsed,
        "aiops_gpu_mig_instance_info",
        **instance,
        mig_uuid="MIG-5a0c3e7d-1b24-5f69-8d3a-6e2f40b1c711",
    )
    assert (
        value(parsed, "aiops_gpu_mig_instance_memory_used_bytes", **instance)
        == 36507222016
    )
    assert value(parsed, "aiops_gpu_recovery_action", **gpu0, action="none") == 1
    assert (
        value(parsed, "aiops_gpu_nvlink_transmit_bytes_total", **gpu0) == 7340032 * 1024
    )


def test_missing_library_exports_unavailable_and_warns_once(caplog):
    nvml = FakeNvml(load_fixture(H100), missing=True)
    reader = reader_for(nvml)

    with caplog.at_level(logging.WARNING):
        first = series(gpu_families(reader.read()))
        second = series(gpu_families(reader.read()))

    assert first == second == {("aiops_nvml_available", frozenset()): 0}
    assert nvml.init_calls == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "NVML Shared Library Not Found" in warnings[0].getMessage()
    assert "install the NVIDIA driver" in warnings[0].getMessage()


def test_pynvml_not_installed_is_unavailable_but_expectation_stays():
    def load():
        raise ImportError("No module named 'pynvml'")

    parsed = series(gpu_families(GpuReader(NvmlSession(load), 8).read()))

    assert parsed == {
        ("aiops_nvml_available", frozenset()): 0,
        ("aiops_gpu_devices_expected", frozenset()): 8,
    }


def test_driver_loaded_later_is_picked_up():
    nvml = FakeNvml(load_fixture(H100), count=1, missing=True)
    reader = reader_for(nvml)
    assert not reader.read().available

    nvml.missing = False
    sample = reader.read()

    assert sample.available
    assert [gpu.name for gpu in sample.gpus] == ["NVIDIA H100 80GB HBM3"]


def test_field_made_unsupported_disappears():
    nvml = FakeNvml(
        load_fixture(H100),
        count=2,
        errors={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED},
    )

    parsed = scrape_gpus(nvml)

    assert "aiops_gpu_power_watts" not in names(parsed)
    assert value(parsed, "aiops_gpu_power_limit_watts", **GPU0) == 700


def test_power_limit_range_unsupported_is_absent_and_not_an_error():
    nvml = FakeNvml(
        load_fixture(H100),
        count=1,
        errors={
            "nvmlDeviceGetPowerManagementLimitConstraints": (
                pynvml.NVML_ERROR_NOT_SUPPORTED
            )
        },
    )

    parsed = scrape_gpus(nvml)

    assert not {
        "aiops_gpu_power_limit_min_watts",
        "aiops_gpu_power_limit_max_watts",
    } & names(parsed)
    assert value(parsed, "aiops_gpu_power_limit_watts", **GPU0) == 700
    assert value(parsed, "aiops_gpu_nvml_errors_total", **GPU0) == 0


def test_lost_gpu_is_unhealthy_while_the_others_report(caplog):
    nvml = FakeNvml(load_fixture(H100), count=3)
    reader = reader_for(nvml)
    reader.read()
    lost_uuid = H100_UUID[:-2] + "01"

    nvml.lost = {1}
    with caplog.at_level(logging.WARNING):
        reader.read()
        sample = reader.read()

    assert [gpu.index for gpu in sample.gpus] == [0, 2]
    assert sample.lost == (1,)
    parsed = series(gpu_families(sample))
    lost = {"gpu": "1", "uuid": lost_uuid}
    assert value(parsed, "aiops_gpu_health_state", **lost, state="lost") == 1
    assert value(parsed, "aiops_gpu_health_state", **lost, state="healthy") == 0
    assert value(parsed, "aiops_gpu_temperature_celsius", **lost) is None
    assert value(parsed, "aiops_gpu_devices") == 3
    other = {"gpu": "2", "uuid": H100_UUID[:-2] + "02"}
    assert value(parsed, "aiops_gpu_temperature_celsius", **other) == 34
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "GPU not answering" in m]) == 1


def test_gpu_needing_a_reset_and_recovering():
    nvml = FakeNvml(load_fixture(H100), count=2, reset_required={0})
    reader = reader_for(nvml, expected=2)

    parsed = series(gpu_families(reader.read()))
    # Never seen healthy, so its uuid is not known.
    assert value(
        parsed, "aiops_gpu_health_state", gpu="0", uuid="", state="reset_required"
    )
    assert value(parsed, "aiops_gpu_devices_expected") == 2

    nvml.reset_required = set()
    parsed = series(gpu_families(reader.read()))
    assert value(parsed, "aiops_gpu_health_state", **GPU0, state="healthy") == 1


def test_unexpected_error_leaves_the_field_out_and_counts(caplog):
    nvml = FakeNvml(
        load_fixture(H100),
        count=2,
        errors={("nvmlDeviceGetTemperature", 1): pynvml.NVML_ERROR_UNKNOWN},
    )
    reader = reader_for(nvml)

    with caplog.at_level(logging.WARNING):
        reader.read()
        parsed = series(gpu_families(reader.read()))

    gpu1 = {"gpu": "1", "uuid": H100_UUID[:-2] + "01"}
    assert value(parsed, "aiops_gpu_temperature_celsius", **gpu1) is None
    assert value(parsed, "aiops_gpu_power_watts", **gpu1) == pytest.approx(69.876)
    assert value(parsed, "aiops_gpu_nvml_errors_total", **gpu1) == 2
    assert value(parsed, "aiops_gpu_nvml_errors_total", **GPU0) == 0
    failed = [r for r in caplog.records if "NVML call failed" in r.getMessage()]
    assert len(failed) == 1


def test_timeout_from_nvml_is_an_error_not_a_hang():
    nvml = FakeNvml(
        load_fixture(H100),
        count=1,
        errors={"nvmlDeviceGetFieldValues": pynvml.NVML_ERROR_TIMEOUT},
    )

    parsed = scrape_gpus(nvml)

    assert "aiops_gpu_memory_temperature_celsius" not in names(parsed)
    assert value(parsed, "aiops_gpu_nvml_errors_total", **GPU0) == 1


def test_one_lost_field_marks_the_gpu_lost():
    fixture = load_fixture(H100)
    fixture["fields"]["82"] = {"error": "NVML_ERROR_GPU_IS_LOST"}

    sample = reader_for(FakeNvml(fixture, count=1)).read()

    assert sample.lost == (0,)


def test_close_shuts_nvml_down_once():
    nvml = FakeNvml(load_fixture(H100), count=1)
    reader = reader_for(nvml)
    reader.read()

    reader.close()
    reader.close()

    assert not nvml.initialized


def hung_reads(gpu):
    return [t for t in threading.enumerate() if t.name == f"aiops-gpu-gpu{gpu}"]


def test_a_gpu_hung_in_nvml_is_not_responding_while_the_others_stay_fresh(caplog):
    release = threading.Event()
    nvml = FakeNvml(load_fixture(H100), count=3)
    reader = GpuReader(NvmlSession(lambda: nvml), timeout_seconds=0.5)
    reader.read()
    hung = {"gpu": "1", "uuid": H100_UUID[:-2] + "01"}

    nvml.hang[("nvmlDeviceGetPowerUsage", 1)] = release
    nvml.set(0, "nvmlDeviceGetPowerUsage()", 250_000)
    try:
        with caplog.at_level(logging.WARNING):
            first = series(gpu_families(reader.read()))
            second = series(gpu_families(reader.read()))
        # Still hung on the second cycle: no second thread piles up behind it.
        assert len(hung_reads(1)) == 1
    finally:
        release.set()
    assert reader.join(WAIT)

    for parsed in (first, second):
        assert value(parsed, "aiops_gpu_power_watts", **GPU0) == 250
        assert value(parsed, "aiops_gpu_health_state", **hung, state="not_responding")
        assert value(parsed, "aiops_gpu_health_state", **hung, state="healthy") == 0
        # Its last values are dropped, not served as if current.
        assert value(parsed, "aiops_gpu_temperature_celsius", **hung) is None
        assert ("gpu", "1") not in {
            label
            for name, labels in parsed
            if name == "aiops_gpu_info"
            for label in labels
        }
        other = {"gpu": "2", "uuid": H100_UUID[:-2] + "02"}
        assert value(parsed, "aiops_gpu_temperature_celsius", **other) == 34
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "GPU call hung" in m]) == 1

    with caplog.at_level(logging.INFO):
        parsed = series(gpu_families(reader.read()))
    assert value(parsed, "aiops_gpu_health_state", **hung, state="healthy") == 1
    assert value(parsed, "aiops_gpu_power_watts", **hung) == pytest.approx(69.876)
    assert "GPU answers again gpu=1" in caplog.text


def test_a_failed_handle_lookup_still_fails_the_read():
    nvml = FakeNvml(
        load_fixture(H100),
        count=2,
        errors={("nvmlDeviceGetHandleByIndex", 1): pynvml.NVML_ERROR_UNKNOWN},
    )

    with pytest.raises(NvmlCallError, match="nvmlDeviceGetHandleByIndex"):
        reader_for(nvml).read()


def test_every_fan_is_read_and_an_unsupported_one_is_absent():
    nvml = FakeNvml(load_fixture(H100), count=2)
    nvml.set(0, "nvmlDeviceGetNumFans()", 3)
    nvml.set(0, "nvmlDeviceGetFanSpeed_v2(0)", 45)
    nvml.set(0, "nvmlDeviceGetFanSpeed_v2(1)", 60)
    nvml.devices[0]["device"]["nvmlDeviceGetFanSpeed_v2(2)"] = {
        "error": "NVML_ERROR_NOT_SUPPORTED"
    }

    parsed = scrape_gpus(nvml)

    fans = {
        dict(labels)["fan"]: speed
        for (name, labels), speed in parsed.items()
        if name == "aiops_gpu_fan_speed_ratio"
    }
    assert fans == {"0": pytest.approx(0.45), "1": pytest.approx(0.6)}
    assert value(parsed, "aiops_gpu_fan_speed_ratio", **GPU0, fan="1") == 0.6


def test_a_driver_without_fan_count_reports_its_first_fan():
    nvml = FakeNvml(
        load_fixture(H100),
        count=1,
        errors={"nvmlDeviceGetNumFans": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND},
    )
    nvml.set(0, "nvmlDeviceGetFanSpeed()", 30)

    parsed = scrape_gpus(nvml)

    assert value(parsed, "aiops_gpu_fan_speed_ratio", **GPU0, fan="0") == 0.3
    assert value(parsed, "aiops_gpu_nvml_errors_total", **GPU0) == 0
