"""The worker: modes, approvals, limits, retries, crash recovery and restores."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alertmanager_webhook.actuators.base import ActuatorError, Outcome, Plan
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.recommend import Recommender
from alertmanager_webhook.store_errors import StoreError
from alertmanager_webhook.worker import Worker
from alertmanager_webhook.worker.results import AIOPS

from .conftest import Receiver, make_config


class Recorder:
    """An actuator that records what it was asked to do."""

    def __init__(self, failures: int = 0, idempotent: bool = False) -> None:
        self.applied: list[str] = []
        self.restored: list[str] = []
        self.failures = failures
        self.idempotent = idempotent
        self.params: list[Mapping[str, Any]] = []

    def plan(self, labels, policy, params) -> Plan:
        self.params.append(dict(params))
        return Plan(
            f"host {labels['host']}",
            f"poke {labels['host']}",
            spec={"host": labels["host"]},
        )

    def apply(self, spec, began=None) -> Outcome:
        if self.failures:
            self.failures -= 1
            raise ActuatorError("the host said no")
        self.applied.append(spec["host"])
        return Outcome("poked", {"host": spec["host"]})

    def restore(self, undo) -> str:
        self.restored.append(undo["host"])
        return "unpoked"


def _policy(**overrides: Any) -> dict[str, Any]:
    policy = {
        "name": "poke",
        "match": {"alertname": "Poke"},
        "action": "command",
        "argv": ["/bin/true"],
        "cooldown_seconds": 0,
    }
    policy.update(overrides)
    return policy


def _payload(
    host: str, status: str = "firing", starts: str = "2024-05-14T09:00:00Z"
) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": f'{{}}:{{host="{host}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "aiops-webhook",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "Poke", "host": host},
                "annotations": {},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": f"fp-{host}",
            }
        ],
    }


def _build(
    make_receiver,
    recorder: Recorder,
    recommender=None,
    own_registry: CollectorRegistry | None = None,
    **config: Any,
) -> Receiver:
    policies = config.pop("policies", [_policy()])
    settings = {"mode": "apply", "policies": policies}
    settings.update(config)
    return make_receiver(
        make_config(**settings),
        actuators={"command": recorder},
        recommender=recommender,
        own_registry=own_registry,
    )


def _act_once(make_receiver, actuator: Recorder) -> tuple[Receiver, dict[str, Any]]:
    """A receiver whose worker took one alert's action; that action."""
    receiver = _build(make_receiver, actuator)
    receiver.worker.recover()
    receiver.post(_payload("a"))
    receiver.worker.drain()
    [action] = receiver.actions()
    return receiver, action


def _results(receiver: Receiver) -> list[tuple[str, str]]:
    return [(a["kind"], a["result"]) for a in receiver.actions()]


def test_dry_run_plans_and_changes_nothing(make_receiver) -> None:
    recorder = Recorder()
    receiver = _build(make_receiver, recorder, mode="dry-run")

    receiver.post(_payload("a"))
    receiver.worker.drain()

    [action] = receiver.actions()
    assert (action["result"], action["plan"], action["target"]) == (
        "planned",
        "poke a",
        "host a",
    )
    assert recorder.applied == []


def test_apply_mode_applies_once_and_records_the_undo(make_receiver) -> None:
    recorder = Recorder()
    receiver = _build(make_receiver, recorder)

    receiver.post(_payload("a"))
    receiver.post(_payload("a"))  # a resend
    receiver.worker.drain()
    receiver.worker.drain()

    [action] = receiver.actions()
    assert recorder.applied == ["a"]
    assert (action["result"], action["reason"], action["undo"]) == (
        "applied",
        "poked",
        {"host": "a"},
    )
    assert action["attempts"] == 1
    sample = receiver.sample(
        "aiops_webhook_actions_total", action="command", mode="apply", result="applied"
    )
    assert sample == 1
    latency = "aiops_webhook_action_latency_seconds_count"
    assert receiver.sample(latency, action="command") == 1
    assert receiver.store.verify().ok


def test_approve_mode_waits_for_a_person(make_receiver) -> None:
    recorder = Recorder()
    receiver = _build(make_receiver, recorder, mode="approve")
    receiver.post(_payload("a"))
    receiver.worker.drain()
    assert _results(receiver) == [("act", "pending")]
    assert receiver.sample("aiops_webhook_queue_depth", state="pending") == 1

    Jobs(receiver.store).approve(receiver.actions()[0]["id"], "cli:alice")
    receiver.worker.drain()

    [action] = receiver.actions()
    assert (action["result"], action["approved_by"]) == ("applied", "cli:alice")
    assert recorder.applied == ["a"]


