"""The Event Hubs input's checkpoints and partition ownership in the real Blob checkpoint store (Azurite).

The reader engine, the source, the SDK's event processor and BlobCheckpointStore are all real; only the
AMQP links are in memory (streampod.eventhubs.testing). See docs/eventhubs.md for what that proves.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from eventhubs_support import App, checkpoints, eventually, publish, start_reader

from streampod.eventhubs.testing import MemoryNamespace
from streampod.pytest_azurite import Azurite


@pytest.fixture
def namespace(monkeypatch: pytest.MonkeyPatch) -> MemoryNamespace:
    ns = MemoryNamespace()
    ns.install(monkeypatch)
    return ns


def items(start: int, n: int, keys: int = 8) -> list[tuple[str, dict[str, int]]]:
    return [(f"k{i % keys}", {"i": i}) for i in range(start, start + n)]


async def test_checkpoints_follow_answers_and_a_restarted_reader_resumes_from_them(
    namespace: MemoryNamespace, azurite: Azurite, blob_container: str
) -> None:
    hub = namespace.create_hub("orders", 2)
    storage = azurite.connection_string
    await publish("orders", items(0, 120))
    events = {p: hub.events(p) for p in range(2)}
    assert all(len(e) > 20 for e in events.values())
    # Partition 0's app answers stop at its event #20 until released: the checkpoint must stop before it.
    held_seq = 20
    app = App()
    app.hold = lambda entries: any(e.record.partition.partition == 0 and e.record.offset >= held_seq for e in entries)
    reader = await start_reader(storage, blob_container, "orders", app)
    try:
        await eventually(lambda: len(app.answered) >= len(events[1]) + 1, 20, "the app answered partition 1")
        last1 = events[1][-1]
        await eventually(
            lambda: _at(checkpoints(storage, blob_container, "orders"), 1, last1.sequence_number), 10, "p1 checkpointed"
        )
        cps = await checkpoints(storage, blob_container, "orders")
        assert cps[1]["offset"] == last1.offset, "the checkpoint carries the event's offset, not its sequence number"
        # Partition 0: answered up to the batch holding #20, never beyond.
        answered0 = sorted(o for p, o in app.answered if p == 0)
        assert answered0 == list(range(len(answered0)))
        await asyncio.sleep(0.5)  # ten commit intervals
        cps = await checkpoints(storage, blob_container, "orders")
        point0 = cps[0]["sequence_number"] if 0 in cps else -1
        assert point0 == (answered0[-1] if answered0 else -1), "checkpoint is not the last answered event"
        assert point0 < held_seq
        if 0 in cps:
            assert cps[0]["offset"] == events[0][point0].offset
        app.release.set()
        last0 = events[0][-1]
        await eventually(
            lambda: _at(checkpoints(storage, blob_container, "orders"), 0, last0.sequence_number), 20, "p0 checkpointed"
        )
    finally:
        app.release.set()
        await reader.stop()
    assert Counter(app.answered) == Counter((p, e.sequence_number) for p in range(2) for e in events[p])

    # A restarted reader starts after the checkpoints: only what was published since.
    await publish("orders", items(120, 30))
    again = App("again")
    reader = await start_reader(storage, blob_container, "orders", again)
    try:
        new = {(p, e.sequence_number) for p in range(2) for e in hub.events(p)} - set(app.answered)
        assert len(new) == 30
        await eventually(lambda: set(again.answered) >= new, 20, "the restarted reader answered the new events")
        await asyncio.sleep(0.3)
        assert sorted(again.answered) == sorted(new), "the restarted reader read answered events again"
    finally:
        await reader.stop()


async def _at(cps_coro, partition: int, seq: int) -> bool:  # type: ignore[no-untyped-def]
    cps = await cps_coro
    return partition in cps and cps[partition]["sequence_number"] == seq


async def test_two_readers_split_partitions_and_take_over_when_one_stops(
    namespace: MemoryNamespace, azurite: Azurite, blob_container: str
) -> None:
    hub = namespace.create_hub("clicks", 4)
    storage = azurite.connection_string
    await publish("clicks", items(0, 200, keys=16))
    a, b = App("a"), App("b")
    first = await start_reader(storage, blob_container, "clicks", a)
    second = await start_reader(storage, blob_container, "clicks", b)
    try:
        await eventually(lambda: len(first.partitions) == 2 and len(second.partitions) == 2, 30, "two partitions each")
        assert first.partitions.isdisjoint(second.partitions)
        before = {(p, e.sequence_number) for p in range(4) for e in hub.events(p)}
        await eventually(lambda: set(a.answered) | set(b.answered) >= before, 30, "all 200 answered")
        ends = {p: hub.events(p)[-1].sequence_number for p in range(4)}
        await eventually(lambda: _all_at(checkpoints(storage, blob_container, "clicks"), ends), 20, "all checkpointed")
        # (Partitions may move while the two settle; a move can repeat events: at-least-once.)
        # One reader stops and releases its partitions; the other takes them over from the checkpoints.
        taken_over = second.partitions
        mark = len(a.answered)
        await second.stop()
        await eventually(lambda: len(first.partitions) == 4, 30, "the survivor owns all four partitions")
        await publish("clicks", items(200, 100, keys=16))
        after = {(p, e.sequence_number) for p in range(4) for e in hub.events(p)} - before
        await eventually(lambda: set(a.answered[mark:]) >= after, 30, "the 100 new events answered by the survivor")
        await asyncio.sleep(0.3)
    finally:
        await first.stop()
        if not second.task.done():
            await second.stop()
    since = a.answered[mark:]
    assert {p for p, _ in since} >= taken_over
    assert not set(since) & before, "the survivor read events that were answered and checkpointed before the stop"
    assert Counter(since) == Counter(after), "after the takeover every new event is answered exactly once"


async def _all_at(cps_coro, ends: dict[int, int]) -> bool:  # type: ignore[no-untyped-def]
    cps = await cps_coro
    return all(p in cps and cps[p]["sequence_number"] == seq for p, seq in ends.items())
