"""GpuReader and the GPU families through a fake NVML: a healthy host, no driver,
an unsupported field, a lost GPU and an unexpected NVML error."""

from __future__ import annotations

import logging

import pynvml
import pytest

from exporter.gpu import GpuReader
from exporter.metrics import gpu_families
from tests.exporter.exposition import names, series, value
from tests.exporter.fake_nvml import DRIVER_VERSION, H100, FakeNvml, h100_host

GPU_GAUGES = {
    "aiops_gpu_utilization_ratio",
    "aiops_gpu_memory_utilization_ratio",
    "aiops_gpu_memory_used_bytes",
    "aiops_gpu_memory_total_bytes",
    "aiops_gpu_temperature_celsius",
    "aiops_gpu_power_watts",
    "aiops_gpu_power_limit_watts",
}


def scrape_gpus(nvml):
    reader = GpuReader(lambda: nvml)
    return series(gpu_families(reader.read()))


def test_h100_host_reports_every_field():
    fixture = h100_host(2)

    parsed = scrape_gpus(FakeNvml(fixture))

    first, second = fixture["gpus"]
    gpu0 = {"gpu": "0", "uuid": first["uuid"]}
    assert value(parsed, "aiops_nvml_available") == 1
    assert (
        value(
            parsed,
            "aiops_gpu_info",
            **gpu0,
            name="NVIDIA H100 80GB HBM3",
            pci_bus_id="00000000:18:00.0",
            driver_version=DRIVER_VERSION,
        )
        == 1
    )
    assert value(parsed, "aiops_gpu_memory_total_bytes", **gpu0) == 85520809984
    assert value(parsed, "aiops_gpu_memory_used_bytes", **gpu0) == H100["memory_used"]
    assert value(parsed, "aiops_gpu_temperature_celsius", **gpu0) == 34
    assert value(parsed, "aiops_gpu_utilization_ratio", **gpu0) == 0
    assert value(parsed, "aiops_gpu_memory_utilization_ratio", **gpu0) == 0
    # NVML reports milliwatts.
    assert value(parsed, "aiops_gpu_power_watts", **gpu0) == pytest.approx(69.876)
    assert value(parsed, "aiops_gpu_power_limit_watts", **gpu0) == 700

    gpu1 = {"gpu": "1", "uuid": second["uuid"]}
    assert value(parsed, "aiops_gpu_utilization_ratio", **gpu1) == pytest.approx(0.87)
    assert value(parsed, "aiops_gpu_temperature_celsius", **gpu1) == 51
    assert names(parsed) == GPU_GAUGES | {"aiops_gpu_info", "aiops_nvml_available"}


def test_missing_library_exports_unavailable_and_warns_once(caplog):
    nvml = FakeNvml(h100_host(), missing=True)
    reader = GpuReader(lambda: nvml)

    with caplog.at_level(logging.WARNING, logger="exporter.gpu"):
        first = series(gpu_families(reader.read()))
        second = series(gpu_families(reader.read()))

    assert first == second == {("aiops_nvml_available", frozenset()): 0}
    assert nvml.init_calls == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "NVML Shared Library Not Found" in warnings[0].getMessage()
    assert "install the NVIDIA driver" in warnings[0].getMessage()


def test_pynvml_not_installed_is_unavailable():
    def load():
        raise ImportError("No module named 'pynvml'")

    parsed = series(gpu_families(GpuReader(load).read()))

    assert parsed == {("aiops_nvml_available", frozenset()): 0}


def test_driver_loaded_later_is_picked_up():
    nvml = FakeNvml(h100_host(1), missing=True)
    reader = GpuReader(lambda: nvml)
    assert not reader.read().available

    nvml.missing = False
    sample = reader.read()

    assert sample.available
    assert [gpu.name for gpu in sample.gpus] == ["NVIDIA H100 80GB HBM3"]


def test_unsupported_field_is_absent_not_zero():
    nvml = FakeNvml(
        h100_host(2),
        errors={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED},
    )

    parsed = scrape_gpus(nvml)

    assert "aiops_gpu_power_watts" not in names(parsed)
    assert names(parsed) >= GPU_GAUGES - {"aiops_gpu_power_watts"}
    assert (
        value(
            parsed,
            "aiops_gpu_power_limit_watts",
            gpu="1",
            uuid=nvml.fixture["gpus"][1]["uuid"],
        )
        == 700
    )


def test_lost_gpu_is_skipped_while_the_others_report(caplog):
    fixture = h100_host(3)
    nvml = FakeNvml(fixture, lost={1})
    reader = GpuReader(lambda: nvml)

    with caplog.at_level(logging.WARNING, logger="exporter.gpu"):
        reader.read()
        sample = reader.read()

    assert [gpu.index for gpu in sample.gpus] == [0, 2]
    assert sample.lost == (1,)
    parsed = series(gpu_families(sample))
    lost_uuid = fixture["gpus"][1]["uuid"]
    assert not [key for key in parsed if ("uuid", lost_uuid) in key[1]]
    assert (
        value(
            parsed,
            "aiops_gpu_temperature_celsius",
            gpu="2",
            uuid=fixture["gpus"][2]["uuid"],
        )
        == 68
    )
    assert [r.getMessage() for r in caplog.records].count(
        "GPU lost, skipping it gpu=1 error=GPU is lost"
    ) == 1


def test_unexpected_nvml_error_fails_the_read():
    nvml = FakeNvml(
        h100_host(1), errors={"nvmlDeviceGetTemperature": pynvml.NVML_ERROR_UNKNOWN}
    )

    with pytest.raises(pynvml.NVMLError_Unknown):
        GpuReader(lambda: nvml).read()


def test_close_shuts_nvml_down_once():
    nvml = FakeNvml(h100_host(1))
    reader = GpuReader(lambda: nvml)
    reader.read()

    reader.close()
    reader.close()

    assert not nvml.initialized
