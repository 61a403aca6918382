"""What the harness measures: CPU and memory of processes, the output topic read back, percentiles."""

from __future__ import annotations

import bisect
import math
import re
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson
import psutil
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient

SAMPLE_INTERVAL_S: Final = 0.2
# A value starts {"id":N,"ts":M (see workload); a framework may write spaces after the separators.
_HEAD: Final = re.compile(rb'\{\s*"id"\s*:\s*(\d+)\s*,\s*"ts"\s*:\s*(\d+)')


def head(value: bytes) -> tuple[int, int]:
    """The id and the input timestamp of an output value, from its first bytes when possible."""
    m = _HEAD.match(value)
    if m is not None:
        return int(m.group(1)), int(m.group(2))
    parsed = orjson.loads(value)
    return int(parsed["id"]), int(parsed["ts"])


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def _cpu_and_rss(procs: Sequence[psutil.Process]) -> tuple[float, int]:
    cpu = 0.0
    rss = 0
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
        except psutil.Error:
            continue  # exited between two samples: its last sample stands
    return cpu, rss


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    broker_cpu: list[float] = field(default_factory=list)
    peak_rss_by_process: dict[str, int] = field(default_factory=dict)
    # Per process: (wall, CPU seconds) pairs, from the first sample that saw it.
    cpu_by_process: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def cpu_between(self, t0: float, t1: float, broker: bool = False) -> float | None:
        """CPU seconds spent between two wall-clock times, interpolated between samples."""
        return _between(self.wall, self.broker_cpu if broker else self.cpu, t0, t1)

    def cpu_between_by_process(self, t0: float, t1: float) -> dict[str, float]:
        """The same, for each of the variant's processes (with its children) apart."""
        out = {}
        for name, pairs in self.cpu_by_process.items():
            cpu = _between([w for w, _ in pairs], [c for _, c in pairs], t0, t1)
            if cpu is not None:
                out[name] = cpu
        return out

    def peak_rss(self) -> int:
        return max(self.rss, default=0)

    def median_rss_between(self, t0: float, t1: float) -> int | None:
        """The median of the RSS samples taken between two wall-clock times: memory at steady state."""
        inside = sorted(r for w, r in zip(self.wall, self.rss, strict=True) if t0 <= w <= t1)
        return inside[len(inside) // 2] if inside else None


def _between(wall: list[float], series: list[float], t0: float, t1: float) -> float | None:
    if len(wall) < 2 or len(series) != len(wall):
        return None
    return _interp(wall, series, t1) - _interp(wall, series, t0)


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    i = bisect.bisect_left(xs, x)
    if i <= 0:
        return ys[0]
    if i >= len(xs):
        return ys[-1]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class Sampler:
    """Samples CPU time and RSS of a variant's processes (and their children), and the broker's CPU."""

    def __init__(self, roots: Callable[[], dict[str, psutil.Process]], broker: psutil.Process | None) -> None:
        self._roots = roots
        self._broker = broker
        self.samples = Samples()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> Sampler:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> Samples:
        self._stop.set()
        self._thread.join(5)
        return self.samples

    def sample_now(self) -> None:
        """One more sample from the caller's thread (just before the processes are stopped)."""
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sample()

    def _sample(self) -> None:
        cpu, rss = 0.0, 0
        by_process: dict[str, tuple[float, int]] = {}
        for name, root in self._roots().items():
            c, r = _cpu_and_rss(_tree(root))
            cpu, rss, by_process[name] = cpu + c, rss + r, (c, r)
        broker = _cpu_and_rss([self._broker])[0] if self._broker is not None else None
        with self._lock:
            s = self.samples
            now = time.time()
            for name, (c, r) in by_process.items():
                s.peak_rss_by_process[name] = max(r, s.peak_rss_by_process.get(name, 0))
                s.cpu_by_process.setdefault(name, []).append((now, c))
            s.wall.append(now)
            s.cpu.append(cpu)
            s.rss.append(rss)
            if broker is not None:
                s.broker_cpu.append(broker)


def broker_process(bootstrap: str) -> psutil.Process | None:
    """The process listening on the broker's port when it runs on this machine, else None."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        return None
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == int(port) and c.pid:
            return psutil.Process(c.pid)
    return None


# --------------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------------


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "streampod-bench-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 52_428_800,
            "log_level": 3,
        }
    )


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = _consumer(bootstrap)
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        c.close()


class Watermarks:
    """Sums the end offsets of a topic, repeatedly, with one client."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._c = _consumer(bootstrap)
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def total(self) -> int:
        return sum(self._c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in self._tps)

    def close(self) -> None:
        self._c.close()


@dataclass
class Outputs:
    """What came out: one entry per output record."""

    ids: array[int]
    ts_in_ms: array[int]
    appended_ms: array[int]
    log_append_time: bool


def read_outputs(bootstrap: str, topic: str, partitions: int, timeout_s: float = 300.0) -> Outputs:
    """Every record of the topic, from the start to the end offsets it has now."""
    ends = end_offsets(bootstrap, topic, partitions)
    out = Outputs(array("q"), array("q"), array("q"), True)
    remaining = {p for p in range(partitions) if ends[p] > 0}
    if not remaining:
        return out
    c = _consumer(bootstrap)
    c.assign([TopicPartition(topic, p, 0) for p in sorted(remaining)])
    deadline = time.monotonic() + timeout_s
    try:
        while remaining and time.monotonic() < deadline:
            for m in c.consume(10_000, 0.5):
                err = m.error()
                if err is not None:
                    continue  # partition EOF; the end offsets decide when a partition is done
                p, off = m.partition(), m.offset()
                if p not in remaining:
                    continue
                if off is not None and off < ends[p]:
                    i, ts = head(m.value() or b"{}")
                    kind, appended = m.timestamp()
                    out.ids.append(i)
                    out.ts_in_ms.append(ts)
                    out.appended_ms.append(appended)
                    out.log_append_time &= kind == TIMESTAMP_LOG_APPEND_TIME
                if off is not None and off + 1 >= ends[p]:
                    remaining.discard(p)
    finally:
        c.close()
    if remaining:
        raise TimeoutError(f"reading {topic}: partitions {sorted(remaining)} not read to their end in {timeout_s} s")
    return out


def count_records(bootstrap: str, topic: str, partitions: int) -> int:
    return sum(end_offsets(bootstrap, topic, partitions))


def wait_group_stable(bootstrap: str, group: str, partitions: int, timeout_s: float) -> bool:
    """True once the group is Stable with every partition assigned (a variant ready to consume)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        except Exception:  # the group does not exist until the first member joins
            time.sleep(0.2)
            continue
        assigned = sum(len(m.assignment.topic_partitions) for m in desc.members if m.assignment is not None)
        if desc.state == ConsumerGroupState.STABLE and assigned >= partitions:
            return True
        time.sleep(0.2)
    return False


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of values sorted ascending."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values) - 1e-9)))
    return float(sorted_values[rank - 1])


#: The percentiles kept of every open-loop point, for the report's latency distribution: dense in the
#: tail, where the variants differ (nearest rank; 100 is the maximum).
SPECTRUM: Final = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)


def spectrum(sorted_values: Sequence[float]) -> list[list[float]]:
    """[percentile, value] at each of ``SPECTRUM``; empty without values."""
    return [[q, v] for q in SPECTRUM if (v := percentile(sorted_values, q)) is not None]


@dataclass
class Counts:
    outputs: int
    distinct: int
    lost: int
    duplicated: int


def count_ids(ids: Sequence[int], first_id: int, n: int) -> Counts:
    """Inputs were ids first_id..first_id+n-1: which came out, which twice, which never."""
    seen = bytearray(n)
    duplicated = 0
    foreign = 0
    for i in ids:
        j = i - first_id
        if not 0 <= j < n:
            foreign += 1
        elif seen[j]:
            duplicated += 1
        else:
            seen[j] = 1
    distinct = n - seen.count(0)
    # An id the harness never produced would be a bug of the variant: count it as duplicated output.
    return Counts(outputs=len(ids), distinct=distinct, lost=n - distinct, duplicated=duplicated + foreign)


def steady_rate(appended_ms: Sequence[int], lo: float = 0.1, hi: float = 0.95) -> tuple[float | None, float, float]:
    """Messages per second between the lo and hi fractions of outputs (warm-up and tail left out).

    Returns (rate, t_lo, t_hi) with the times in seconds since the epoch.
    """
    ts = sorted(appended_ms)
    if len(ts) < 20:
        return None, 0.0, 0.0
    i, j = int(lo * len(ts)), int(hi * len(ts)) - 1
    span_ms = ts[j] - ts[i]
    if span_ms <= 0:
        return None, ts[i] / 1000.0, ts[j] / 1000.0
    return (j - i) / (span_ms / 1000.0), ts[i] / 1000.0, ts[j] / 1000.0
