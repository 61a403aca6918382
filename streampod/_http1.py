"""A small HTTP/1.1 client for one peer: pooled keep-alive connections, replies parsed by httptools.

Why not aiohttp: between the containers of a pod every batch is one POST to one fixed peer, and at
the rates where batches are small (a few hundred messages a second and up, a request every
``STREAMPOD_BATCH_WAIT_MS``) the client's own Python per request was a large share of the stage's
CPU. aiohttp's client spent about 300-400 µs of CPU per request here (timeouts, tracing, cookies,
redirects, URL and header objects), this one about 60 (docs/benchmark.md). It does only what the
contract needs: ``POST`` with a body, the status and the whole reply back, connections kept alive
and reused, a bound on how many are open, a deadline per request, plain ``http`` or ``https``.
Parsing stays with httptools (llhttp, the parser uvicorn uses).

Errors:

- ``Unreachable`` (an ``OSError``): no connection could be made, or it broke before a whole reply
  came. A request on a reused connection that the peer had already closed is sent once more on a
  new connection first (an idle keep-alive connection closed by the peer is routine).
- ``BadReply``: the peer answered something that is not HTTP/1.1, or a reply over ``max_reply_bytes``.
- ``TimeoutError``: no whole reply within the deadline (the connection is dropped).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import httptools

#: Replies are results (about 40 bytes per message) or an error text: far below this.
MAX_REPLY_BYTES = 64 * 1024 * 1024


class Unreachable(OSError):
    """No connection to the peer, or the connection broke before a whole reply."""


class BadReply(Exception):
    """The peer's reply is not HTTP/1.1, or is larger than ``max_reply_bytes``."""


class _Connection(asyncio.Protocol):
    """One TCP connection; at most one request on it at a time."""

    def __init__(self, max_reply_bytes: int) -> None:
        self.max_reply_bytes = max_reply_bytes
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.reply: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.size = 0
        #: Bytes of the current reply seen: a reused connection that closes before any was stale.
        self.answered = False
        self.closed = False
        self.keep_alive = True

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadReply(f"malformed HTTP reply: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(Unreachable(f"connection closed by the peer{f': {exc}' if exc else ''}"))

    # -- httptools callbacks --
    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_reply_bytes:
            self._fail(BadReply(f"reply larger than {self.max_reply_bytes} bytes"))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        reply, self.reply = self.reply, None
        body, self.body, self.size = b"".join(self.body), [], 0
        if reply is not None and not reply.done():
            reply.set_result((self.parser.get_status_code(), body))

    # -- used by Http1Client --
    def send(self, head: bytes, body: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.reply = asyncio.get_running_loop().create_future()
        self.answered = False
        self.transport.writelines((head, body))
        return self.reply

    def _fail(self, exc: Exception) -> None:
        reply, self.reply = self.reply, None
        if reply is not None and not reply.done():
            reply.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Client:
    """POST to one peer (``http://host:port`` or ``https://...``) over at most ``max_connections``."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        # https: the system's trust store unless told otherwise.
        self._ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        default_port = self.port == (443 if url.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = (host if default_port else f"{host}:{self.port}").encode("idna")
        self.max_reply_bytes = max_reply_bytes
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """Send ``body`` to ``path``; the status and the whole reply. Raises as the module says."""
        head = self._head(path, len(body), headers)
        async with self._slots:
            conn, reused = await self._connection()
            try:
                try:
                    status, reply = await conn.send(head, body)
                except Unreachable:
                    if not reused or conn.answered:
                        raise
                    # The peer closed an idle connection as the request went out: once more, on a new one.
                    conn = (await self._connection(fresh=True))[0]
                    status, reply = await conn.send(head, body)
            except BaseException:
                conn.close()  # timed out or cancelled mid-reply: the connection's state is unknown
                raise
            if conn.keep_alive and not conn.closed:
                self._idle.append(conn)
            else:
                conn.close()
            return status, reply

    async def _connection(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self.max_reply_bytes),
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            )
        except OSError as exc:
            raise Unreachable(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        return conn, False

    def _head(self, path: str, length: int, headers: Mapping[str, str]) -> bytes:
        lines = [b"POST ", path.encode("ascii"), b" HTTP/1.1\r\nHost: ", self._host_header, b"\r\n"]
        for name, value in headers.items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
                raise ValueError(f"header {name!r} cannot be sent: a line break or ':' in it")
            lines += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        lines.append(b"Content-Length: %d\r\n\r\n" % length)
        return b"".join(lines)

    async def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
