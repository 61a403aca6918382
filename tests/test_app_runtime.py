"""The app container's runtime in-process: the user's code behind contract v1, outputs in memory."""

from __future__ import annotations

import asyncio
import base64
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from streampod import contract
from streampod.app._process import Placement, _inline
from streampod.app.server import Readiness, create_app, get_forwarder
from streampod.app.service import main as app_main
from streampod.client import ContractClient
from streampod.errors import ConfigError
from streampod.metrics import AppMetrics
from streampod.testing import (
    AppHarness,
    MemoryForwarder,
    asgi_request,
    assert_ok,
    assert_rejected,
    assert_retried,
)

ORDER = {"user": "u1", "amount": 12.5, "currency": "EUR"}


@pytest.fixture
def write_app(tmp_path: Path) -> Callable[[str], Path]:
    count = 0

    def write(source: str) -> Path:
        nonlocal count
        count += 1
        path = tmp_path / f"userapp{count}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture
def harness(write_app: Callable[[str], Path]) -> Iterator[Callable[..., AppHarness]]:
    made: list[AppHarness] = []

    def make(source: str, **kwargs: object) -> AppHarness:
        h = AppHarness(write_app(source), **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def body(*messages: dict[str, object]) -> bytes:
    return orjson.dumps({"messages": list(messages)})


ECHO = """
    from streampod.app import Message

    def process(message: Message):
        return {"got": message.value, "key": message.key}
"""


def test_ok_output_keeps_key_and_headers_and_adds_coordinates(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO)
    source = {"system": "kafka", "topic": "orders", "partition": 3, "offset": 1042, "timestamp": 1763800000000}
    [result] = app.send(
        [{"id": "orders-3-1042", "key": "u1", "value": ORDER, "headers": {"tp": "x"}, "source": source}]
    )
    assert_ok(result)
    [out] = result.outputs
    assert out.id == "orders-3-1042:0"
    assert out.value == {"got": ORDER, "key": "u1"}
    assert out.key == "u1"
    assert out.encoding == "json"
    assert out.headers == {
        "tp": "x",
        "streampod-source": "orders/3/1042@1763800000000",
    }


def test_all_outputs_of_a_batch_go_to_the_writer_in_one_batch(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO)
    results = app.send([{"key": f"k{i}", "value": i} for i in range(5)])
    assert_ok(results)
    assert len(app.forwarder.batches) == 1
    assert [o.value["got"] for o in app.forwarder.batches[0]] == [0, 1, 2, 3, 4]


def test_several_outputs_none_and_output_fields(harness: Callable[..., AppHarness]) -> None:
    app = harness(
        """
        from streampod.app import Output

        def process(message):
            kind = message.value["kind"]
            if kind == "none":
                return None
            if kind == "many":
                return [
                    {"n": 1},
                    Output({"n": 2}, key="other", headers={"h": "v"}, topic="audit"),
                    Output("plain text"),
                    Output(b"\\x00\\x01"),
                    Output(None, key=None),
                ]
            return []
        """
    )
    many, none, empty = app.send(
        [
            {"key": "k", "value": {"kind": "many"}, "headers": {"in": "1"}},
            {"key": "k", "value": {"kind": "none"}},
            {"key": "k", "value": {"kind": "empty"}},
        ]
    )
    assert_ok([many, none, empty])
    assert none.outputs == [] and empty.outputs == []
    first, second, text, raw, tombstone = many.outputs
    assert (first.value, first.key, first.headers["in"]) == ({"n": 1}, "k", "1")
    assert (second.value, second.key, second.topic) == ({"n": 2}, "other", "audit")
    assert "in" not in second.headers and second.headers["h"] == "v"
    assert second.headers["streampod-source"].startswith("harness/0/0@")
    assert (text.value, text.encoding) == ("plain text", "text")
    assert (raw.value, raw.encoding) == (b"\x00\x01", "base64")
    assert (tombstone.value, tombstone.key) == (None, None)
    assert [o.id for o in many.outputs] == ["m0:0", "m0:1", "m0:2", "m0:3", "m0:4"]


def test_reject_retry_and_exceptions_fail_only_their_message(harness: Callable[..., AppHarness]) -> None:
    app = harness(
        """
        from streampod.app import Reject, Retry

        def process(message):
            v = message.value
            if v == "reject":
                raise Reject("cannot ever work")
            if v == "retry":
                raise Retry("model service busy")
            if v == "boom":
                return {"x": 1 / 0}
            if v == "unencodable":
                return {"x": object()}
            return v
        """
    )
    results = app.send([{"value": v} for v in ("ok1", "reject", "retry", "boom", "unencodable", "ok2")])
    ok1, rej, ret, boom, unenc, ok2 = results
    assert_ok([ok1, ok2])
    assert_rejected(rej, contains="cannot ever work")
    assert_retried(ret, contains="model service busy")
    assert_rejected(boom, contains="ZeroDivisionError: division by zero")
    assert_rejected(unenc, contains="TypeError")
    assert [o.value for o in app.forwarder.outputs] == ["ok1", "ok2"]


def test_text_and_base64_values_are_decoded(harness: Callable[..., AppHarness]) -> None:
    app = harness(
        """
        def process(message):
            return {"type": type(message.value).__name__, "value": repr(message.value)}
        """
    )
    as_json, as_text, as_bytes, bad = app.send(
        [
            {"value": '{"a": 1}', "encoding": "text"},
            {"value": "not json", "encoding": "text"},
            {"value": base64.b64encode(b"\xff\x00").decode(), "encoding": "base64"},
            {"value": "!!!", "encoding": "base64"},
        ]
    )
    assert as_json.value["type"] == "dict"
    assert as_text.value == {"type": "str", "value": "'not json'"}
    assert as_bytes.value == {"type": "bytes", "value": repr(b"\xff\x00")}
    assert_rejected(bad, contains="base64")


def test_process_batch_answers_one_entry_per_message(harness: Callable[..., AppHarness]) -> None:
    app = harness(
        """
        from streampod.app import Reject, Retry
        CALLS = []

        def process_batch(messages):
            CALLS.append(len(messages))
            out = []
            for m in messages:
                if m.value == "reject":
                    out.append(Reject("bad row"))
                elif m.value == "retry":
                    out.append(Retry("later"))
                elif m.value == "error":
                    out.append(ValueError("nan in features"))
                else:
                    out.append({"score": m.value * 2})
            return out
        """
    )
    results = app.send([{"value": v} for v in (1, "reject", 2, "retry", "error")])
    assert [r.status for r in results] == ["ok", "reject", "ok", "retry", "reject"]
    assert results[0].value == {"score": 2} and results[2].value == {"score": 4}
    assert results[4].error == "ValueError: nan in features"
    assert app.module.CALLS == [5]  # one call for the whole batch


def test_process_batch_raising_or_miscounting_fails_its_messages(harness: Callable[..., AppHarness]) -> None:
    app = harness(
        """
        from streampod.app import Retry

        def process_batch(messages):
            if messages[0].value == "down":
                raise Retry("GPU busy")
            return [1]
        """
    )
    assert_retried(app.send([{"value": "down"}, {"value": 2}]), contains="GPU busy")
    assert_rejected(app.send([{"value": 1}, {"value": 2}]), contains="got 1 results for 2")


def test_async_process_and_async_setup(harness: Callable[..., AppHarness]) -> None:
    app = harness(
        """
        import asyncio
        MODEL = {}

        async def setup():
            await asyncio.sleep(0)
            MODEL["factor"] = 3

        async def process(message):
            await asyncio.sleep(0)
            return message.value * MODEL["factor"]
        """
    )
    assert [r.value for r in app.send([{"value": 1}, {"value": 2}])] == [3, 6]


def test_setup_with_one_parameter_gets_the_settings(harness: Callable[..., AppHarness], tmp_path: Path) -> None:
    (tmp_path / "factor.txt").write_text("4")
    app = harness(
        """
        from pathlib import Path
        MODEL = {}

        def setup(settings):
            MODEL["factor"] = int(Path(settings.model_path, "factor.txt").read_text())

        def process(message):
            return message.value * MODEL["factor"]
        """,
        model_path=tmp_path,
    )
    assert app.send_one(2).value == 8


def test_input_schema_rejects_naming_the_field(harness: Callable[..., AppHarness]) -> None:
    app = harness(
        """
        INPUT_SCHEMA = {
            "type": "object",
            "required": ["amount"],
            "properties": {"amount": {"type": "number"}, "items": {"type": "array", "items": {"type": "integer"}}},
        }

        def process(message):
            return message.value
        """
    )
    ok, wrong_type, missing, nested = app.send(
        [
            {"value": {"amount": 1}},
            {"value": {"amount": "x"}},
            {"value": {}},
            {"value": {"amount": 1, "items": [1, "two"]}},
        ]
    )
    assert_ok(ok)
    assert_rejected(wrong_type, contains="value.amount: ")
    assert_rejected(missing, contains="'amount' is a required property")
    assert_rejected(nested, contains="value.items[1]: ")


def test_input_schema_file_setting(harness: Callable[..., AppHarness], tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": "object", "properties": {"user": {"type": "string"}}}')
    app = harness(ECHO, input_schema=schema)
    ok, bad = app.send([{"value": {"user": "u1"}}, {"value": {"user": 7}}])
    assert_ok(ok)
    assert_rejected(bad, contains="value.user: 7 is not of type 'string'")


def test_input_model_gives_the_instance_and_readable_reasons(harness: Callable[..., AppHarness]) -> None:
    app = harness(
        """
        from pydantic import BaseModel

        class InputModel(BaseModel):
            user: str
            amount: float

        def process(message):
            assert isinstance(message.value, InputModel)
            return message.value  # a pydantic model is written as JSON
        """
    )
    ok, bad, missing = app.send(
        [
            {"value": {"user": "u1", "amount": "12.5"}},
            {"value": {"user": "u1", "amount": "lots"}},
            {"value": {"amount": 1}},
        ]
    )
    assert ok.value == {"user": "u1", "amount": 12.5}
    assert bad.error == "value.amount: Input should be a valid number, unable to parse string as a number"
    assert "lots" not in (bad.error or "")  # reasons never carry the payload
    assert missing.error == "value.user: Field required"


def test_writer_per_output_answers_decide_the_inputs(harness: Callable[..., AppHarness]) -> None:
    answers = {"m0:1": ("retry", "queue full"), "m1:0": ("reject", "topic not allowed"), "m2:0": ("ok", None)}
    forwarder = MemoryForwarder(decide=lambda out: answers.get(out.id, ("ok", None)))
    app = harness("def process(m):\n    return [m.value] * m.value\n", forwarder=forwarder)
    two, one, also_one = app.send([{"value": 2}, {"value": 1}, {"value": 1}])
    assert_retried(two, contains="queue full")
    assert_rejected(one, contains="topic not allowed")
    assert_ok(also_one)


def test_contract_errors_answer_400_with_a_reason(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO)
    cases = {
        b"not json": "malformed batch",
        b'{"items": []}': "messages",
        b'{"messages": [{"id": "a", "value": 1, "encoding": "yaml"}]}': "encoding",
        b'{"messages": [{"id": "a", "headers": {"h": 1}}]}': "headers",
        body({"id": "a", "value": 1}, {"id": "a", "value": 2}): "duplicate id 'a'",
    }
    for raw, reason in cases.items():
        status, reply = app.post(raw)
        assert status == 400, raw
        assert reason in orjson.loads(reply)["error"], (raw, reply)
    assert app.forwarder.batches == []


def test_a_value_the_app_cannot_decode_rejects_that_message_only(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO)
    # JSON that scans (the reader's check) but has no Python value: a number beyond a double.
    raw = b'{"messages": [{"id": "a", "value": 1e400}, {"id": "b", "value": 1}]}'
    status, reply = app.post(raw)
    assert status == 200
    bad, good = orjson.loads(reply)["results"]
    assert bad["status"] == "reject" and "value cannot be decoded" in bad["error"]
    assert good == {"id": "b", "status": "ok"}
    assert [o.value["got"] for o in app.forwarder.outputs] == [1]


def test_bodies_msgspec_cannot_read_are_400_or_that_messages_reject(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO)
    # Invalid UTF-8 or nesting deeper than the stack used to escape the parser as a 500.
    for raw, reason in {
        b'{"messages": [{"id": "\xff", "value": 1}]}': "not UTF-8",
        b'{"messages": [{"id": "a", "value": ' + b"[" * 5000 + b"]" * 5000 + b"}]}": "nested too deeply",
    }.items():
        status, reply = app.post(raw)
        assert status == 400, raw[:40]
        assert reason in orjson.loads(reply)["error"]
    status, reply = app.post(b'{"messages": [{"id": "a", "value": "\xff"}, {"id": "b", "value": 2}]}')
    assert status == 200
    bad, good = orjson.loads(reply)["results"]
    assert bad["status"] == "reject" and "not UTF-8" in bad["error"]
    assert good == {"id": "b", "status": "ok"}
    assert [o.value["got"] for o in app.forwarder.outputs] == [2]


def test_an_empty_batch_is_answered_without_calling_the_writer(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO)
    assert app.post(body()) == (200, b'{"results":[]}')
    assert app.forwarder.batches == []


def test_a_body_over_the_limit_is_413(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO, max_body_bytes=2048)
    huge = body({"id": "a", "value": "x" * 5000})
    status, reply = app.post(huge)
    assert status == 413 and b"limit of 2048 bytes" in reply
    # Without Content-Length (chunked), the limit holds as the body arrives.
    chunks = [huge[i : i + 1000] for i in range(0, len(huge), 1000)]
    status, _, reply = app._runner.run(asgi_request(app.app, "POST", contract.MESSAGES_PATH, chunks))
    assert status == 413
    assert app.post(body({"id": "a", "value": "x" * 100}))[0] == 200


def test_writer_unavailable_is_503_and_failed_is_502(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO)
    app.forwarder.unavailable("connection refused")
    status, reply = app.post(body({"id": "a", "value": 1}))
    assert status == 503 and b"connection refused" in reply
    app.forwarder.failing("writer answered 500: broken")
    status, reply = app.post(body({"id": "a", "value": 1}))
    assert status == 502 and b"broken" in reply
    app.forwarder.recover()
    assert_ok(app.send([{"value": 1}]))


def test_a_batch_without_outputs_does_not_need_the_writer(harness: Callable[..., AppHarness]) -> None:
    app = harness("def process(m):\n    return None\n")
    app.forwarder.unavailable()
    assert_ok(app.send([{"value": 1}]))


def test_writer_413_splits_the_forward_batch(harness: Callable[..., AppHarness]) -> None:
    app = harness("def process(m):\n    return [m.value] * m.value\n", forwarder=MemoryForwarder(max_batch=2))
    results = app.send([{"value": 1}, {"value": 1}, {"value": 1}, {"value": 3}, {"value": 1}])
    # Input 3 has three outputs; the halves that still hold them get split down to single outputs.
    assert_ok(results)
    assert [o.value for o in app.forwarder.outputs] == [1, 1, 1, 3, 3, 3, 1]
    assert all(len(b) <= 2 for b in app.forwarder.batches)


def test_a_lone_output_too_large_rejects_its_input(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO, forwarder=MemoryForwarder(max_batch=0))
    assert_rejected(app.send([{"value": 1}]), contains="too large")


def test_forwarder_is_swapped_with_dependency_overrides(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO)
    other = MemoryForwarder()
    app.app.dependency_overrides[get_forwarder] = lambda: other
    app.post(body({"id": "a", "value": 1}))
    assert len(other.outputs) == 1 and app.forwarder.outputs == []


def test_sync_user_code_leaves_the_loop_free(harness: Callable[..., AppHarness]) -> None:
    app = harness("import time\n\ndef process(m):\n    time.sleep(0.5)\n    return m.value\n")

    async def both() -> float:
        probe_at = 0.0
        started = time.monotonic()

        async def probe() -> None:
            nonlocal probe_at
            await asyncio.sleep(0.05)
            # Any await on the loop stands for /healthz: it runs while process() sleeps in its thread.
            probe_at = time.monotonic() - started

        await asyncio.gather(
            asgi_request(app.app, "POST", contract.MESSAGES_PATH, body({"id": "a", "value": 1})), probe()
        )
        return probe_at

    assert app._runner.run(both()) < 0.4


def test_placement_moves_quick_code_inline_and_slow_code_back_with_a_longer_streak() -> None:
    p = Placement(limit_s=0.02)
    for _ in range(Placement.FIRST_STREAK - 1):
        p.record(inline=False, cpu_s=0.001, wall_s=0.5)  # a long wall in the thread is GIL waits: ignored
    assert not p.inline
    p.record(inline=False, cpu_s=0.015, wall_s=0.015)  # over half the limit: the streak starts again
    for _ in range(Placement.FIRST_STREAK):
        assert not p.inline
        p.record(inline=False, cpu_s=0.009, wall_s=0.01)
    assert p.inline
    p.record(inline=True, cpu_s=0.001, wall_s=0.019, blocked=True)
    for _ in range(3):  # only preempted: the host was busy, not the code
        p.record(inline=True, cpu_s=0.002, wall_s=0.08, blocked=False)
    assert p.inline
    p.record(inline=True, cpu_s=0.001, wall_s=0.021, blocked=True)  # waited too long once: maybe the host
    p.record(inline=True, cpu_s=0.001, wall_s=0.001, blocked=False)
    p.record(inline=True, cpu_s=0.001, wall_s=0.021, blocked=True)
    assert p.inline
    p.record(inline=True, cpu_s=0.001, wall_s=0.05, blocked=True)  # twice in a row: the code waits
    assert not p.inline and p.streak == 2 * Placement.FIRST_STREAK
    for _ in range(2 * Placement.FIRST_STREAK):
        assert not p.inline
        p.record(inline=False, cpu_s=0.001, wall_s=0.001)
    assert p.inline
    p.record(inline=True, cpu_s=0.021, wall_s=0.021, blocked=False)  # held the loop too long computing
    assert p.inline
    p.record(inline=True, cpu_s=0.03, wall_s=0.03, blocked=False)
    assert not p.inline and p.streak == 4 * Placement.FIRST_STREAK
    for _ in range(20):
        p.inline = True
        p.record(inline=True, cpu_s=0.0, wall_s=1.0)
        p.record(inline=True, cpu_s=0.0, wall_s=1.0)
    assert p.streak == Placement.MAX_STREAK


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread context-switch counts are Linux's")
def test_an_inline_batch_that_waits_is_told_from_one_that_only_computes() -> None:
    def spin(_: object) -> None:
        end = time.thread_time() + 0.005
        while time.thread_time() < end:
            pass

    cpu_s, wall_s, blocked = _inline(spin, None)  # type: ignore[arg-type]
    assert cpu_s >= 0.005 and not blocked
    cpu_s, wall_s, blocked = _inline(lambda _: time.sleep(0.01), None)  # type: ignore[arg-type]
    assert wall_s >= 0.01 and cpu_s < 0.005 and blocked


THREADS = """
    import threading, time

    seen = []

    def process(m):
        seen.append(threading.get_ident())
        time.sleep(m.value)
        return {"v": m.value}
"""


def test_quick_sync_code_runs_on_the_loop_and_slow_code_in_a_thread(harness: Callable[..., AppHarness]) -> None:
    loop_thread = threading.get_ident()  # the harness runs its event loop in the test's thread
    app = harness(THREADS, app_inline_ms=40)
    seen = app.module.seen
    n = Placement.FIRST_STREAK
    for _ in range(n + 1):
        assert_ok(app.send_one(0.0))
    assert loop_thread not in seen[:n] and seen[n] == loop_thread
    assert_ok(app.send_one(0.1))  # inline, and it held the loop 100 ms: once may be the host
    assert_ok(app.send_one(0.1))  # twice in a row: the next batches go to a thread
    assert_ok(app.send_one(0.0))
    assert seen[-3] == seen[-2] == loop_thread and seen[-1] != loop_thread
    assert app.app.state.placement.streak == 2 * n

    for settings in ({"app_inline_ms": 0}, {"app_concurrency": 2}):
        other = harness(THREADS, **settings)
        for _ in range(n + 2):
            assert_ok(other.send_one(0.0))
        assert other.app.state.placement is None and loop_thread not in other.module.seen
    # Async code runs on the loop already: nothing to place.
    assert harness("async def process(m):\n    return m.value\n").app.state.placement is None


def test_sync_code_that_runs_its_own_loop_keeps_working_on_the_loop_thread(
    harness: Callable[..., AppHarness],
) -> None:
    app = harness(
        "import asyncio\n\nasync def double(v):\n    return 2 * v\n\n"
        "def process(m):\n    return {'v': asyncio.run(double(m.value))}\n",
        app_inline_ms=200,
    )
    for i in range(Placement.FIRST_STREAK + 2):
        assert app.send_one(i).outputs[0].value == {"v": 2 * i}
    assert app.app.state.placement.inline


def test_loader_forms_and_startup_errors(
    write_app: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streampod.app._loader import load_user_app

    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(
        textwrap.dedent(
            """
            class Scorer:
                def setup(self):
                    self.k = 2

                def process(self, m):
                    return m.value * self.k

            def double(m):
                return m.value * 2
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        with AppHarness("mypkg.model:Scorer") as scorer:  # a class: instantiated, its setup() run
            assert scorer.send_one(4).value == 8
        assert load_user_app("mypkg.model:double").process is not None
        with pytest.raises(ConfigError, match="neither process"):
            load_user_app("mypkg")
        with pytest.raises(ConfigError, match="no module named 'nope'"):
            load_user_app("nope")
        with pytest.raises(ConfigError, match="no attribute 'missing'"):
            load_user_app("mypkg.model:missing")
        with pytest.raises(ConfigError, match="no file"):
            load_user_app(str(tmp_path / "absent.py"))
        with pytest.raises(ConfigError, match="INPUT_SCHEMA: not a valid JSON Schema"):
            load_user_app(str(write_app("INPUT_SCHEMA = {'type': 7}\ndef process(m):\n    pass\n")))
        with pytest.raises(ZeroDivisionError):
            load_user_app(str(write_app("1 / 0\n")))
    finally:
        for name in ("mypkg", "mypkg.model"):
            sys.modules.pop(name, None)


def test_service_exits_2_on_bad_settings_or_unknown_module(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMPOD_APP_PORT", "not-a-port")
    assert app_main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "STREAMPOD_APP_PORT" in err[0]
    monkeypatch.delenv("STREAMPOD_APP_PORT")
    assert app_main(["--app", "no_such_module_here"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no module named 'no_such_module_here'" in err[0]


def test_readiness_needs_setup_and_a_reachable_writer(harness: Callable[..., AppHarness]) -> None:
    app = harness(ECHO)
    readiness = Readiness(app.user, app.forwarder)
    assert readiness() == (False, "output writer not checked yet")
    app._runner.run(readiness.refresh())
    assert readiness() == (True, "ready")
    app.forwarder.reachable = False
    app._runner.run(readiness.refresh())
    assert readiness()[0] is False
    app.user.setup_done = False
    assert readiness() == (False, "the app's setup() has not finished")


# --- the real HttpForwarder against a small aiohttp output writer -------------------------------------


class FakeWriter:
    def __init__(self) -> None:
        self.status = 200
        self.max_batch: int | None = None
        self.batches: list[list[dict[str, object]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        messages = orjson.loads(await request.read())["messages"]
        if self.status != 200:
            return web.Response(status=self.status, text="writer says no")
        if self.max_batch is not None and len(messages) > self.max_batch:
            return web.Response(status=413)
        self.batches.append(messages)
        return web.Response(
            body=orjson.dumps({"results": [{"id": m["id"], "status": "ok"} for m in messages]}),
            content_type="application/json",
        )


@pytest.fixture
async def fake_writer() -> AsyncIterator[tuple[FakeWriter, str]]:
    writer = FakeWriter()
    server = web.Application()
    server.router.add_post(contract.MESSAGES_PATH, writer.handle)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield writer, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_http_forwarder_statuses(write_app: Callable[[str], Path], fake_writer: tuple[FakeWriter, str]) -> None:
    from streampod.app._forward import HttpForwarder
    from streampod.app._loader import load_user_app
    from streampod.settings import AppSettings

    writer, url = fake_writer
    user = load_user_app(str(write_app("def process(m):\n    return [m.value] * 2\n")))
    await user.run_setup()
    async with ContractClient(url, timeout_s=5) as client:
        port = int(url.rsplit(":", 1)[1])
        forwarder = HttpForwarder(client, "127.0.0.1", port)
        app = create_app(user, settings=AppSettings.model_construct(), forwarder=forwarder, metrics=AppMetrics())
        batch = body(*({"id": f"i{n}", "key": "k", "value": {"n": n}} for n in range(3)))

        async def post() -> tuple[int, dict[str, object]]:
            status, _, reply = await asgi_request(app, "POST", contract.MESSAGES_PATH, batch)
            return status, orjson.loads(reply)

        status, reply = await post()
        assert status == 200 and {r["status"] for r in reply["results"]} == {"ok"}
        assert [m["id"] for m in writer.batches[0]] == ["i0:0", "i0:1", "i1:0", "i1:1", "i2:0", "i2:1"]
        assert writer.batches[0][0]["value"] == {"n": 0}
        assert writer.batches[0][0]["headers"] == {"streampod-source-id": "i0"}

        writer.batches.clear()
        writer.max_batch = 2
        status, reply = await post()
        assert status == 200 and [len(b) for b in writer.batches] == [1, 2, 1, 2]
        writer.max_batch = None

        writer.status = 500
        status, reply = await post()
        assert status == 502 and "writer says no" in str(reply["error"])
        writer.status = 503
        assert (await post())[0] == 503
        writer.status = 429
        assert (await post())[0] == 503

        await forwarder.check()
        dead = HttpForwarder(client, "127.0.0.1", 1)
        with pytest.raises(Exception, match="unreachable"):
            await dead.check()

    async with ContractClient("http://127.0.0.1:1", timeout_s=5) as client:
        app = create_app(user, settings=AppSettings.model_construct(), forwarder=HttpForwarder(client, "127.0.0.1", 1))
        status, _, reply = await asgi_request(app, "POST", contract.MESSAGES_PATH, batch)
        assert status == 503 and b"cannot reach" in reply
