"""The benchmark's input: keyed JSON values of a chosen size, preloaded or produced at a fixed rate.

A value is ``{"id": <int>, "ts": <ms>, "amount": ..., "currency": ..., "features": [floats]}``: the
``id`` lets the harness find lost and duplicated messages, ``ts`` is the input's CreateTime (set on
the record too), so an output carries the time its input was stamped, and the list of floats pads
the value to its size the way a feature vector would (parsing cost grows with the value, as it
would for real). ``id`` and ``ts`` come first so that the reader of the outputs can take them from
the first bytes (see :func:`streampod.bench.measure.head`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import orjson
from confluent_kafka import Producer

KEYS: Final = 10_000
# A fixed seed: every run and every variant sees the same bytes.
_SEED: Final = 6


def _tail(size: int) -> bytes:
    """The bytes after ``"ts":<ms>`` that make a value of about ``size`` bytes."""
    rng = random.Random(_SEED)
    head = b'{"id":1000000,"ts":1763800000000'
    features: list[float] = []
    while True:
        tail = orjson.dumps({"amount": 12.5, "currency": "EUR", "features": features})
        # Replace the opening brace: the tail continues the object that the head opened.
        tail = b"," + tail[1:]
        if len(head) + len(tail) >= size:
            return tail
        features.append(round(rng.random(), 4))


@dataclass(frozen=True)
class Values:
    """Builds the keys and values of one size; cheap enough to produce a million in seconds."""

    size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tail_bytes", _tail(self.size))

    def key(self, i: int) -> bytes:
        return b"k%d" % (i % KEYS)

    def value(self, i: int, ts_ms: int) -> bytes:
        tail: bytes = self._tail_bytes  # type: ignore[attr-defined]
        return b'{"id":%d,"ts":%d%s' % (i, ts_ms, tail)


def producer(bootstrap: str, *, linger_ms: int) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
            "log_level": 3,
        }
    )


def _produce(p: Producer, topic: str, key: bytes, value: bytes, ts_ms: int) -> None:
    while True:
        try:
            p.produce(topic, value, key, timestamp=ts_ms)
            return
        except BufferError:
            p.poll(0.05)


def preload(bootstrap: str, topic: str, n: int, size: int, *, first_id: int = 0) -> float:
    """Produce ids first_id..first_id+n-1 as fast as the broker takes them; returns the seconds taken."""
    values = Values(size)
    p = producer(bootstrap, linger_ms=20)
    started = time.monotonic()
    for i in range(first_id, first_id + n):
        ts = time.time_ns() // 1_000_000
        _produce(p, topic, values.key(i), values.value(i, ts), ts)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(120)
    if left:
        raise RuntimeError(f"preloading {topic}: {left} message(s) not delivered after 120 s")
    return time.monotonic() - started


@dataclass
class Paced:
    """What an open-loop producer did."""

    produced: int
    seconds: float
    max_behind_ms: float
    #: CPU seconds the producing process spent (its Python thread and librdkafka's), to show what the
    #: harness took from the cores the variant and the broker share.
    cpu_s: float


#: The open-loop producer wakes at most this often and produces every message due by then. Waking
#: for each message (a poll and a sleep per message) cost 0.46 of a core at 30,000 msgs/s on the
#: 2-core benchmark host, with no variant running: more than streampod's stage needed for the same rate.
TICK_S: Final = 0.001
#: librdkafka's own default: what an upstream producer left at its defaults does. Below it a
#: produce request went out per millisecond, and at 30,000 msgs/s the broker took 0.5 of a core for
#: them instead of 0.2 (docs/benchmark.md); the linger is part of the measured latency, for every variant alike.
OPEN_LOOP_LINGER_MS: Final = 5


def produce_at_rate(
    bootstrap: str,
    topic: str,
    *,
    rate: float,
    seconds: float,
    size: int,
    first_id: int = 0,
    stop: Callable[[], bool] = lambda: False,
) -> Paced:
    """Open loop: message i is due at start + i/rate, whatever the pipeline does.

    Each message carries the time it was actually produced (its CreateTime), so the latency measured
    is the pipeline's own. The producer wakes every ``TICK_S`` and produces what is due, so messages
    come in bursts of up to a millisecond's worth. On a small machine it shares the cores with the
    broker and the variant and may fall behind its schedule at high rates: how far, the rate it
    really produced at and the CPU it took are reported rather than hidden.
    """
    values = Values(size)
    p = producer(bootstrap, linger_ms=OPEN_LOOP_LINGER_MS)
    total = int(rate * seconds)
    cpu_start = time.process_time()
    start = time.monotonic()
    sent = 0
    behind = 0.0
    while sent < total and not stop():
        elapsed = time.monotonic() - start
        due = min(total, int(elapsed * rate) + 1)
        behind = max(behind, elapsed * 1000.0 - sent * 1000.0 / rate)
        while sent < due:
            ts = time.time_ns() // 1_000_000
            i = first_id + sent
            _produce(p, topic, values.key(i), values.value(i, ts), ts)
            sent += 1
        p.poll(0)
        next_due = start + sent / rate
        time.sleep(min(0.005, max(TICK_S, next_due - time.monotonic())))
    left = p.flush(60)
    if left:
        raise RuntimeError(f"open-loop producer: {left} message(s) not delivered after 60 s")
    return Paced(sent, time.monotonic() - start, behind, time.process_time() - cpu_start)
