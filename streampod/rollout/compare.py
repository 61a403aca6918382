"""Compare the active colour's real output with the candidate's shadow output.

Outputs are paired by the input they came from: the app runtime stamps every output with the
input's coordinates (``streampod-source``: ``topic/partition/offset@timestamp``), and dead letters
carry them too, so pairing is exact. Outputs of older runtimes, with one header per field, are read
too, so that a candidate pairs with an active colour of an older release. ``--pair-by key`` pairs
the last output per key for apps that do not
use the runtime. The report gives, per colour, how many inputs were answered, dead letters and
latency (p50/p99 from the input's timestamp to the output's broker timestamp), and across colours
the agreement rate (exact, and within numeric tolerances for named fields) with mismatching
examples. Thresholds make the exit code a gate: 0 passed, 3 failed a threshold, 2 bad usage.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson

from streampod.contract import H_ERROR, H_SOURCE, H_SOURCE_ID, H_SOURCE_PREFIX, parse_source_header

EXIT_GATE_FAILED = 3
_EXAMPLES = 10


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One record read from an output or dead-letter topic."""

    pair_key: str | None
    key: str | None
    value: bytes | None
    #: The record's broker timestamp, ms.
    out_ms: int | None
    #: The input's timestamp, ms, from the coordinates header.
    in_ms: int | None
    error: str | None = None


@dataclass
class ColourStats:
    outputs: int = 0
    inputs_answered: int = 0
    dead_letters: int = 0
    error_rate: float = 0.0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None


@dataclass
class Report:
    active: ColourStats
    candidate: ColourStats
    paired: int = 0
    only_active: int = 0
    only_candidate: int = 0
    agreement_exact: float | None = None
    agreement_tolerant: float | None = None
    tolerances: dict[str, float] = field(default_factory=dict)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return float(ordered[rank])


def _stats(outputs: Sequence[OutputRecord], dead: Sequence[OutputRecord]) -> ColourStats:
    answered = {r.pair_key for r in outputs} | {r.pair_key for r in dead}
    latencies = [r.out_ms - r.in_ms for r in outputs if r.out_ms is not None and r.in_ms is not None]
    inputs = len(answered)
    return ColourStats(
        outputs=len(outputs),
        inputs_answered=inputs,
        dead_letters=len(dead),
        error_rate=len({r.pair_key for r in dead}) / inputs if inputs else 0.0,
        latency_p50_ms=percentile(latencies, 50),
        latency_p99_ms=percentile(latencies, 99),
    )


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode(errors="replace")


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dot paths at which two decoded values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(a.keys() | b.keys(), key=str):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".") or "(value)"]


def _within(path: str, a: Any, b: Any, tolerances: Mapping[str, float]) -> bool:
    tol = tolerances.get(path)
    va, vb = _get(a, path), _get(b, path)
    if tol is None or not isinstance(va, int | float) or not isinstance(vb, int | float):
        return False
    return abs(va - vb) <= tol


def compare(
    active: Sequence[OutputRecord],
    candidate: Sequence[OutputRecord],
    *,
    active_dead: Sequence[OutputRecord] = (),
    candidate_dead: Sequence[OutputRecord] = (),
    tolerances: Mapping[str, float] | None = None,
) -> Report:
    tolerances = dict(tolerances or {})
    # The last output per input: a redelivered input (at-least-once) counts once.
    a = {r.pair_key: r for r in active if r.pair_key is not None}
    c = {r.pair_key: r for r in candidate if r.pair_key is not None}
    report = Report(_stats(active, active_dead), _stats(candidate, candidate_dead), tolerances=tolerances)
    common = sorted(a.keys() & c.keys())
    report.paired = len(common)
    report.only_active = len(a.keys() - c.keys())
    report.only_candidate = len(c.keys() - a.keys())
    exact = tolerant = 0
    for k in common:
        va, vc = _decode(a[k].value), _decode(c[k].value)
        diffs = _differences(va, vc)
        if not diffs:
            exact += 1
            tolerant += 1
            continue
        if all(_within(p, va, vc, tolerances) for p in diffs):
            tolerant += 1
            continue
        if len(report.mismatches) < _EXAMPLES:
            report.mismatches.append({"input": k, "fields": diffs, "active": va, "candidate": vc})
    if common:
        report.agreement_exact = exact / len(common)
        report.agreement_tolerant = tolerant / len(common)
    return report


@dataclass(frozen=True)
class Thresholds:
    min_agreement: float | None = None
    max_error_rate: float | None = None
    min_samples: int | None = None


