"""The input reader's engine against an in-memory source and a scripted app: commit points, retries,
dead letters, splitting and backpressure. The Kafka and HTTP ends are tested for real elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

import orjson
import pytest

from streampod.backoff import Backoff
from streampod.errors import DeliveryError, PeerFailed, PeerUnavailable
from streampod.input_reader.deadletter import DeadLetters
from streampod.input_reader.entries import OK, Entry, Outcome
from streampod.input_reader.reader import Reader, ReaderPolicy
from streampod.input_reader.senders import Delivery, Sender
from streampod.metrics import ReaderMetrics
from streampod.sink import Delivery as Ack
from streampod.sink import OutRecord
from streampod.source import InRecord, PartitionId, PartitionListener, Source

P0 = PartitionId("in", 0)


class MemorySource(Source):
    system = "memory"

    def __init__(self, records: Sequence[InRecord]) -> None:
        self.records = list(records)
        self.commits: list[dict[PartitionId, int]] = []
        self.final: dict[PartitionId, int] = {}
        self.paused: set[PartitionId] = set()
        self.pause_calls = 0

    async def start(self, listener: PartitionListener) -> None:
        listener.on_assigned(sorted({r.partition for r in self.records}))

    async def poll(self, max_records: int, timeout_s: float) -> list[InRecord]:
        out = [r for r in self.records if r.partition not in self.paused][:max_records]
        for r in out:
            self.records.remove(r)
        if not out:
            await asyncio.sleep(0.001)
        return out

    def pause(self, partitions: Sequence[PartitionId]) -> None:
        self.pause_calls += 1
        self.paused.update(partitions)

    def resume(self, partitions: Sequence[PartitionId]) -> None:
        self.paused.difference_update(partitions)

    def request_commit(self, offsets: Mapping[PartitionId, int]) -> None:
        self.commits.append(dict(offsets))

    def committed(self, partition: PartitionId) -> int | None:
        for c in reversed(self.commits):
            if partition in c:
                return c[partition]
        return None

    def ready(self) -> tuple[bool, str]:
        return True, ""

    def at_end(self) -> bool:
        return not self.records

    async def close(self, final_offsets: Mapping[PartitionId, int]) -> None:
        self.final = dict(final_offsets)


class ScriptedApp(Sender):
    def __init__(self, answer: Callable[[Entry], Outcome | DeliveryError]) -> None:
        self.answer = answer
        self.sent: list[list[int]] = []
        self.gate: asyncio.Event | None = None

    async def send(self, entries: Sequence[Entry]) -> list[Outcome]:
        self.sent.append([e.record.offset for e in entries])
        if self.gate is not None:
            await self.gate.wait()
        answers = [self.answer(e) for e in entries]
        for a in answers:
            if isinstance(a, DeliveryError):
                raise a
        return answers  # type: ignore[return-value]


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def write(self, records: Sequence[OutRecord]) -> list[Ack]:
        self.records.extend(records)
        return [Ack(True) for _ in records]

    def reasons(self) -> dict[int, str]:
        out = {}
        for r in self.records:
            h = dict(r.headers or [])
            out[int(h["streampod-source-offset"])] = h["streampod-error"].decode()
        return out


def records(n: int, partition: PartitionId = P0, value: Callable[[int], bytes] | None = None) -> list[InRecord]:
    return [InRecord(partition, i, b"k", value(i) if value else orjson.dumps({"i": i})) for i in range(n)]


async def run_reader(
    source: MemorySource, app: ScriptedApp, *, timeout: float = 10.0, **policy: object
) -> tuple[Reader, MemoryDeadLetters]:
    metrics = ReaderMetrics()
    backoff = Backoff(0.001, 0.005)
    dlq = MemoryDeadLetters()
    reader = Reader(
        source,
        Delivery(app, backoff, max_attempts=3, metrics=metrics),
        DeadLetters(dlq, "dlq", source.system, backoff, metrics),
        ReaderPolicy(commit_interval_s=0.01, **policy),  # type: ignore[arg-type]
        metrics,
        backoff,
    )
    await asyncio.wait_for(reader.run(asyncio.Event()), timeout)
    return reader, dlq


async def test_all_ok_commits_to_the_end_in_order():
    source = MemorySource(records(50))
    app = ScriptedApp(lambda e: OK)
    await run_reader(source, app, batch_max_messages=7)
    assert [o for batch in app.sent for o in batch] == list(range(50))
    assert source.final == {P0: 50}
    assert all(max(b) < min(a) for b, a in zip(app.sent, app.sent[1:], strict=False))


async def test_commit_point_never_passes_a_message_still_to_retry():
    tries: dict[int, int] = {}

    def answer(e: Entry) -> Outcome:
        tries[e.record.offset] = tries.get(e.record.offset, 0) + 1
        return Outcome("retry", "later") if e.record.offset == 3 and tries[3] < 3 else OK

    source = MemorySource(records(10))
    await run_reader(source, ScriptedApp(answer))
    assert tries[3] == 3
    # Until offset 3 was answered ok, no commit went past it.
    first_past = next((i for i, c in enumerate(source.commits) if c.get(P0, 0) > 3), len(source.commits))
    assert all(c.get(P0, 0) <= 3 for c in source.commits[:first_past])
    assert source.final == {P0: 10}


async def test_rejected_and_retry_exhausted_messages_are_dead_lettered_then_committed():
    def answer(e: Entry) -> Outcome:
        if e.record.offset == 2:
            return Outcome("reject", "bad record")
        if e.record.offset == 5:
            return Outcome("retry", "still busy")
        return OK

    source = MemorySource(records(8))
    _, dlq = await run_reader(source, ScriptedApp(answer), message_max_retries=2)
    reasons = dlq.reasons()
    assert set(reasons) == {2, 5}
    assert reasons[2] == "bad record"
    assert reasons[5].startswith("gave up after 3 tries: still busy")
    assert source.final == {P0: 8}
    # The input's coordinates in the one header outputs carry too (a comparison pairs them).
    assert sorted(dict(r.headers or [])["streampod-source"] for r in dlq.records) == [b"in/0/2", b"in/0/5"]


async def test_a_poison_message_is_isolated_by_splitting_and_the_rest_goes_through():
    def answer(e: Entry) -> Outcome | DeliveryError:
        return PeerFailed("app answered 500") if e.record.offset == 13 else OK

    source = MemorySource(records(20))
    app = ScriptedApp(answer)
    _, dlq = await run_reader(source, app, batch_max_messages=20)
    assert set(dlq.reasons()) == {13}
    assert "gave up after retries: app answered 500" in dlq.reasons()[13]
    ok_offsets = {o for batch in app.sent for o in batch} - {13}
    assert ok_offsets == set(range(20)) - {13}
    assert source.final == {P0: 20}


async def test_an_unavailable_app_is_waited_for_without_dead_lettering():
    calls = {"n": 0}

    def answer(e: Entry) -> Outcome | DeliveryError:
        calls["n"] += 1
        return PeerUnavailable("connection refused") if calls["n"] <= 30 else OK

    source = MemorySource(records(5))
    _, dlq = await run_reader(source, ScriptedApp(answer), batch_max_messages=5)
    assert dlq.records == []
    assert source.final == {P0: 5}


async def test_bad_json_is_dead_lettered_by_the_reader_with_the_reason():
    # The check scans the structure and the UTF-8 (inside strings too) without parsing the value.
    bad = {1: b"{oops", 2: b'{"a": "\xff\xfe"}', 3: b"[" * 5000 + b"]" * 5000, 4: b'{"a": 1} x'}
    source = MemorySource(records(6, value=lambda i: bad.get(i, orjson.dumps(i))))
    app = ScriptedApp(lambda e: OK)
    _, dlq = await run_reader(source, app)
    assert sorted(dlq.reasons()) == [1, 2, 3, 4]
    assert all("not valid JSON" in reason for reason in dlq.reasons().values())
    assert "not UTF-8 at byte 7" in dlq.reasons()[2]
    assert {o for batch in app.sent for o in batch} == {0, 5}
    assert source.final == {P0: 6}


async def test_a_slow_app_pauses_the_partition_and_memory_stays_bounded():
    source = MemorySource(records(100))
    app = ScriptedApp(lambda e: OK)
    app.gate = asyncio.Event()

    async def release() -> None:
        await asyncio.sleep(0.2)
        app.gate.set()  # type: ignore[union-attr]

    releaser = asyncio.create_task(release())
    reader_task = asyncio.create_task(
        run_reader(source, app, max_buffered_per_partition=10, batch_max_messages=5, poll_max_records=5)
    )
    await asyncio.sleep(0.1)
    # Blocked app: the partition is paused, so most records were never fetched.
    assert P0 in source.paused
    assert len(source.records) >= 80
    await releaser
    await reader_task
    assert source.final == {P0: 100}
    assert source.pause_calls >= 1


async def test_at_the_reader_wide_mark_it_stops_reading_without_pausing():
    # Pausing costs librdkafka's prefetch and a fetch delay, so a merely slow app must not cause one.
    source = MemorySource([r for p in range(4) for r in records(50, PartitionId("in", p))])
    app = ScriptedApp(lambda e: OK)
    app.gate = asyncio.Event()
    reader_task = asyncio.create_task(
        run_reader(
            source,
            app,
            max_buffered_messages=20,
            max_buffered_per_partition=1000,
            batch_max_messages=5,
            poll_max_records=5,
            stall_pause_s=5.0,
        )
    )
    await asyncio.sleep(0.2)
    assert len(source.records) == 200 - 20
    assert source.pause_calls == 0
    app.gate.set()
    await reader_task
    assert source.final == {PartitionId("in", p): 50 for p in range(4)}
    assert source.pause_calls == 0


async def test_a_stuck_app_gets_its_lanes_paused_after_the_stall_time_so_polling_goes_on():
    source = MemorySource(records(100))
    app = ScriptedApp(lambda e: OK)
    app.gate = asyncio.Event()
    polls = 0
    real_poll = source.poll

    async def counting_poll(max_records: int, timeout_s: float) -> list[InRecord]:
        nonlocal polls
        polls += 1
        return await real_poll(max_records, timeout_s)

    source.poll = counting_poll  # type: ignore[method-assign]
    reader_task = asyncio.create_task(
        run_reader(
            source,
            app,
            max_buffered_messages=10,
            batch_max_messages=5,
            poll_max_records=5,
            stall_pause_s=0.1,
            poll_timeout_s=0.02,
        )
    )
    await asyncio.sleep(0.05)
    before = polls
    assert P0 not in source.paused
    await asyncio.sleep(0.3)
    # Past the stall time: the full lane is paused and the reader polls again (it stays in its group).
    assert P0 in source.paused
    assert polls > before
    assert len(source.records) == 90
    app.gate.set()
    await reader_task
    assert source.final == {P0: 100}


@pytest.mark.parametrize("partitions", [1, 4])
async def test_order_holds_per_partition_with_partitions_in_parallel(partitions: int):
    recs = [r for p in range(partitions) for r in records(30, PartitionId("in", p))]
    source = MemorySource(recs)
    seen: dict[int, list[int]] = {}

    def answer(e: Entry) -> Outcome:
        seen.setdefault(e.record.partition.partition, []).append(e.record.offset)
        return OK

    await run_reader(source, ScriptedApp(answer), batch_max_messages=4)
    assert all(v == list(range(30)) for v in seen.values())
    assert source.final == {PartitionId("in", p): 30 for p in range(partitions)}


def test_policy_defaults_are_the_settings_defaults() -> None:
    from streampod.input_reader.service import policy
    from streampod.settings import InputReaderSettings, load

    s = load(InputReaderSettings, kafka_bootstrap_servers="127.0.0.1:1", input_topics="t", consumer_group="g")
    assert policy(s) == ReaderPolicy()