@pytest.mark.parametrize(
    ("receiver_mode", "policy_mode", "result"),
    [
        ("apply", "dry-run", "planned"),
        ("apply", "approve", "pending"),
        ("dry-run", "apply", "planned"),
        ("approve", "apply", "pending"),
    ],
)
def test_policy_mode_can_only_be_more_cautious(
    make_receiver, receiver_mode: str, policy_mode: str, result: str
) -> None:
    recorder = Recorder()
    receiver = _build(
        make_receiver,
        recorder,
        mode=receiver_mode,
        policies=[_policy(mode=policy_mode)],
    )

    receiver.post(_payload("a"))
    receiver.worker.drain()

    assert _results(receiver) == [("act", result)]
    assert recorder.applied == []


def test_resolved_alert_restores_what_was_applied(make_receiver) -> None:
    recorder = Recorder()
    receiver = _build(make_receiver, recorder)
    receiver.post(_payload("a"))
    receiver.worker.drain()

    receiver.post(_payload("a", status="resolved"))
    receiver.worker.drain()

    act, restore = receiver.actions()
    assert recorder.restored == ["a"]
    assert act["restored_at"] is not None
    assert (restore["kind"], restore["result"], restore["reason"]) == (
        "restore",
        "applied",
        "unpoked",
    )
    assert restore["restores"] == act["id"]
    total = "aiops_webhook_restores_total"
    assert receiver.sample(total, action="command", result="applied") == 1
    assert receiver.store.verify().ok


def test_resolved_alert_cancels_a_pending_approval(make_receiver) -> None:
    receiver = _build(make_receiver, Recorder(), mode="approve")
    receiver.post(_payload("a"))
    receiver.worker.drain()

    receiver.post(_payload("a", status="resolved"))
    receiver.worker.drain()

    assert _results(receiver) == [("act", "cancelled"), ("restore", "skipped")]


def test_alert_resolved_before_the_worker_ran_is_skipped(make_receiver) -> None:
    recorder = Recorder()
    receiver = _build(make_receiver, recorder)
    receiver.post(_payload("a"))
    receiver.post(_payload("a", status="resolved"))

    receiver.worker.drain()

    assert _results(receiver) == [("act", "skipped"), ("restore", "skipped")]
    assert receiver.actions()[0]["reason"] == "the alert resolved before it ran"
    assert recorder.applied == []


def alert_again_within_and_after_a_cooldown_of_60s(receiver: Receiver) -> None:
    """Host a alerts anew 30 s after its last change, then 31 s later."""
    receiver.clock.now += 30
    receiver.post(_payload("a", starts="2024-05-14T09:10:00Z"))
    receiver.worker.drain()
    receiver.clock.now += 31
    receiver.post(_payload("a", starts="2024-05-14T09:20:00Z"))
    receiver.worker.drain()


def test_cooldown_holds_a_target_back(make_receiver) -> None:
    recorder = Recorder()
    receiver = _build(make_receiver, recorder, policies=[_policy(cooldown_seconds=60)])
    receiver.post(_payload("a", starts="2024-05-14T09:00:00Z"))
    receiver.worker.drain()

    alert_again_within_and_after_a_cooldown_of_60s(receiver)

    first, second, third = receiver.actions()
    assert second["result"] == "skipped"
    assert second["reason"] == "cooldown: host a was changed 30s ago, cooldown 60s"
    assert third["result"] == "applied"
    assert recorder.applied == ["a", "a"]


def test_cap_on_changes_in_force(make_receiver) -> None:
    recorder = Recorder()
    receiver = _build(make_receiver, recorder, max_active_actions=1)

    receiver.post(_payload("a"))
    receiver.post(_payload("b"))
    receiver.worker.drain()
    receiver.post(_payload("a", status="resolved"))
    receiver.post(_payload("c"))
    receiver.worker.drain()

    assert [(a["target"], a["result"]) for a in receiver.actions()] == [
        ("host a", "applied"),
        ("host b", "skipped"),
        ("host a", "applied"),
        ("host c", "applied"),
    ]
    assert receiver.actions()[1]["reason"] == "cap: 1 changes in force, at most 1"


def test_blast_radius_caps_targets_per_window(make_receiver) -> None:
    recorder = Recorder()
    receiver = _build(
        make_receiver,
        recorder,
        blast_radius_targets=2,
        blast_radius_window_seconds=600,
    )

    for host in "abc":
        receiver.post(_payload(host))
    receiver.worker.drain()
    receiver.clock.now += 601
    receiver.post(_payload("d"))
    receiver.worker.drain()

    assert recorder.applied == ["a", "b", "d"]
    skipped = receiver.actions()[2]
    assert skipped["reason"] == (
        "blast radius: 2 targets changed in the last 600s, at most 2"
    )


