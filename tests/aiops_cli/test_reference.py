"""The README's reference is what aiops_cli.reference renders, and what it
renders matches what the services really expose."""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

import detector
from aiops_cli.reference import (
    BEGIN,
    END,
    PER_SERIES,
    SOURCE_LABELS,
    alert_rows,
    config_rows,
    detector_metrics,
    exporter_metrics,
    main,
    render,
    update,
    webhook_metrics,
)
from alertmanager_webhook.config import WebhookConfig
from detector.checkpoint import CheckpointStatus
from detector.config import DetectorConfig
from detector.diagnosis import security
from detector.diagnosis.collector import DiagnosisCollector
from detector.diagnosis.gpufault import GpuDiagnosis
from detector.diagnosis.gpustate import GpuState
from detector.diagnosis.incident import Anomaly, Incident
from detector.diagnosis.rootcause import Cause, Ranking, Window
from detector.diagnosis.service import DiagnosisSnapshot
from detector.metrics import DetectorCollector
from detector.model import Score
from detector.optimizer.collector import OptimizerCollector
from detector.optimizer.config import OptimizerConfig
from detector.optimizer.power import PowerAdvice
from detector.optimizer.snapshot import OptimizerSnapshot, Recommendation, ResourceState
from detector.snapshot import FamilyState, SeriesState, Snapshot
from exporter.config import ExporterConfig
from exporter.main import build_exposition, build_snapshot
from exporter.metrics import AuthFailures
from tests.exporter.fake_nvml import H100, H200, FakeNvml, load_fixture

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# Declared metrics a scrape over the recorded GPUs cannot show, and why.
NOT_ON_RECORDED_GPUS = {
    "aiops_gpu_fan_speed_ratio": "both recorded GPUs are passively cooled",
    "aiops_gpu_retired_pages": "page retirement is for GPUs before Ampere",
    "aiops_gpu_retired_pages_pending": "page retirement is for GPUs before Ampere",
}
# Series whose presence depends on the host the test runs on; each has its
# own tests over a fake kubelet or a cgroup tree in tests/exporter/.
ON_SOME_HOSTS = {
    "aiops_gpu_pod_info": "needs a kubelet's PodResources socket",
    "aiops_process_group_cpu_limit_cores": "needs a group owning a limited cgroup",
    "aiops_process_group_memory_limit_bytes": "needs a group owning a limited cgroup",
    "aiops_process_group_memory_high_bytes": "needs a group owning a limited cgroup",
    "aiops_process_group_oom_kills_total": "needs a group owning its cgroup",
}


def test_readme_section_is_up_to_date():
    readme = README.read_text()

    assert BEGIN in readme and END in readme
    assert update(readme, render()) == readme, (
        "run python -m aiops_cli.reference --write README.md"
    )


