from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.detector.fakeprom import FakePrometheus


@pytest.fixture
def fake_prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus().start()
    yield fake
    fake.close()
