"""Free TCP ports on 127.0.0.1 for processes that bind them a moment later (local stages, test brokers).

A port from ``bind(("127.0.0.1", 0))`` comes from the kernel's ephemeral range, the same range that
outgoing connections (a Kafka client's, an HTTP client's) take their local ports from, so between the
check and the process's own bind such a port can be taken: a rollout test failed that way with
"address already in use". Ports are therefore picked outside that range, and never twice in one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default ephemeral range, for systems that do not say.
_DEFAULT_EPHEMERAL = (32768, 60999)
# Below this, well-known and registered services tend to listen.
_LOWEST = 10000
_handed_out: set[int] = set()
_rng = random.Random()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return lo, hi


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on now, outside the ephemeral range where there is room for it."""
    lo, hi = _ephemeral_range()
    spans = [(a, b) for a, b in ((_LOWEST, lo - 1), (hi + 1, 65535)) if b - a >= 1000]
    for _ in range(500 if spans else 0):
        a, b = _rng.choice(spans)
        port = _rng.randint(a, b)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    # No room outside the ephemeral range (or all tried ports busy): the kernel's choice.
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def free_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]
