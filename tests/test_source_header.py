"""The ``streampod-source`` header: written by the app runtime and the reader, read by the comparison."""

from __future__ import annotations

from typing import Any

import pytest

from streampod.contract import parse_source_header, source_header
from streampod.rollout.compare import _record


@pytest.mark.parametrize(
    ("topic", "partition", "offset", "timestamp", "text"),
    [
        ("orders", 3, 1042, 1763800000000, "orders/3/1042@1763800000000"),
        ("orders", 0, 7, None, "orders/0/7"),
        # The file source names a partition by its path, which may hold "/" and "@".
        ("/data/in@2/x.jsonl", 0, 12, 5, "/data/in@2/x.jsonl/0/12@5"),
        ("/data/in@2/x.jsonl", 0, 12, None, "/data/in@2/x.jsonl/0/12"),
    ],
)
def test_source_header_round_trip(topic: str, partition: int, offset: int, timestamp: int | None, text: str) -> None:
    assert source_header(topic, partition, offset, timestamp) == text
    assert parse_source_header(text) == (f"{topic}/{partition}/{offset}", timestamp)


class _Msg:
    """What ``compare`` reads of a ``confluent_kafka.Message``."""

    def __init__(self, headers: dict[str, bytes]) -> None:
        self._headers = list(headers.items())

    def headers(self) -> Any:
        return self._headers

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"{}"

    def timestamp(self) -> tuple[int, int]:
        return (2, 1763800000100)


def test_compare_reads_the_header_and_the_older_one_header_per_field() -> None:
    new = _record(_Msg({"streampod-source": b"orders/3/1042@1763800000000"}), "source")
    old = _record(
        _Msg(
            {
                "streampod-source-id": b"orders-3-1042",
                "streampod-source-topic": b"orders",
                "streampod-source-partition": b"3",
                "streampod-source-offset": b"1042",
                "streampod-source-timestamp": b"1763800000000",
            }
        ),
        "source",
    )
    # An active colour of an older release pairs with a candidate of this one.
    assert (new.pair_key, new.in_ms, new.out_ms) == ("orders/3/1042", 1763800000000, 1763800000100)
    assert (old.pair_key, old.in_ms) == (new.pair_key, new.in_ms)
    no_coordinates = _record(_Msg({"streampod-source-id": b"m7"}), "source")
    assert (no_coordinates.pair_key, no_coordinates.in_ms) == ("m7", None)
    assert _record(_Msg({}), "key").pair_key == "k"
