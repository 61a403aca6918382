"""Running the user's code over one batch: decode, validate, call, turn answers into output records.

A sync user function runs for the whole batch in ONE worker-thread hop, so the event loop (and
with it the forwarding of other batches) stays responsive while a model computes, unless its
batches have shown they are quick: then it runs on the event loop itself (``Placement``).
Each message ends as an Outcome: ``ok`` with its output records, or ``reject`` / ``retry`` with a
reason. One message failing never fails the batch.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import orjson
from pydantic import BaseModel

from streampod import contract
from streampod.errors import ContractError

from ._loader import UserApp
from ._message import AS_INPUT, Message, Output, Reject, Retry

log = logging.getLogger(__name__)

if sys.platform == "linux":
    import resource

    def _blocks() -> int | None:
        """How often this thread has blocked so far (waited on I/O, a sleep, a lock)."""
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw

else:  # no per-thread count: every inline batch over the limit counts as blocked

    def _blocks() -> int | None:
        return None


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_PAYLOAD_IN_LOGS = 1000


# msgspec structs rather than dataclasses: built once per output in the hot path, where a struct
# costs half as much, and the batch to the output writer is encoded straight from them.
class OutRecord(msgspec.Struct, gc=False, omit_defaults=True):
    """One output on its way to the output writer, in the shape contract v1 sends it.

    ``value`` is the JSON text for encoding json (``msgspec.Raw``: encoded once, in the worker
    thread, and embedded as it is), a str for text and base64, or None.
    """

    id: str
    key: str | None
    value: msgspec.Raw | str | None
    encoding: contract.Encoding
    headers: dict[str, str]
    topic: str | None = None


class Outcome(msgspec.Struct, gc=False):
    status: contract.Status = "ok"
    error: str | None = None
    outputs: list[OutRecord] = []


_NO_OUTPUT = Outcome()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


class BatchRun:
    """The state of one batch through the user's code: one Outcome per input message."""

    def __init__(
        self, user: UserApp, batch: Sequence[contract.Message | contract.RawMessage], *, log_payloads: bool
    ) -> None:
        self.user = user
        self.batch = batch
        # A message with no answer recorded is ok with no outputs (a shared Outcome, replaced, never mutated).
        self.outcomes = [_NO_OUTPUT] * len(batch)
        self.log_payloads = log_payloads

    def prepare(self) -> list[tuple[int, Message]]:
        """Decode and validate every message; those that fail are answered here, the rest returned."""
        ready = []
        validate = self.user.validate
        for i, m in enumerate(self.batch):
            try:
                value = m.value
                # Inline, the common case of a parsed json value costs no call.
                if m.encoding != "json" or type(value) is msgspec.Raw:
                    value = contract.decode_value(value, m.encoding)
                if validate is not None:
                    value = validate(value)
            except ContractError as exc:
                self._set(i, "reject", str(exc))
                continue
            except Reject as exc:
                self._set(i, "reject", exc.reason)
                continue
            ready.append((i, Message(m.id, m.key, value, m.headers, m.source)))
        return ready

    def fail(self, i: int, exc: BaseException) -> None:
        if isinstance(exc, Reject):
            self._set(i, "reject", exc.reason)
        elif isinstance(exc, Retry):
            self._set(i, "retry", exc.reason)
        else:
            reason = f"{type(exc).__name__}: {exc}"
            self._set(i, "reject", reason)
            m = self.batch[i]
            extra: dict[str, Any] = {"id": m.id, "error": reason}
            if m.source is not None:
                extra.update(topic=m.source.topic, partition=m.source.partition, offset=m.source.offset)
            if self.log_payloads:
                extra["value"] = repr(m.value)[:_PAYLOAD_IN_LOGS]
            log.warning("the app's code raised; message rejected", extra=extra, exc_info=exc)

    def finish(self, i: int, result: Any) -> None:
        """Record what the user's code answered for message ``i``."""
        if isinstance(result, BaseException):
            self.fail(i, result)
            return
        try:
            self.outcomes[i] = Outcome("ok", None, self._records(i, result))
        except Exception as exc:  # an answer that cannot be sent: a value orjson cannot encode, ...
            self.fail(i, exc)

    def finish_batch(self, ready: list[tuple[int, Message]], results: Any) -> None:
        if not isinstance(results, (list, tuple)) or len(results) != len(ready):
            got = f"{len(results)} results" if isinstance(results, (list, tuple)) else type(results).__name__
            err = TypeError(f"process_batch must return a list of one entry per message: got {got} for {len(ready)}")
            for i, _ in ready:
                self.fail(i, err)
            return
        for (i, _), result in zip(ready, results, strict=True):
            self.finish(i, result)

    def _set(self, i: int, status: contract.Status, error: str) -> None:
        self.outcomes[i] = Outcome(status, error)

    def _records(self, i: int, result: Any) -> list[OutRecord]:
        if result is None:
            return []
        m = self.batch[i]
        if type(result) is dict:  # the common case, one JSON output: no checks to make
            return [OutRecord(m.id + ":0", m.key, _json(result), "json", _trace_headers(m))]
        items = result if isinstance(result, (list, tuple)) else (result,)
        base = _trace_headers(m)
        return [self._record(m, f"{m.id}:{n}", item, base) for n, item in enumerate(items)]

    @staticmethod
    def _record(m: contract.Message | contract.RawMessage, out_id: str, item: Any, base: dict[str, str]) -> OutRecord:
        if not isinstance(item, Output):
            # The common case, a bare value: the input's key and headers (already checked by the contract).
            value, encoding = _encode(item, None)
            return OutRecord(out_id, m.key, value, encoding, base)
        key = m.key if item.key is AS_INPUT else item.key
        if key is not None and not isinstance(key, str):
            raise TypeError(f"Output key must be a str or None, not {type(key).__name__}")
        if item.topic is not None and not isinstance(item.topic, str):
            raise TypeError(f"Output topic must be a str or None, not {type(item.topic).__name__}")
        headers = base
        if item.headers is not None:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in item.headers.items()):
                raise TypeError("Output headers must map str to str")
            headers = _trace_headers(m, item.headers)
        value, encoding = _encode(item.value, item.encoding)
        return OutRecord(out_id, key, value, encoding, headers, item.topic)


