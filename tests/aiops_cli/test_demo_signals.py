from __future__ import annotations

import signal

import pytest

from aiops_cli.demo import STOP_SIGNALS, _raise_interrupt


@pytest.fixture
def saved_handlers():
    saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("saved_handlers")
def test_the_first_stop_signal_interrupts_and_later_ones_wait_for_the_cleanup():
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_interrupt)

    with pytest.raises(KeyboardInterrupt):
        _raise_interrupt(signal.SIGTERM, None)

    # A second SIGTERM now cannot break off the services' stopping.
    assert all(signal.getsignal(s) == signal.SIG_IGN for s in STOP_SIGNALS)
    signal.raise_signal(signal.SIGTERM)