def gate(report: Report, t: Thresholds) -> Report:
    """Record in ``report.failures`` every threshold the candidate misses."""
    if t.min_samples is not None and report.paired < t.min_samples:
        report.failures.append(f"only {report.paired} paired inputs, fewer than the minimum {t.min_samples}")
    if t.min_agreement is not None:
        got = report.agreement_tolerant
        if got is None or got < t.min_agreement:
            report.failures.append(f"agreement {_pct(got)} is below the minimum {_pct(t.min_agreement)}")
    if t.max_error_rate is not None and report.candidate.error_rate > t.max_error_rate:
        report.failures.append(
            f"candidate error rate {_pct(report.candidate.error_rate)} is above the maximum {_pct(t.max_error_rate)}"
        )
    return report


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f} ms"


def _rows(report: Report) -> list[tuple[str, str, str]]:
    a, c = report.active, report.candidate
    return [
        ("inputs answered", str(a.inputs_answered), str(c.inputs_answered)),
        ("outputs", str(a.outputs), str(c.outputs)),
        ("dead letters", str(a.dead_letters), str(c.dead_letters)),
        ("error rate", _pct(a.error_rate), _pct(c.error_rate)),
        ("latency p50", _ms(a.latency_p50_ms), _ms(c.latency_p50_ms)),
        ("latency p99", _ms(a.latency_p99_ms), _ms(c.latency_p99_ms)),
    ]


def as_json(report: Report) -> str:
    doc = asdict(report)
    doc["passed"] = report.passed
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode()


def as_text(report: Report) -> str:
    lines = [f"{'':18}{'active':>14}{'candidate':>14}"]
    lines += [f"{name:18}{a:>14}{c:>14}" for name, a, c in _rows(report)]
    lines += [
        "",
        f"paired inputs: {report.paired} (only active: {report.only_active}, only candidate: {report.only_candidate})",
        f"agreement: exact {_pct(report.agreement_exact)}, within tolerance {_pct(report.agreement_tolerant)}"
        + (f" ({', '.join(f'{k}±{v}' for k, v in report.tolerances.items())})" if report.tolerances else ""),
    ]
    for m in report.mismatches:
        lines.append(f"  mismatch {m['input']}: {', '.join(m['fields'])}: {m['active']!r} vs {m['candidate']!r}")
    lines.append("PASSED" if report.passed else "FAILED: " + "; ".join(report.failures))
    return "\n".join(lines)


def as_markdown(report: Report) -> str:
    lines = ["## Candidate vs active", "", "| | active | candidate |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {a} | {c} |" for name, a, c in _rows(report)]
    lines += [
        "",
        f"**Paired inputs:** {report.paired} (only active: {report.only_active}, only candidate: "
        f"{report.only_candidate})  ",
        f"**Agreement:** exact {_pct(report.agreement_exact)}, within tolerance {_pct(report.agreement_tolerant)}",
        "",
    ]
    if report.mismatches:
        lines += ["| input | fields | active | candidate |", "| --- | --- | --- | --- |"]
        for m in report.mismatches:
            a = orjson.dumps(m["active"], default=str).decode()
            c = orjson.dumps(m["candidate"], default=str).decode()
            lines.append(f"| `{m['input']}` | {', '.join(m['fields'])} | `{a}` | `{c}` |")
        lines.append("")
    verdict = "**Gate: PASSED**" if report.passed else "**Gate: FAILED**: " + "; ".join(report.failures)
    lines.append(verdict)
    return "\n".join(lines) + "\n"


# -- reading the topics ---------------------------------------------------------------------------


def _record(msg: Any, pair_by: str) -> OutputRecord:
    headers = {k: (v or b"").decode(errors="replace") for k, v in (msg.headers() or [])}
    key = msg.key().decode(errors="replace") if msg.key() is not None else None
    ts_type, ts = msg.timestamp()
    source, in_ms = _source(headers)
    return OutputRecord(
        pair_key=source if pair_by == "source" else key,
        key=key,
        value=msg.value(),
        out_ms=ts if ts_type != 0 else None,
        in_ms=in_ms,
        error=headers.get(H_ERROR),
    )


def _source(headers: Mapping[str, str]) -> tuple[str | None, int | None]:
    """(the input's coordinates, its timestamp) from a record's headers, in either format."""
    value = headers.get(H_SOURCE)
    if value is not None:
        return parse_source_header(value)
    ts = headers.get(H_SOURCE_PREFIX + "timestamp", "")
    in_ms = int(ts) if ts.isdigit() else None
    topic, partition, offset = (headers.get(H_SOURCE_PREFIX + f) for f in ("topic", "partition", "offset"))
    if topic and partition and offset:
        return f"{topic}/{partition}/{offset}", in_ms
    return headers.get(H_SOURCE_ID), in_ms


