"""GPU fault classes, escalation after a remedy, throttling in plain words."""

from __future__ import annotations

from detector.diagnosis import gpufault as g


def xid(code: int, action: str, last_seen: float = 100.0) -> g.XidEvent:
    return g.XidEvent(code, action, 3.0, last_seen)


def test_the_worst_class_of_the_evidence_wins():
    evidence = g.GpuEvidence(
        xids=[xid(13, g.APPLICATION_FAULT), xid(48, g.RESET_GPU)],
        remapped_rows_pending=True,
    )

    diagnosis = g.diagnose_gpu(evidence)

    assert diagnosis.fault_class == g.RESET_GPU
    assert not diagnosis.escalated
    assert "Xid 48 x3" in diagnosis.reasons


def test_an_xid_back_after_a_reboot_is_escalated_to_hardware():
    evidence = g.GpuEvidence(
        xids=[xid(79, g.REBOOT, last_seen=200.0)],
        remedies=[g.Remedy(g.REBOOT, 150.0)],
    )

    diagnosis = g.diagnose_gpu(evidence)

    assert diagnosis.fault_class == g.DRAIN_AND_INSPECT
    assert diagnosis.escalated
    assert "hardware" in diagnosis.explanation


def test_a_remedy_after_the_last_xid_does_not_escalate():
    evidence = g.GpuEvidence(
        xids=[xid(48, g.RESET_GPU, last_seen=100.0)],
        remedies=[g.Remedy(g.RESET_GPU, 150.0)],
    )

    assert g.diagnose_gpu(evidence) == g.diagnose_gpu(g.GpuEvidence(xids=evidence.xids))


def test_health_and_remapping_alone_give_a_class():
    assert g.diagnose_gpu(g.GpuEvidence(health="lost")).fault_class == g.REBOOT
    failed = g.GpuEvidence(remapped_rows_failed=True)
    assert g.diagnose_gpu(failed).fault_class == g.DRAIN_AND_INSPECT
    assert g.diagnose_gpu(g.GpuEvidence()).fault_class == g.HEALTHY


def test_throttling_is_explained_in_plain_words():
    hot = g.diagnose_gpu(g.GpuEvidence(clock_reasons={"sw_thermal_slowdown": 1}))
    capped = g.diagnose_gpu(g.GpuEvidence(clock_reasons={"sw_power_cap": 1}))

    assert hot.fault_class == g.THERMAL_THROTTLE
    assert "cool" in hot.explanation and "fans" in hot.explanation
    assert capped.fault_class == g.POWER_THROTTLE
    assert "power limit" in capped.explanation


def test_unknown_and_none_actions_give_no_class():
    evidence = g.GpuEvidence(xids=[xid(999, "unknown"), xid(154, "none")])

    assert g.diagnose_gpu(evidence).fault_class == g.HEALTHY