def _trace_headers(m: contract.Message | contract.RawMessage, headers: dict[str, str] | None = None) -> dict[str, str]:
    """``headers`` (by default the input's) plus the input's coordinates, which win over both."""
    src = m.source
    if src is None:
        out = {contract.H_SOURCE_ID: m.id}
    else:
        # The header every output carries, so that a comparison can pair outputs with their inputs.
        out = {contract.H_SOURCE: contract.source_header(src.topic, src.partition, src.offset, src.timestamp)}
    base = m.headers if headers is None else headers
    return {**base, **out} if base else out


def _json(value: Any) -> msgspec.Raw:
    return msgspec.Raw(orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS))


def _encode(value: Any, encoding: contract.Encoding | None) -> tuple[msgspec.Raw | str | None, contract.Encoding]:
    if encoding is None:
        if isinstance(value, (bytes, bytearray, memoryview)):
            encoding = "base64"
        elif isinstance(value, str):
            encoding = "text"
        else:
            encoding = "json"
    if value is None:
        return None, encoding
    if encoding == "json":
        return _json(value), "json"
    if encoding == "text":
        if not isinstance(value, str):
            raise TypeError(f"an Output with encoding 'text' needs a str value, not {type(value).__name__}")
        return value, "text"
    if encoding == "base64":
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"an Output with encoding 'base64' needs bytes, not {type(value).__name__}")
        return base64.b64encode(value).decode("ascii"), "base64"
    raise ValueError(f"unknown Output encoding {encoding!r}")


def _each_sync(run: BatchRun) -> None:
    fn = run.user.process
    assert fn is not None
    for i, msg in run.prepare():
        try:
            result = fn(msg)
        except Exception as exc:
            run.fail(i, exc)
            continue
        run.finish(i, result)


def _batch_sync(run: BatchRun) -> None:
    fn = run.user.process_batch
    assert fn is not None
    ready = run.prepare()
    if not ready:
        return
    try:
        results = fn([msg for _, msg in ready])
    except Exception as exc:
        for i, _ in ready:
            run.fail(i, exc)
        return
    run.finish_batch(ready, results)


async def _each_async(run: BatchRun) -> None:
    fn = run.user.process
    assert fn is not None
    # One at a time, in order: the user's code may keep state and outputs keep per-key order.
    for i, msg in run.prepare():
        try:
            result = await fn(msg)
        except Exception as exc:
            run.fail(i, exc)
            continue
        run.finish(i, result)


async def _batch_async(run: BatchRun) -> None:
    fn = run.user.process_batch
    assert fn is not None
    ready = run.prepare()
    if not ready:
        return
    try:
        results = await fn([msg for _, msg in ready])
    except Exception as exc:
        for i, _ in ready:
            run.fail(i, exc)
        return
    run.finish_batch(ready, results)


