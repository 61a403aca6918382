"""``streampod run``: one pipeline stage on this machine, as three real processes.

- ``streampod run`` (the demo): starts a local Kafka broker, produces the app template's sample
  messages, runs input reader → app → output writer, prints what arrives on the output topic
  (and the dead-letter topic, with reasons), then stops everything.
- ``streampod run --input file:in.jsonl --output file:out.jsonl``: replays a JSON-lines file
  through the same three processes into a file, with no broker.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import orjson

from streampod.scaffold import templates_root
from streampod.stage import LocalStage

# The plain template as installed (streampod.templates), so the demo runs from a wheel as from a checkout.
TEMPLATE = Path(str(templates_root().joinpath("python")))


class _Interrupted(Exception):
    pass


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="streampod run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--input", default="kafka", help="'kafka' (demo, local broker) or 'file:PATH' (JSON lines)")
    p.add_argument("--output", default="kafka", help="'kafka' (demo) or 'file:PATH'")
    p.add_argument("--app", default=str(TEMPLATE / "app.py"), help="the app: a .py file or module[:attr]")
    p.add_argument(
        "--samples",
        type=Path,
        default=TEMPLATE / "samples.jsonl",
        help="demo: the JSON-lines messages to produce",
    )
    p.add_argument("--repeat", type=int, default=1, help="demo: produce the samples this many times")
    p.add_argument("--partitions", type=int, default=4, help="demo: partitions of the input topic")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    p.add_argument("--workdir", type=Path, default=None, help="where the processes' logs go")
    args = p.parse_args(argv)
    kinds = (args.input.split(":", 1)[0], args.output.split(":", 1)[0])
    if kinds not in (("kafka", "kafka"), ("file", "file")):
        p.error("use --input kafka --output kafka (the demo) or --input file:PATH --output file:PATH")
    return args


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    def raise_(signum: int, _: FrameType | None) -> None:
        raise _Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, raise_) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="streampod-run-"))
    print(f"streampod: logs of the three processes in {workdir}")
    try:
        with _interruptible():
            if args.input.startswith("file:"):
                return replay(args, workdir)
            return demo(args, workdir)
    except _Interrupted as exc:
        print(f"\nstreampod: stopped ({exc})")
        return 130


def replay(args: argparse.Namespace, workdir: Path) -> int:
    src = Path(args.input.split(":", 1)[1]).resolve()
    dst = Path(args.output.split(":", 1)[1]).resolve()
    if not src.is_file():
        print(f"streampod: no such input file: {src}", file=sys.stderr)
        return 2
    dead = dead_letter_file(dst)
    stage = file_stage(workdir, args.app, src, dst)
    try:
        stage.start(may_finish=("input-reader",))
        code = stage["input-reader"].wait(args.timeout)
        if code is None:
            print(f"streampod: replay did not finish within {args.timeout} s", file=sys.stderr)
            return 1
    finally:
        codes = stage.stop()
    outputs = _count_lines(dst)
    dead_count = _count_lines(dead)
    print(f"streampod: replayed {src.name}: {outputs} output(s) in {dst}, {dead_count} dead letter(s) in {dead}")
    if any(c not in (0, None) for c in codes.values()):
        print(f"streampod: a process failed: {codes}\n{stage.logs()}", file=sys.stderr)
        return 1
    return 0


def dead_letter_file(output: Path) -> Path:
    """Where a replay into ``output`` writes its dead letters."""
    return output.with_name(output.name + ".deadletter.jsonl")


def file_stage(workdir: Path, app: str, src: Path, dst: Path, *, app_env: dict[str, str] | None = None) -> LocalStage:
    """The three processes replaying ``src`` into ``dst`` (both files emptied first), not started yet."""
    dead = dead_letter_file(dst)
    for f in (dst, dead):
        f.unlink(missing_ok=True)
    return LocalStage(
        workdir,
        reader_env={
            "STREAMPOD_INPUT_KIND": "file",
            "STREAMPOD_INPUT_FILE": str(src),
            "STREAMPOD_DEAD_LETTER_FILE": str(dead),
        },
        writer_env={"STREAMPOD_OUTPUT_KIND": "file", "STREAMPOD_OUTPUT_FILE": str(dst)},
        app_env=app_env,
        app_module=app,
    )


def _count_lines(path: Path) -> int:
    return sum(1 for _ in path.open("rb")) if path.exists() else 0


def demo(args: argparse.Namespace, workdir: Path) -> int:
    from confluent_kafka import Consumer

    from streampod.localkafka import LocalKafka, create_topic

    samples = [orjson.loads(line) for line in args.samples.read_bytes().splitlines() if line.strip()]
    expected = len(samples) * args.repeat
    run_id = uuid.uuid4().hex[:6]
    topic_in, topic_out, topic_dlq = f"orders-{run_id}", f"orders-scored-{run_id}", f"orders-{run_id}.dlq"
    print("streampod: starting a local Kafka broker (the first run fetches the Kafka jars, a minute or two) …")
    with LocalKafka(log_dir=workdir / "kafka") as kafka:
        bootstrap = kafka.bootstrap_servers
        print(f"streampod: broker ({kafka.kind}) at {bootstrap}")
        for name, parts in ((topic_in, args.partitions), (topic_out, args.partitions), (topic_dlq, 1)):
            create_topic(bootstrap, name, parts)
        _produce(bootstrap, topic_in, samples * args.repeat)
        print(f"streampod: produced {expected} message(s) to {topic_in}")
        stage = LocalStage(
            workdir,
            reader_env={
                "STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "STREAMPOD_INPUT_TOPICS": topic_in,
                "STREAMPOD_CONSUMER_GROUP": f"demo-{run_id}",
                "STREAMPOD_DEAD_LETTER_TOPIC": topic_dlq,
            },
            writer_env={"STREAMPOD_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "STREAMPOD_OUTPUT_TOPIC": topic_out},
            app_module=args.app,
        )
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"demo-viewer-{run_id}",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([topic_out, topic_dlq])
        try:
            stage.start()
            print("streampod: input-reader → app → output-writer running; output:")
            seen = _show(consumer, topic_dlq, expected, args.timeout)
        finally:
            consumer.close()
            codes = stage.stop()
        print(
            f"streampod: {seen} of {expected} message(s) came out (outputs and dead letters); processes exited {codes}"
        )
        return 0 if seen >= expected and all(c == 0 for c in codes.values()) else 1


def _produce(bootstrap: str, topic: str, samples: list[dict[str, object]]) -> None:
    """Produce the samples; the producer is gone when this returns, so it cannot outlive the broker."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "log_level": 3})
    for s in samples:
        key = s.get("key")
        producer.produce(topic, key=None if key is None else str(key).encode(), value=orjson.dumps(s.get("value")))
    if producer.flush(30):
        raise RuntimeError("the sample messages were not all acknowledged by the local broker within 30 s")


def _show(consumer: object, topic_dlq: str, expected: int, timeout: float) -> int:
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)  # type: ignore[attr-defined]
        if msg is None or msg.error():
            continue
        seen += 1
        key = (msg.key() or b"").decode(errors="replace")
        headers = dict(msg.headers() or [])
        if msg.topic() == topic_dlq:
            reason = headers.get("streampod-error", b"").decode(errors="replace")
            print(f"  dead letter  key={key:<8} reason: {reason}")
        else:
            print(f"  output       key={key:<8} {msg.value().decode(errors='replace')}")
    return seen
