"""Fixtures every test gets."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def root_logger_restored():
    """Put the root logger back as it was: a service's main() run in-process
    sets its level and handlers, which would change what later tests capture."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