def test_check_exits_1_on_a_stale_readme(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\n## after\n")

    assert main(["--check", str(readme)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["--write", str(readme)]) == 0
    assert main(["--check", str(readme)]) == 0
    assert readme.read_text().endswith(f"{END}\n\n## after\n")


def test_update_adds_the_closing_marker_and_keeps_the_rest():
    updated = update(f"# x\n\n{BEGIN}\n\n## Alerts\n", "table\n")

    assert updated == f"# x\n\n{BEGIN}\ntable\n{END}\n\n## Alerts\n"
    assert update(updated, "other\n") == f"# x\n\n{BEGIN}\nother\n{END}\n\n## Alerts\n"
    with pytest.raises(ValueError, match="marker"):
        update("# no markers\n", "table\n")


def scrape(model: str) -> dict[str, tuple[str, tuple[str, ...], str]]:
    """name -> (type, labels, help) of a real exposition over a fake NVML."""
    nvml = FakeNvml(load_fixture(model), count=2)
    pid = os.getpid()
    nvml.processes = {0: [(pid, 1 << 30)]}
    nvml.samples = {0: [(pid, 1_000, 40)]}
    nvml.events = [(0, 79)]
    config = ExporterConfig(
        kmsg_path="",
        expected_gpus=2,
        process_cmdline=True,
        gpu_processes_per_pid=True,
    )
    snapshot, close = build_snapshot(config, load_nvml=lambda: nvml)
    try:
        snapshot.refresh()
        snapshot.refresh()
        text = build_exposition(snapshot, AuthFailures())().decode()
    finally:
        close()
    found = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("aiops_"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = sorted({k for s in family.samples for k in s.labels})
        found[name] = (family.type, tuple(labels), family.documentation)
    return found


def test_exporter_reference_matches_a_real_scrape():
    scraped = scrape(H100) | scrape(H200)
    documented = {
        doc.name: (doc.type, tuple(sorted(doc.labels)), doc.help)
        for doc in exporter_metrics()
    }

    for name, seen in scraped.items():
        assert documented.get(name) == seen, name
    assert set(documented) - set(scraped) - set(ON_SOME_HOSTS) == set(
        NOT_ON_RECORDED_GPUS
    )


def detector_scrape() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (type, labels) of the collectors detector.main registers, over a
    state with a sample in every family and the optimizer's default labels."""
    score = Score(1.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0, True)
    # A source `query` label, which the collector renames to exported_query.
    labels = (("instance", "h1"), ("gpu", "0"), ("query", "src"))
    engine = Snapshot(
        series=(SeriesState("gpu_memory", labels, 0.0, score, points_seen=5),),
        query_errors={"gpu_memory": 1},
        families=(FamilyState("gpu_memory", "forecaster", 1.0, 1),),
    )
    registry = CollectorRegistry()
    registry.register(DetectorCollector(lambda: engine, CheckpointStatus))
    registry.register(DiagnosisCollector(diagnosis_state))
    registry.register(OptimizerCollector(optimizer_state))

    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if family.name.endswith("_created"):
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        labels_seen = sorted({k for s in family.samples for k in s.labels})
        found[name] = (family.type, tuple(labels_seen))
    return found


def diagnosis_state() -> DiagnosisSnapshot:
    cause = Cause(
        1, "process_group", "stress (alice)", {"user": "alice"}, 1.0, 0.9, 0.1, 0.7, 5.0
    )
    incident = Incident(
        Anomaly("host_cpu", {"instance": "h1"}, 0.0),
        Window(0.0, 1.0, 2.0),
        Ranking((cause,), 1, None),
    )
    gpu = GpuState({"instance": "h1", "gpu": "0"}, GpuDiagnosis("reboot", ("79",)))
    kinds = (
        security.UNOWNED,
        security.MINING,
        security.NEW_USER,
        security.AUTH_FAILURES,
    )
    findings = tuple(
        security.Finding(kind, {"instance": "h1"}, 1.0, "") for kind in kinds
    )
    return DiagnosisSnapshot(incidents=(incident,), gpus=(gpu,), findings=findings)


def optimizer_state() -> OptimizerSnapshot:
    config = OptimizerConfig()
    assert config.power is not None
    resources = tuple(
        ResourceState(
            rq.resource,
            rq.labels,
            (Recommendation(tuple((n, "x") for n in rq.labels), 1, 2, 3, 4),),
        )
        for rq in config.resources
    )
    gpu = tuple((n, "x") for n in config.power.labels)
    return OptimizerSnapshot(
        resources=resources,
        power_label_names=config.power.labels,
        power=(PowerAdvice(gpu, 150.0, 220.0, 260.0, 400.0, 180.0, 3.5),),
        unit_mismatches={"cpu_cores": 0},
        series_refused={"cpu_cores": 0},
        errors={"query": 0},
    )


def test_detector_reference_matches_a_real_scrape():
    scraped = detector_scrape()
    documented = {doc.name: doc for doc in detector_metrics()}

    assert set(scraped) == set(documented)
    for name, (kind, labels) in scraped.items():
        doc = documented[name]
        assert doc.type == kind, name
        if name in PER_SERIES:
            assert doc.labels_note == SOURCE_LABELS
            assert {"query", "exported_query", "instance", "gpu"} == set(labels)
        else:
            assert tuple(sorted(doc.labels)) == labels, name


def test_an_optimizer_metric_names_only_the_config_that_sets_its_labels():
    notes = {doc.name: doc.labels_note for doc in detector_metrics()}

    memory = notes["aiops_recommended_memory_bytes"]
    power = notes["aiops_recommended_gpu_power_limit_watts"]
    assert "optimizer.resources" in memory and "optimizer.power" not in memory
    assert "optimizer.power" in power and "optimizer.resources" not in power


def detector_collectors() -> list[type[Collector]]:
    """Every Collector class the detector package defines."""
    found = []
    for module_info in pkgutil.walk_packages(detector.__path__, "detector."):
        if module_info.name.endswith("__main__"):
            continue  # importing it starts the service
        module = importlib.import_module(module_info.name)
        found += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and Collector in value.__mro__
            and value.__module__ == module.__name__
        ]
    return found


def test_every_detector_collector_is_documented():
    documented = {doc.name for doc in detector_metrics()}
    suffix = {"counter": "_total", "info": "_info"}
    collectors = detector_collectors()

    assert {DetectorCollector, DiagnosisCollector, OptimizerCollector} <= set(
        collectors
    )
    for cls in collectors:
        # describe() names every family without reading any state.
        described = {
            family.name + suffix.get(family.type, "")
            for family in cls(lambda: None).describe()
        }
        assert described <= documented, cls.__name__


def test_detector_and_webhook_references_name_their_series():
    detector = {doc.name: doc for doc in detector_metrics()}
    webhook = {doc.name: doc for doc in webhook_metrics()}

    assert detector["aiops_anomaly_expected_upper"].labels_note
    assert detector["aiops_detector_query_errors_total"].labels == ("query",)
    assert detector["aiops_anomaly_model_points"].labels_note == SOURCE_LABELS
    trained = detector["aiops_detector_model_trained_timestamp_seconds"]
    assert trained.labels == ("family", "model")
    assert "bound" in detector["aiops_recommended_cpu_cores"].labels
    assert webhook["aiops_webhook_actions_total"].labels == ("action", "mode", "result")
    assert webhook["aiops_webhook_action_latency_seconds"].type == "histogram"
    assert not any(name.endswith("_created") for name in webhook)


def test_every_alert_and_config_key_is_listed():
    alerts = {row[0] for row in alert_rows()}
    rules = [
        rule["alert"]
        for path in (ROOT / "deploy" / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]

    assert alerts == set(rules)
    for cls in (ExporterConfig, DetectorConfig, WebhookConfig):
        keys = {row[0] for row in config_rows(cls)}
        assert {f.name for f in dataclasses.fields(cls)} <= keys
    assert "queries[].promql" in {row[0] for row in config_rows(DetectorConfig)}