class Placement:
    """Where a sync user function runs: on the event loop while its batches are quick, else in a thread.

    The thread hop keeps the loop free while a model computes, but the loop and the worker then
    share one GIL, and on a busy host every hand-over waits for the OS to schedule the other thread:
    with the benchmark's transform (a few milliseconds of CPU per batch) the stage drained faster
    inline in 22 of 27 alternating pairs and kept more of its cores busy in every pair that recorded
    it (docs/benchmark.md, "What changed after the profile"). So the first batches run in the thread
    and are timed; after ``streak`` of them in a row took under half of ``limit_s`` of CPU, batches
    run inline. An inline batch is slow when it held the loop longer than ``limit_s`` computing (its
    CPU time) or waiting (its wall time, when the thread blocked in the OS: I/O, a sleep, a lock).
    Two slow batches in a row send the next ones to the thread again, and the streak needed to come
    back doubles (up to ``MAX_STREAK``), so code that is quick on CPU but waits on I/O holds the loop
    only rarely. One slow batch alone, or a long wall time only because other processes had the
    cores, does not count: that is the host (a collection, a core taken away), which a thread would
    not have hidden from the loop either (the preempted worker holds the GIL). Counted, a busy
    2-core host sent the benchmark's transform back to the thread every few seconds, each time for
    twice as long (docs/benchmark.md).
    """

    FIRST_STREAK = 8
    MAX_STREAK = 1024

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.inline = False
        self.streak = self.FIRST_STREAK
        self._quick = 0
        self._slow = False

    def record(self, *, inline: bool, cpu_s: float, wall_s: float, blocked: bool = True) -> None:
        """One batch's CPU time in the user's code (its thread's); inline, its wall time and whether it blocked."""
        if inline:
            was_slow = self._slow
            self._slow = cpu_s > self.limit_s or (blocked and wall_s > self.limit_s)
            if was_slow and self._slow:
                self.inline = False
                self._slow = False
                self._quick = 0
                self.streak = min(self.streak * 2, self.MAX_STREAK)
                log.info(
                    "the app's code runs in a worker thread again: two batches in a row held the event loop too long",
                    extra={
                        "batch_ms": round(wall_s * 1000, 1),
                        "cpu_ms": round(cpu_s * 1000, 1),
                        "limit_ms": self.limit_s * 1000,
                    },
                )
            return
        # In the thread the wall clock counts waits for the GIL; its CPU time is what inline would cost.
        self._quick = self._quick + 1 if cpu_s <= self.limit_s / 2 else 0
        if self._quick >= self.streak:
            self.inline = True
            log.info("the app's code runs on the event loop: its batches are quick", extra={"batches": self._quick})


def _timed(body: Callable[[BatchRun], None], run: BatchRun) -> tuple[float, float]:
    """Run ``body``; its thread's CPU time and the wall time it took."""
    cpu, wall = time.thread_time(), time.perf_counter()
    body(run)
    return time.thread_time() - cpu, time.perf_counter() - wall


def _inline(body: Callable[[BatchRun], None], run: BatchRun) -> tuple[float, float, bool]:
    """``_timed`` on the loop's thread, the running loop hidden as it is from a worker thread, and
    whether the thread blocked meanwhile.

    Sync code may start a loop of its own (``asyncio.run`` around an async client): in a worker
    thread that works, and it must go on working when its batches move onto the loop's thread.
    """
    loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    before = _blocks()
    try:
        cpu_s, wall_s = _timed(body, run)
    finally:
        asyncio._set_running_loop(loop)
    after = _blocks()
    return cpu_s, wall_s, before is None or after is None or after > before


async def run_user_code(
    user: UserApp,
    batch: Sequence[contract.Message | contract.RawMessage],
    *,
    log_payloads: bool = False,
    placement: Placement | None = None,
) -> list[Outcome]:
    """One Outcome per message of ``batch``, in order.

    Sync code runs in a worker thread, or on the loop when ``placement`` says its batches are quick.
    """
    run = BatchRun(user, batch, log_payloads=log_payloads)
    if user.is_async:
        await (_batch_async(run) if user.process_batch is not None else _each_async(run))
        return run.outcomes
    body = _batch_sync if user.process_batch is not None else _each_sync
    if placement is None:
        await asyncio.to_thread(body, run)
    elif placement.inline:
        cpu_s, wall_s, blocked = _inline(body, run)
        placement.record(inline=True, cpu_s=cpu_s, wall_s=wall_s, blocked=blocked)
    else:
        cpu_s, wall_s = await asyncio.to_thread(_timed, body, run)
        placement.record(inline=False, cpu_s=cpu_s, wall_s=wall_s)
    return run.outcomes