def read_topic(
    config: Mapping[str, Any],
    topic: str,
    *,
    since_ms: int | None,
    max_messages: int | None,
    pair_by: str,
    timeout_s: float = 60.0,
) -> list[OutputRecord]:
    """Read ``topic`` from ``since_ms`` (or its start) up to its end as it is now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({**config, "group.id": f"streampod-compare-{time.time_ns()}", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise SystemExit(f"cannot read topic {topic!r}: {meta.error}")
        parts = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        if since_ms is not None:
            starts = consumer.offsets_for_times([TopicPartition(topic, tp.partition, since_ms) for tp in parts], 10)
            parts = [
                TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else ends[tp.partition])
                for tp in starts
            ]
        else:
            parts = [TopicPartition(topic, tp.partition, OFFSET_BEGINNING) for tp in parts]
        pending = {tp.partition for tp in parts if ends[tp.partition] > 0}
        consumer.assign(parts)
        out: list[OutputRecord] = []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline and (max_messages is None or len(out) < max_messages):
            for msg in consumer.consume(1000, 0.5):
                part, offset = msg.partition(), msg.offset()
                if msg.error() is not None or part not in pending or offset is None:
                    continue
                out.append(_record(msg, pair_by))
                if offset + 1 >= ends[part]:
                    pending.discard(part)
        return out[:max_messages] if max_messages is not None else out
    finally:
        consumer.close()


def _since(args: argparse.Namespace) -> int | None:
    if args.since:
        text = args.since
        return int(text) if text.isdigit() else int(datetime.fromisoformat(text).timestamp() * 1000)
    if args.last:
        return int((time.time() - args.last) * 1000)
    return None


def _tolerances(items: Iterable[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--tolerance wants FIELD=NUMBER, got {item!r}")
        out[name] = float(value)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streampod rollout compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--real", required=True, help="the active colour's output topic")
    p.add_argument("--shadow", required=True, help="the candidate colour's shadow output topic")
    p.add_argument("--real-dead-letter", help="the active colour's dead-letter topic")
    p.add_argument("--shadow-dead-letter", help="the candidate colour's dead-letter topic")
    window = p.add_mutually_exclusive_group()
    window.add_argument("--since", help="window start: ISO-8601 time or epoch milliseconds")
    window.add_argument("--last", type=float, metavar="SECONDS", help="window: the last SECONDS of output")
    p.add_argument("--max-messages", type=int, help="read at most this many records per topic")
    p.add_argument(
        "--pair-by",
        choices=["source", "key"],
        default="source",
        help="pair outputs by the input's coordinates header (exact) or by key",
    )
    p.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="FIELD=ABS",
        help="numeric tolerance for a field (dot path), e.g. score=0.01; repeatable",
    )
    p.add_argument("--min-agreement", type=float, help="fail below this agreement (0..1, within tolerance)")
    p.add_argument("--max-error-rate", type=float, help="fail above this candidate dead-letter rate (0..1)")
    p.add_argument("--min-samples", type=int, help="fail with fewer paired inputs than this")
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text", help="what to print")
    p.add_argument("--json-out", help="also write the JSON report here")
    p.add_argument("--markdown-out", help="also write the Markdown report here")
    p.add_argument(
        "--bootstrap",
        help="Kafka brokers (default: STREAMPOD_KAFKA_BOOTSTRAP_SERVERS and the other STREAMPOD_KAFKA_* settings)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from streampod.errors import ConfigError
    from streampod.settings import KafkaConnection, load

    args = _parser().parse_args(argv)
    try:
        tolerances = _tolerances(args.tolerance)
        overrides = {"kafka_bootstrap_servers": args.bootstrap} if args.bootstrap else {}
        conn = load(KafkaConnection, **overrides)
    except (ConfigError, argparse.ArgumentTypeError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if conn.kafka_bootstrap_servers is None:
        print("no Kafka brokers: pass --bootstrap or set STREAMPOD_KAFKA_BOOTSTRAP_SERVERS", file=sys.stderr)
        return 2
    config = conn.librdkafka_config()
    since = _since(args)

    def read(topic: str | None) -> list[OutputRecord]:
        if not topic:
            return []
        return read_topic(config, topic, since_ms=since, max_messages=args.max_messages, pair_by=args.pair_by)

    report = compare(
        read(args.real),
        read(args.shadow),
        active_dead=read(args.real_dead_letter),
        candidate_dead=read(args.shadow_dead_letter),
        tolerances=tolerances,
    )
    gate(report, Thresholds(args.min_agreement, args.max_error_rate, args.min_samples))
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(as_json(report))
    if args.markdown_out:
        with open(args.markdown_out, "w") as f:
            f.write(as_markdown(report))
    print({"text": as_text, "json": as_json, "markdown": as_markdown}[args.format](report))
    return 0 if report.passed else EXIT_GATE_FAILED
