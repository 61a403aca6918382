"""Helpers for the end-to-end tests: produce, read back, check order and commits on the real broker."""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

APPS = Path(__file__).resolve().parent / "apps"
STDLIB_APP = APPS / "stdlib_app.py"
TRANSFORM_APP = APPS / "transform.py"


@dataclass(frozen=True)
class Out:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes | None
    headers: dict[str, bytes]

    def json(self) -> dict:  # type: ignore[type-arg]
        return orjson.loads(self.value or b"null")  # type: ignore[no-any-return]


def keyed_values(n: int, keys: int) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """n messages over ``keys`` keys, each value carrying its key's sequence number."""
    seq: dict[str, int] = defaultdict(int)
    out = []
    for i in range(n):
        key = f"k{i % keys}"
        out.append((key, {"key": key, "seq": seq[key], "i": i}))
        seq[key] += 1
    return out


def produce(
    bootstrap: str,
    topic: str,
    items: Iterable[tuple[str | None, bytes | dict]],  # type: ignore[type-arg]
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> int:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    n = 0
    for key, value in items:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        while True:
            try:
                p.produce(topic, key=None if key is None else key.encode(), value=raw, headers=headers)
                break
            except BufferError:
                p.poll(0.1)
        n += 1
        p.poll(0)
    assert p.flush(60) == 0, "producer could not deliver the test input"
    return n


def read_all(bootstrap: str, topics: Sequence[str], expected: int, timeout: float) -> list[Out]:
    """Read from the start until ``expected`` records arrived (or the time is up), then a little more."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe(list(topics))
    out: list[Out] = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            batch = c.consume(1000, 0.5)
            for m in batch:
                if m.error():
                    continue
                key = m.key()
                out.append(
                    Out(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        None if key is None else key.decode(),
                        m.value(),
                        {k: v or b"" for k, v in m.headers() or []},
                    )
                )
            if len(out) >= expected:
                # Linger briefly so that unexpected extra records (duplicates) are seen too.
                quiet_until = quiet_until or time.monotonic() + 2
                if time.monotonic() >= quiet_until:
                    break
    finally:
        c.close()
    return out


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def wait_committed_to_end(bootstrap: str, group: str, topic: str, partitions: int, timeout: float = 30) -> None:
    ends = end_offsets(bootstrap, topic, partitions)
    deadline = time.monotonic() + timeout
    got: dict[int, int] = {}
    while time.monotonic() < deadline:
        got = committed(bootstrap, group, topic, partitions)
        if got == ends:
            return
        time.sleep(0.5)
    raise AssertionError(f"group {group} committed {got}, partition ends are {ends}")


def check_complete_and_ordered(outputs: Sequence[Out], inputs: Sequence[tuple[str, dict]]) -> int:  # type: ignore[type-arg]
    """Every input is in the output; per key, first appearances keep input order. Returns duplicates."""
    wanted = {(k, v["seq"]) for k, v in inputs}
    seen: set[tuple[str, int]] = set()
    dups = 0
    last_seq: dict[str, int] = {}
    for o in sorted(outputs, key=lambda o: (o.partition, o.offset)):
        v = o.json()
        ident = (v["key"], v["seq"])
        if ident in seen:
            dups += 1
            continue
        seen.add(ident)
        assert o.key == v["key"], f"output key {o.key} differs from the input key {v['key']}"
        prev = last_seq.get(v["key"], -1)
        assert v["seq"] > prev, f"key {v['key']}: seq {v['seq']} came after {prev}"
        last_seq[v["key"]] = v["seq"]
    missing = wanted - seen
    assert not missing, f"{len(missing)} input(s) lost, e.g. {sorted(missing)[:5]}"
    return dups


def python() -> str:
    return sys.executable


class SteadyStream:
    """Produces keyed messages at a steady rate on a thread; ``extra`` values can be slipped in."""

    def __init__(self, bootstrap: str, topic: str, rate: float = 60, keys: int = 24) -> None:
        self.rate, self.keys = rate, keys
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        self.topic = topic
        self.sent: list[tuple[str, int]] = []  # (key, seq) in send order
        self.marked: list[tuple[str, int, str]] = []  # (key, seq, reject_if)
        self._seq: dict[str, int] = defaultdict(int)
        self._mark: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def mark_next(self, n: int, reject_if: str) -> None:
        """The next ``n`` messages ask to be rejected by ``reject_if``."""
        with self._lock:
            self._mark, self._left = reject_if, n

    def _run(self) -> None:
        i = 0
        deadline = time.monotonic() + 300  # bounded even if the test never says stop
        while not self._stop.is_set() and time.monotonic() < deadline:
            key = f"k{i % self.keys}"
            value: dict[str, Any] = {"key": key, "seq": self._seq[key]}
            with self._lock:
                if self._mark is not None:
                    value["reject_if"] = self._mark
                    self.marked.append((key, self._seq[key], self._mark))
                    self._left -= 1
                    if self._left == 0:
                        self._mark = None
            self.producer.produce(self.topic, key=key.encode(), value=orjson.dumps(value))
            self.sent.append((key, self._seq[key]))
            self._seq[key] += 1
            i += 1
            self.producer.poll(0)
            time.sleep(1 / self.rate)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.producer.flush(30) == 0, "the test stream could not be delivered"