def test_failed_action_is_retried_only_when_the_policy_says_so(make_receiver) -> None:
    recorder = Recorder(failures=1)
    receiver = _build(make_receiver, recorder, policies=[_policy(retries=1)])
    receiver.post(_payload("a"))

    receiver.worker.drain()
    waiting = receiver.actions()[0]
    receiver.clock.now += 4
    assert receiver.worker.drain() == 0
    receiver.clock.now += 1
    receiver.worker.drain()

    assert waiting["result"] == "queued"
    assert waiting["reason"] == "attempt 1 failed: the host said no; retrying in 5s"
    assert (receiver.actions()[0]["result"], receiver.actions()[0]["attempts"]) == (
        "applied",
        2,
    )
    assert recorder.applied == ["a"]


def test_a_failed_attempt_with_a_retry_to_come_is_logged(
    make_receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = _build(
        make_receiver, Recorder(failures=1), policies=[_policy(retries=1)]
    )
    receiver.post(_payload("a"))

    with caplog.at_level("INFO", logger="alertmanager_webhook.worker"):
        receiver.worker.drain()

    [action] = receiver.actions()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"attempt failed id={action['id']} action={action['action']} attempt=1 "
        "reason='the host said no'; retrying in 5s"
    ]


def test_failure_without_retries_is_recorded_with_its_reason(
    make_receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = _build(make_receiver, Recorder(failures=1))
    receiver.post(_payload("a"))

    with caplog.at_level("INFO", logger="alertmanager_webhook.worker"):
        receiver.worker.drain()

    [action] = receiver.actions()
    assert (action["result"], action["reason"]) == ("failed", "the host said no")
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"act failed id={action['id']} action={action['action']} "
        "reason='the host said no'"
    ]


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("dry-run", "planned (dry-run)"),
        ("approve", "waits for approval"),
    ],
)
def test_a_plan_that_is_not_applied_is_logged(
    make_receiver, caplog: pytest.LogCaptureFixture, mode: str, said: str
) -> None:
    receiver = _build(make_receiver, Recorder(), mode=mode)
    receiver.post(_payload("a"))

    with caplog.at_level("INFO", logger="alertmanager_webhook.worker"):
        receiver.worker.drain()

    [action] = receiver.actions()
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"act {said} id={action['id']} action=command plan=")
    assert action["plan"] in line
    database = receiver.store.file()
    hint = f"approve with: {AIOPS} approve {action['id']} --database {database}"
    assert (hint in line) == (mode == "approve")


