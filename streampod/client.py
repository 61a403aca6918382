"""The sending side of contract v1: one pooled HTTP/1.1 client per peer, errors as DeliveryError.

The client is ``streampod._http1`` (keep-alive connections, httptools parsing): the request path
between the containers is the one place where an HTTP client's own overhead is paid for every
batch, and aiohttp's (itself markedly lower than httpx's) was a large part of the stage's CPU at
moderate rates (docs/benchmark.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from streampod._http1 import BadReply, Http1Client, Unreachable
from streampod.contract import MESSAGES_PATH, Result, parse_results
from streampod.errors import (
    BatchTooLarge,
    ContractError,
    DeliveryError,
    PeerFailed,
    PeerRejectedBatch,
    PeerUnavailable,
)

_BODY_IN_ERRORS = 300
_JSON = {"Content-Type": "application/json"}


class ContractClient:
    def __init__(self, base_url: str, *, timeout_s: float, max_connections: int = 32) -> None:
        self.base_url = base_url.rstrip("/")
        self._batch_path = urlsplit(self.base_url).path + MESSAGES_PATH
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._http: Http1Client | None = None

    async def __aenter__(self) -> ContractClient:
        self._http = Http1Client(self.base_url, max_connections=self._max_connections)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> Http1Client:
        if self._http is None:
            raise RuntimeError("ContractClient used outside 'async with'")
        return self._http

    async def send_batch(self, body: bytes, ids: Sequence[str]) -> dict[str, Result]:
        """POST a contract v1 batch; the result for every id, or a DeliveryError for the whole batch."""
        status, reply = await self._post(self._batch_path, body, _JSON)
        if status != 200:
            raise batch_error(status, reply)
        try:
            return parse_results(reply, ids)
        except ContractError as exc:
            raise PeerRejectedBatch(f"200 with a reply that breaks the contract: {exc}", status=200) from None

    async def send_single(self, url: str, payload: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST one raw payload (single-message mode); the status and body, or PeerUnavailable."""
        status, reply = await self._post(self._path_of(url), payload, headers)
        if status in (429, 503):
            raise PeerUnavailable(f"peer answered {status}", status=status)
        return status, reply

    def _path_of(self, url: str) -> str:
        parts, base = urlsplit(url), urlsplit(self.base_url)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise ValueError(f"{url!r} is not on this client's peer {self.base_url!r}")
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def _post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self.http.post(path, body, headers)
        except Unreachable as exc:
            # Refused or reset: the peer is down or restarting; the sender waits for it.
            raise PeerUnavailable(f"cannot reach {self.base_url}{path}: {exc}") from None
        except BadReply as exc:
            raise PeerFailed(f"bad reply from {self.base_url}{path}: {exc}") from None
        except TimeoutError:
            raise PeerFailed(f"no answer from {self.base_url}{path} within {self._timeout_s} s") from None


def batch_error(status: int, reply: bytes) -> DeliveryError:
    """The DeliveryError a non-200 status stands for, per contract v1."""
    text = reply[:_BODY_IN_ERRORS].decode(errors="replace")
    if status == 413:
        return BatchTooLarge("batch too large (413)", status=status)
    if status in (429, 503):
        return PeerUnavailable(f"peer answered {status}", status=status)
    if status >= 500:
        return PeerFailed(f"peer answered {status}: {text}", status=status)
    return PeerRejectedBatch(f"peer answered {status}: {text}", status=status)


__all__ = ["ContractClient", "batch_error"]
