"""The contract's HTTP/1.1 client against real servers on 127.0.0.1: aiohttp's, and raw sockets for misbehaviour."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from streampod._http1 import BadReply, Http1Client, Unreachable
from streampod.client import ContractClient
from streampod.errors import PeerFailed, PeerUnavailable


class Server:
    """An aiohttp server that records the client port of every request and answers as ``reply`` says."""

    def __init__(self) -> None:
        self.peers: list[int] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.active = 0
        self.most_active = 0
        self.release = asyncio.Event()
        self.release.set()
        self.reply: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        self.bodies.append(await request.read())
        self.headers.append(dict(request.headers))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await self.release.wait()
        finally:
            self.active -= 1
        if self.reply is not None:
            return await self.reply(request)
        return web.Response(body=b"echo:" + self.bodies[-1], headers={"X-Path": request.path_qs})


async def serve(server: Server, *, keepalive_timeout: float = 75.0) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Server, int]]:
    server = Server()
    runner, port = await serve(server)
    yield server, port
    await runner.cleanup()


async def raw_server(answer: Callable[[int, bytes], bytes | None]) -> tuple[asyncio.Server, int]:
    """A socket server that reads one request head at a time and writes ``answer(n, head)`` (None: close)."""
    count = 0

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = int(next(line for line in lines if line.startswith(b"content-length:"))[15:])
                await reader.readexactly(length)
                count += 1
                out = answer(count, head)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client closed or reset the connection: this peer is done with it
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_post_gets_status_and_whole_reply_and_sends_path_headers_and_body(peer: tuple[Server, int]) -> None:
    server, port = peer
    client = Http1Client(f"http://127.0.0.1:{port}", max_connections=4)
    body = b"x" * 300_000  # more than one write and one read
    status, reply = await client.post("/v1/messages?a=1", body, {"Content-Type": "application/json", "X-K": "v"})
    assert status == 200 and reply == b"echo:" + body
    assert server.headers[0]["Content-Type"] == "application/json" and server.headers[0]["X-K"] == "v"
    assert server.headers[0]["Host"] == f"127.0.0.1:{port}"
    await client.close()


async def test_connections_are_kept_alive_and_reused(peer: tuple[Server, int]) -> None:
    server, port = peer
    client = Http1Client(f"http://127.0.0.1:{port}", max_connections=4)
    for n in range(5):
        assert (await client.post("/", b"%d" % n, {}))[0] == 200
    assert len(set(server.peers)) == 1
    await client.close()


async def test_no_more_connections_than_the_limit_are_open_at_once(peer: tuple[Server, int]) -> None:
    server, port = peer
    client = Http1Client(f"http://127.0.0.1:{port}", max_connections=2)
    server.release.clear()
    posts = [asyncio.create_task(client.post("/", b"%d" % n, {})) for n in range(6)]
    await asyncio.sleep(0.3)
    assert server.active == 2
    server.release.set()
    assert [status for status, _ in await asyncio.gather(*posts)] == [200] * 6
    assert server.most_active == 2 and len(set(server.peers)) == 2
    await client.close()


async def test_an_idle_connection_the_peer_closed_is_not_used_again() -> None:
    server = Server()
    runner, port = await serve(server, keepalive_timeout=0.1)
    client = Http1Client(f"http://127.0.0.1:{port}", max_connections=4)
    assert (await client.post("/", b"1", {}))[0] == 200
    await asyncio.sleep(0.5)  # the server closes the kept-alive connection
    assert (await client.post("/", b"2", {}))[0] == 200
    assert len(set(server.peers)) == 2
    await client.close()
    await runner.cleanup()


async def test_a_request_on_a_reused_connection_closed_unanswered_goes_once_more_on_a_new_one() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    # The first connection answers its first request and closes on the second without a word.
    server, port = await raw_server(lambda n, _: ok if n != 2 else None)
    client = Http1Client(f"http://127.0.0.1:{port}", max_connections=1)
    assert await client.post("/", b"a", {}) == (200, b"ok")
    assert await client.post("/", b"b", {}) == (200, b"ok")
    await client.close()
    server.close()


async def test_a_new_connection_closed_unanswered_is_unreachable_not_retried() -> None:
    server, port = await raw_server(lambda n, _: None)
    client = Http1Client(f"http://127.0.0.1:{port}", max_connections=1)
    with pytest.raises(Unreachable, match="closed by the peer"):
        await client.post("/", b"a", {})
    server.close()


async def test_a_refused_connection_is_unreachable() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    client = Http1Client(f"http://127.0.0.1:{port}", max_connections=1)
    with pytest.raises(Unreachable, match=f"cannot connect to 127.0.0.1:{port}"):
        await client.post("/", b"a", {})


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (b"SMTP ready\r\n\r\n", "malformed HTTP reply"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100, "larger than 64 bytes"),
    ],
)
async def test_a_reply_that_is_not_http_or_too_large_is_a_bad_reply(reply: bytes, why: str) -> None:
    server, port = await raw_server(lambda n, _: reply)
    client = Http1Client(f"http://127.0.0.1:{port}", max_connections=1, max_reply_bytes=64)
    with pytest.raises(BadReply, match=why):
        await client.post("/", b"a", {})
    server.close()


async def test_chunked_replies_and_connection_close_are_understood() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    closing = b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz"
    server, port = await raw_server(lambda n, _: chunked if n == 1 else closing)
    client = Http1Client(f"http://127.0.0.1:{port}", max_connections=1)
    assert await client.post("/", b"a", {}) == (200, b"abcde")
    assert await client.post("/", b"b", {}) == (201, b"z")
    assert not client._idle  # told to close: not kept
    await client.close()
    server.close()


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    client = Http1Client("http://127.0.0.1:9", max_connections=1)
    with pytest.raises(ValueError, match="line break"):
        await client.post("/", b"a", {"X-Evil": "a\r\nInjected: 1"})


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Client("ftp://127.0.0.1:21", max_connections=1)


# --- ContractClient's mapping of the client's errors to DeliveryErrors -----------------------------------


async def test_contract_client_times_out_as_peer_failed_and_drops_the_connection(peer: tuple[Server, int]) -> None:
    server, port = peer
    server.release.clear()
    async with ContractClient(f"http://127.0.0.1:{port}", timeout_s=0.2) as client:
        with pytest.raises(PeerFailed, match=r"no answer .* within 0\.2 s"):
            await client.send_batch(b'{"messages": []}', [])
        assert not client.http._idle
        server.release.set()
        server.reply = None
        status, _ = await client.send_single(f"http://127.0.0.1:{port}/single", b"x", {})
        assert status == 200


async def test_contract_client_maps_refused_to_unavailable_and_garbage_to_failed() -> None:
    server, port = await raw_server(lambda n, _: b"garbage\r\n\r\n")
    async with ContractClient(f"http://127.0.0.1:{port}", timeout_s=5) as client:
        with pytest.raises(PeerFailed, match="bad reply"):
            await client.send_batch(b"{}", [])
    server.close()
    await server.wait_closed()
    async with ContractClient(f"http://127.0.0.1:{port}", timeout_s=5) as client:
        with pytest.raises(PeerUnavailable, match="cannot reach"):
            await client.send_batch(b"{}", [])


async def test_contract_client_sends_single_messages_only_to_its_own_peer(peer: tuple[Server, int]) -> None:
    _, port = peer
    async with ContractClient(f"http://127.0.0.1:{port}", timeout_s=5) as client:
        with pytest.raises(ValueError, match="not on this client's peer"):
            await client.send_single("http://127.0.0.2:80/", b"x", {})
