"""The sending side of contract v1: one pooled aiohttp session per peer, errors as DeliveryError.

aiohttp rather than httpx: at thousands of requests a second the client's own overhead shows, and
aiohttp's is markedly lower (see docs/benchmark.md). Connections are kept alive and reused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aiohttp

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


class ContractClient:
    def __init__(self, base_url: str, *, timeout_s: float, max_connections: int = 32) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ContractClient:
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, raise_for_status=False)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ContractClient used outside 'async with'")
        return self._session

    async def send_batch(self, body: bytes, ids: Sequence[str]) -> dict[str, Result]:
        """POST a contract v1 batch; the result for every id, or a DeliveryError for the whole batch."""
        status, reply = await self._post(self.base_url + MESSAGES_PATH, body, {"Content-Type": "application/json"})
        if status != 200:
            raise batch_error(status, reply)
        try:
            return parse_results(reply, ids)
        except ContractError as exc:
            raise PeerRejectedBatch(f"200 with a reply that breaks the contract: {exc}", status=200) from None

    async def send_single(self, url: str, payload: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST one raw payload (single-message mode); the status and body, or PeerUnavailable."""
        status, reply = await self._post(url, payload, headers)
        if status in (429, 503):
            raise PeerUnavailable(f"peer answered {status}", status=status)
        return status, reply

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            async with self.session.post(url, data=body, headers=headers) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            # Refused or reset: the peer is down or restarting; the sender waits for it.
            raise PeerUnavailable(f"cannot reach {url}: {type(exc).__name__}") from None
        except TimeoutError:
            raise PeerFailed(f"no answer from {url} within {self._timeout.total} s") from None


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
