"""The gate that puts notifications before the worker."""

from __future__ import annotations

import threading

from alertmanager_webhook.gate import WriteGate


def test_worker_waits_while_a_notification_is_answered() -> None:
    gate = WriteGate()
    passed = threading.Event()
    gate.let_requests_pass(10)  # nothing in flight: no wait at all

    with gate.request():
        worker = threading.Thread(
            target=lambda: (gate.let_requests_pass(10), passed.set())
        )
        worker.start()
        held_back = not passed.wait(0.05)

    assert held_back
    assert passed.wait(10)
    worker.join(10)


def test_writers_take_turns() -> None:
    gate = WriteGate()
    inside: list[str] = []

    def write(name: str, urgent: bool) -> None:
        with gate.hold(urgent):
            inside.append(name)
            assert len(inside) == 1
            inside.remove(name)

    threads = [
        threading.Thread(target=write, args=(f"w{i}", i % 2 == 0)) for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert inside == []
