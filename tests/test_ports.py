"""free_port: outside the kernel's ephemeral range (where outgoing connections take their ports), never repeated."""

from __future__ import annotations

import socket

from streampod import ports


def test_ports_are_outside_the_ephemeral_range_distinct_and_bindable() -> None:
    lo, hi = ports._ephemeral_range()
    got = [ports.free_port() for _ in range(200)]
    assert len(set(got)) == len(got)
    assert all(not lo <= p <= hi for p in got), [p for p in got if lo <= p <= hi]
    with socket.socket() as s:
        s.bind(("127.0.0.1", got[-1]))


def test_a_busy_port_is_skipped(monkeypatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks = iter([taken, taken, 20001])
        monkeypatch.setattr(ports._rng, "randint", lambda a, b: next(picks))
        monkeypatch.setattr(ports, "_handed_out", set())
        assert ports.free_port() == 20001