def test_an_applied_action_is_logged_with_its_outcome(
    make_receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = _build(make_receiver, Recorder())
    receiver.post(_payload("a"))

    with caplog.at_level("INFO", logger="alertmanager_webhook.worker"):
        receiver.worker.drain()

    [action] = receiver.actions()
    # What was done, such as the signal and the pids it reached.
    assert [r.getMessage() for r in caplog.records] == [
        f"applied id={action['id']} action=command target='host a' outcome='poked'"
    ]


def _crash_while_running(receiver: Receiver) -> None:
    receiver.post(_payload("a"))
    [row] = receiver.actions()
    assert Jobs(receiver.store).move(row["id"], ("queued",), result="running")


def test_crash_without_a_start_journal_leaves_a_non_idempotent_action_failed(
    make_receiver,
) -> None:
    # A database from before the journal, or one whose journal was removed:
    # whether the action began is unknown.
    recorder = Recorder()
    receiver = _build(make_receiver, recorder)
    _crash_while_running(receiver)

    receiver.worker.recover()
    receiver.worker.drain()

    [action] = receiver.actions()
    assert action["result"] == "failed"
    assert action["reason"].startswith("interrupted by a restart; outcome unknown")
    assert recorder.applied == []


def test_crash_requeues_an_idempotent_action(make_receiver) -> None:
    recorder = Recorder(idempotent=True)
    receiver = _build(make_receiver, recorder)
    _crash_while_running(receiver)

    receiver.worker.recover()
    receiver.worker.drain()

    assert _results(receiver) == [("act", "applied")]
    assert recorder.applied == ["a"]


def test_actuator_bug_fails_the_action_and_the_queue_goes_on(make_receiver) -> None:
    class Broken(Recorder):
        def plan(self, labels, policy, params) -> Plan:
            if labels["host"] == "a":
                raise KeyError("oops")
            return super().plan(labels, policy, params)

    recorder = Broken()
    receiver = _build(make_receiver, recorder)
    receiver.post(_payload("a"))
    receiver.post(_payload("b"))

    receiver.worker.drain()

    assert [a["result"] for a in receiver.actions()] == ["failed", "applied"]
    assert receiver.actions()[0]["reason"] == "KeyError('oops')"
    assert receiver.sample("aiops_webhook_worker_errors_total", stage="plan") == 1


class FakePrometheus:
    """A requests-like session answering instant queries from a table."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    def get(self, url: str, params: dict[str, str], timeout: float):
        query = params["query"]
        self.queries.append(query)
        answer = self.answers.get(query)
        if isinstance(answer, Exception):
            raise answer
        return _Response({"status": "success", "data": {"result": answer or []}})


class _Response:
    def __init__(self, body: Any) -> None:
        self.body = body

    def raise_for_status(self) -> None:
        pass

    def json(self) -> Any:
        return self.body


RECOMMENDED = {
    "prometheus_url": "http://127.0.0.1:9090",
    "query": 'aiops_recommended_cpu_cores{host="{host}"}',
    "param": "cores",
}


def test_params_come_from_the_recommendation(make_receiver) -> None:
    prometheus = FakePrometheus(
        {'aiops_recommended_cpu_cores{host="a\\"b"}': [{"value": [0, "0.75"]}]}
    )
    recorder = Recorder()
    receiver = _build(
        make_receiver,
        recorder,
        recommender=Recommender(prometheus),
        mode="dry-run",
        policies=[_policy(params={"cores": 2}, recommend=RECOMMENDED)],
    )

    receiver.post(_payload('a"b'))
    receiver.post(_payload("c"))
    receiver.worker.drain()

    assert recorder.params == [{"cores": 0.75}, {"cores": 2.0}]
    first, second = receiver.actions()
    assert first["plan"] == 'poke a"b (cores 0.75 recommended by Prometheus)'
    assert second["plan"] == (
        "poke c (static cores 2.0, because the query returned 0 series, not 1)"
    )


def test_queue_depth_shows_a_backlog_while_it_is_worked_off(make_receiver) -> None:
    seen: list[float] = []

    class Watching(Recorder):
        def apply(self, spec, began=None) -> Outcome:
            seen.append(receiver.sample("aiops_webhook_queue_depth", state="queued"))
            return super().apply(spec)

    receiver = _build(make_receiver, Watching())
    for host in ("a", "b", "c"):
        receiver.post(_payload(host))

    receiver.worker.drain()

    assert seen[0] == 3
    assert receiver.sample("aiops_webhook_queue_depth", state="queued") == 0


def test_crash_before_a_non_idempotent_action_began_runs_it_once(
    make_receiver,
) -> None:
    recorder = Recorder()
    receiver = _build(make_receiver, recorder)
    receiver.worker.recover()  # a start: the journal is made
    _crash_while_running(receiver)

    receiver.worker.recover()
    receiver.worker.drain()

    [action] = receiver.actions()
    assert action["result"] == "applied"
    assert recorder.applied == ["a"]


def _restarted(
    receiver: Receiver, actuator: Recorder, policies: list[dict[str, Any]]
) -> Worker:
    """A worker started anew on the receiver's database, as after a crash."""
    worker = Worker(
        make_config(mode="apply", policies=policies),
        Jobs(receiver.store),
        {"command": actuator},
        WebhookMetrics(CollectorRegistry()),
        clock=receiver.clock,
    )
    worker.recover()
    return worker


def test_crash_after_a_non_idempotent_action_began_never_reruns_it(
    make_receiver,
) -> None:
    class Crashing(Recorder):
        def apply(self, spec, began=None) -> Outcome:
            began()
            raise KeyboardInterrupt  # the process dies after its effect began

    receiver = _build(make_receiver, Crashing())
    receiver.worker.recover()
    receiver.post(_payload("a"))
    with pytest.raises(KeyboardInterrupt):
        receiver.worker.drain()
    # Too short-lived to be marked running (admissions.py): its mark tells.
    assert [a["result"] for a in receiver.actions()] == ["queued"]

    recorder = Recorder()
    restarted = _restarted(receiver, recorder, [_policy()])
    restarted.drain()

    [action] = receiver.actions()
    assert action["result"] == "failed"
    assert action["reason"].startswith("interrupted by a restart; outcome unknown")
    assert action["target"] == "host a"
    assert recorder.applied == []


def test_a_crash_after_a_retry_was_recorded_runs_the_retry_once(
    make_receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first attempt began, failed and had its retry recorded; the
    # receiver died before spending its mark. That attempt is over: the
    # retry runs at its time, not recorded "outcome unknown".
    class FailingOnce(Recorder):
        def apply(self, spec, began=None) -> Outcome:
            began()
            return super().apply(spec, began)

    receiver = _build(
        make_receiver, FailingOnce(failures=1), policies=[_policy(retries=1)]
    )
    receiver.worker.recover()
    receiver.post(_payload("a"))

    def die(action_id: int) -> None:
        raise KeyboardInterrupt  # the process dies before the mark is spent

    monkeypatch.setattr(receiver.worker._journal, "settle", die)
    with pytest.raises(KeyboardInterrupt):
        receiver.worker.drain()
    [waiting] = receiver.actions()
    assert (waiting["result"], waiting["attempts"]) == ("queued", 1)

    recorder = Recorder()
    restarted = _restarted(receiver, recorder, [_policy(retries=1)])
    assert restarted.drain() == 0  # not before its retry is due
    receiver.clock.now += 5
    restarted.drain()

    [action] = receiver.actions()
    assert (action["result"], action["attempts"]) == ("applied", 2)
    assert recorder.applied == ["a"]


def test_a_mark_of_the_attempt_after_a_recorded_retry_counts_as_begun(
    make_receiver,
) -> None:
    # The retry itself began and the receiver died before its row said so.
    class CrashingRetry(Recorder):
        def apply(self, spec, began=None) -> Outcome:
            began()
            if self.failures:
                return super().apply(spec, began)
            raise KeyboardInterrupt

    receiver = _build(
        make_receiver, CrashingRetry(failures=1), policies=[_policy(retries=1)]
    )
    receiver.worker.recover()
    receiver.post(_payload("a"))
    receiver.worker.drain()
    receiver.clock.now += 5
    with pytest.raises(KeyboardInterrupt):
        receiver.worker.drain()

    recorder = Recorder()
    restarted = _restarted(receiver, recorder, [_policy(retries=1)])
    restarted.drain()

    [action] = receiver.actions()
    assert (action["result"], action["attempts"]) == ("failed", 2)
    assert action["reason"].startswith("interrupted by a restart; outcome unknown")
    assert recorder.applied == []


def test_a_mark_is_spent_once_the_end_is_recorded_and_kept_if_it_is_not(
    make_receiver, tmp_path
) -> None:
    class Marking(Recorder):
        def apply(self, spec, began=None) -> Outcome:
            began()
            return super().apply(spec)

    journal = tmp_path / "webhook.db.started"
    marking = Marking()
    receiver = _build(make_receiver, marking)
    receiver.worker.recover()
    receiver.post(_payload("a"))
    receiver.worker.drain()
    assert receiver.actions()[0]["result"] == "applied"
    assert os.listdir(journal) == []

    # Recording the end fails: the action stays unsettled, its mark with it.
    moves = receiver.worker._jobs.move

    def failing_end(action_id, expect, **fields):
        if fields.get("result") == "applied":
            raise StoreError("disk I/O error")
        return moves(action_id, expect, **fields)

    receiver.worker._jobs.move = failing_end
    receiver.post(_payload("b"))
    with pytest.raises(StoreError):
        receiver.worker.drain()
    [unsettled] = [a for a in receiver.actions() if a["result"] == "queued"]
    assert os.listdir(journal) == [str(unsettled["id"])]

    # The database is back; its row still says queued, yet it is not run again.
    receiver.worker._jobs.move = moves
    receiver.worker.drain()
    assert marking.applied == ["a", "b"]
    assert receiver.actions()[1]["result"] == "queued"


def test_an_actuator_that_crashes_after_it_began_leaves_no_mark(
    make_receiver, tmp_path
) -> None:
    class Crashing(Recorder):
        def apply(self, spec, began=None) -> Outcome:
            began()
            raise ValueError("a bug of the actuator's")

    _, action = _act_once(make_receiver, Crashing())

    assert action["result"] == "failed"
    assert os.listdir(tmp_path / "webhook.db.started") == []


def test_a_journal_that_cannot_be_opened_stops_the_start_with_its_name(
    make_receiver, tmp_path
) -> None:
    receiver = _build(make_receiver, Recorder())
    os.mkfifo(tmp_path / "webhook.db.started")

    with pytest.raises(StoreError, match="cannot open start journal .*started"):
        receiver.worker.recover()
