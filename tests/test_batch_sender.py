"""The batch sender joins batches handed over in one event-loop turn into one request (real HTTP, an
aiohttp peer on 127.0.0.1 that answers per contract v1 and records what it was sent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp import web

from streampod.client import ContractClient
from streampod.contract import MESSAGES_PATH
from streampod.errors import PeerFailed
from streampod.input_reader.entries import Entry, make_entry
from streampod.input_reader.senders import BatchSender
from streampod.source import InRecord, PartitionId

Answer = Callable[[list[dict[str, object]]], web.Response]


class Peer:
    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.answer: Answer = lambda msgs: web.json_response(
            {"results": [{"id": m["id"], "status": "reject" if m["value"] == "bad" else "ok"} for m in msgs]}
        )

    async def handle(self, request: web.Request) -> web.Response:
        msgs = orjson.loads(await request.read())["messages"]
        self.requests.append([m["id"] for m in msgs])
        return self.answer(msgs)


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, ContractClient]]:
    p = Peer()
    app = web.Application()
    app.router.add_post(MESSAGES_PATH, p.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with ContractClient(f"http://127.0.0.1:{port}", timeout_s=5) as client:
        yield p, client
    await runner.cleanup()


def entries(partition: int, values: list[str]) -> list[Entry]:
    pid = PartitionId("in", partition)
    return [
        make_entry(InRecord(pid, i, None, orjson.dumps(v)), system="kafka", encoding="json", max_bytes=1000)
        for i, v in enumerate(values)
    ]


async def test_batches_of_one_turn_share_a_request_and_get_their_own_answers(peer: tuple[Peer, ContractClient]) -> None:
    p, client = peer
    sender = BatchSender(client, max_messages=500, max_bytes=1_000_000)
    a, b, c = entries(0, ["x", "bad"]), entries(1, ["y"]), entries(2, ["bad", "z", "w"])
    out = await asyncio.gather(sender.send(a), sender.send(b), sender.send(c))
    assert p.requests == [["in-0-0", "in-0-1", "in-1-0", "in-2-0", "in-2-1", "in-2-2"]]
    assert [[o.status for o in res] for res in out] == [["ok", "reject"], ["ok"], ["reject", "ok", "ok"]]


async def test_batches_are_joined_only_up_to_the_limits_and_never_split(peer: tuple[Peer, ContractClient]) -> None:
    p, client = peer
    sender = BatchSender(client, max_messages=3, max_bytes=1_000_000)
    await asyncio.gather(sender.send(entries(0, ["a", "b"])), sender.send(entries(1, ["c", "d"])))
    assert p.requests == [["in-0-0", "in-0-1"], ["in-1-0", "in-1-1"]]
    # Handed over in different turns: separate requests.
    await sender.send(entries(3, ["e"]))
    await sender.send(entries(4, ["f"]))
    assert p.requests[2:] == [["in-3-0"], ["in-4-0"]]


async def test_a_joined_request_answered_413_is_sent_again_batch_by_batch(peer: tuple[Peer, ContractClient]) -> None:
    p, client = peer
    sender = BatchSender(client, max_messages=500, max_bytes=1_000_000)
    ok = p.answer
    p.answer = lambda msgs: web.Response(status=413) if len(msgs) > 2 else ok(msgs)
    out = await asyncio.gather(sender.send(entries(0, ["a", "b"])), sender.send(entries(1, ["c"])))
    assert p.requests == [["in-0-0", "in-0-1", "in-1-0"], ["in-0-0", "in-0-1"], ["in-1-0"]]
    assert [[o.status for o in res] for res in out] == [["ok", "ok"], ["ok"]]


async def test_a_failed_request_fails_every_batch_in_it(peer: tuple[Peer, ContractClient]) -> None:
    p, client = peer
    sender = BatchSender(client, max_messages=500, max_bytes=1_000_000)
    p.answer = lambda msgs: web.Response(status=500, text="boom")
    out = await asyncio.gather(sender.send(entries(0, ["a"])), sender.send(entries(1, ["b"])), return_exceptions=True)
    assert len(p.requests) == 1
    assert all(isinstance(e, PeerFailed) for e in out), out


async def test_a_batch_cancelled_before_the_request_is_not_sent(peer: tuple[Peer, ContractClient]) -> None:
    p, client = peer
    sender = BatchSender(client, max_messages=500, max_bytes=1_000_000)
    revoked = asyncio.create_task(sender.send(entries(0, ["a"])))
    kept = asyncio.create_task(sender.send(entries(1, ["b"])))
    await asyncio.sleep(0)  # both handed over in this turn; the request goes in the next
    revoked.cancel()
    assert [o.status for o in await kept] == ["ok"]
    assert p.requests == [["in-1-0"]]
