from __future__ import annotations

import pytest

from medfed.coordinator.directory import (
    MAX_ANNOUNCED_ROWS,
    NodeDirectory,
    SplitSizes,
    announced_sizes,
)
from medfed.errors import ProtocolError
from medfed.protocol.v1 import medfed_pb2 as pb


def test_announced_sizes_are_kept_and_changes_reported() -> None:
    directory = NodeDirectory(10.0)

    first = directory.seen("a", ["heart"], sizes={"heart": SplitSizes(200, 100)})
    again = directory.seen("a", ["heart"], sizes={"heart": SplitSizes(200, 100)})
    bare = directory.seen("a", ["heart"])  # a name without sizes keeps the last ones
    changed = directory.seen("a", ["heart"], sizes={"heart": SplitSizes(10**9, 100)})

    assert first == {"heart": SplitSizes(200, 100)}
    assert again == {} and bare == {}
    assert changed == {"heart": SplitSizes(10**9, 100)}
    assert directory.announced("a", "heart") == SplitSizes(10**9, 100)
    assert directory.statuses()[0].sizes == {"heart": SplitSizes(10**9, 100)}


def test_a_dataset_no_longer_named_loses_its_sizes() -> None:
    directory = NodeDirectory(10.0)
    directory.seen("a", ["heart"], sizes={"heart": SplitSizes(200, 100)})

    directory.seen("a", [])
    directory.seen("a", ["heart"])

    assert directory.announced("a", "heart") is None
    assert directory.announced("nobody", "heart") is None


def test_a_heartbeat_announces_sizes_of_the_datasets_it_names() -> None:
    request = pb.HeartbeatRequest(
        datasets=["heart", "xray"],
        dataset_sizes=[pb.DatasetSize(name="heart", train_rows=200, test_rows=100)],
    )

    assert announced_sizes(request) == {"heart": SplitSizes(200, 100)}


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ([pb.DatasetSize(name="other", train_rows=1)], "not announced"),
        (
            [pb.DatasetSize(name="heart", train_rows=1), pb.DatasetSize(name="heart")],
            "sized twice",
        ),
        ([pb.DatasetSize(name="heart", train_rows=MAX_ANNOUNCED_ROWS + 1)], "implausible size"),
        ([pb.DatasetSize(name="heart", test_rows=2**63)], "implausible size"),
    ],
)
def test_a_heartbeat_no_honest_node_sends_is_refused(
    sizes: list[pb.DatasetSize], message: str
) -> None:
    with pytest.raises(ProtocolError, match=message):
        announced_sizes(pb.HeartbeatRequest(datasets=["heart"], dataset_sizes=sizes))
