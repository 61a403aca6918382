"""The contract's HTTP/1.1 client over TLS, against an aiohttp server with a throwaway CA's certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiohttp import web
from tls_support import make_pki

from streampod._http1 import Http1Client, Unreachable


async def test_https_peer_is_verified_and_kept_alive(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.server)
    peers: list[int] = []

    async def echo(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        return web.Response(body=b"tls:" + await request.read())

    app = web.Application()
    app.router.add_post("/v1/messages", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        trusting = Http1Client(
            f"https://127.0.0.1:{port}", max_connections=1, ssl_context=ssl.create_default_context(cafile=pki.ca)
        )
        for n in range(3):
            assert await trusting.post("/v1/messages", b"%d" % n, {}) == (200, b"tls:%d" % n)
        assert len(set(peers)) == 1
        await trusting.close()
        # The system's trust store does not know the throwaway CA: the handshake fails, nothing is sent.
        system = Http1Client(f"https://127.0.0.1:{port}", max_connections=1)
        with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
            await system.post("/v1/messages", b"x", {})
        assert len(peers) == 3
    finally:
        await runner.cleanup()
