from __future__ import annotations

import pytest

from aiops_common.once import Once


def test_a_key_is_first_once() -> None:
    once = Once(4)

    assert [once.first(k) for k in ("a", "b", "a", "a", "b", "c")] == [
        True,
        True,
        False,
        False,
        False,
        True,
    ]


def test_the_key_seen_longest_ago_is_forgotten_first() -> None:
    once = Once(2)

    # "a" comes again before "c", so "b" is the one forgotten for it.
    firsts = [once.first(k) for k in ("a", "b", "a", "c", "a", "b")]

    assert firsts == [True, True, False, True, False, True]
    assert len(once) == 2


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="got 0"):
        Once(0)
