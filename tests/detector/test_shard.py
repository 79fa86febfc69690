from __future__ import annotations

import pytest

from detector.shard import Shard, parse_shard, shard_of


def labels(i: int) -> dict[str, str]:
    return {"instance": f"node-{i // 8}:9842", "gpu": str(i % 8)}


def test_shards_cover_every_series_exactly_once() -> None:
    series = [labels(i) for i in range(2000)]
    shards = [Shard(i, 3) for i in range(3)]

    owners = [[s.owns(x) for s in shards] for x in series]

    assert all(sum(o) == 1 for o in owners)
    counts = [sum(o[i] for o in owners) for i in range(3)]
    assert min(counts) > 550  # roughly even


def test_the_assignment_is_stable_across_runs() -> None:
    # Fixed values: any change here reshuffles a running fleet's series.
    assert [shard_of(labels(i), 4) for i in range(6)] == [2, 1, 1, 0, 0, 0]


def test_hashing_chosen_labels_keeps_an_entity_together() -> None:
    shard = Shard(1, 4, by=("instance",))

    owned = {shard.owns(labels(i)) for i in range(8)}  # one node's eight GPUs

    assert len(owned) == 1


def test_label_order_does_not_matter() -> None:
    assert shard_of({"a": "1", "b": "2"}, 7) == shard_of({"b": "2", "a": "1"}, 7)


@pytest.mark.parametrize("text", ["1", "2/2", "-1/3", "a/b", "0/0"])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_a_good_shard_parses() -> None:
    assert parse_shard("2/5") == (2, 5)
