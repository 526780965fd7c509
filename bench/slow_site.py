"""The benchmark site of ``site_server.py``, answering every request ``latency`` seconds late.

Run by ``cluster.py --serve-site`` in its own process: a far-away server, so a crawl is
bound by latency, not CPU. It prints the site's port, hosts and start URLs as one JSON
line, serves until its stdin closes, and its ``/__bench/stats`` also gives ``crawl_s``
(first to last page served) and ``peak_per_host`` (the most requests one host saw at once).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any

from site_server import SiteProtocol, SiteShape, SiteState


class _LateTransport:
    """Writes (and closes) ``latency`` seconds after the protocol asks: a far-away server."""

    def __init__(self, transport: asyncio.Transport, latency: float) -> None:
        self._transport = transport
        self._latency = latency
        self._loop = asyncio.get_running_loop()

    def writelines(self, data: Any) -> None:
        self._loop.call_later(self._latency, self._write, list(data))

    def _write(self, data: list[bytes]) -> None:
        if not self._transport.is_closing():
            self._transport.writelines(data)

    def close(self) -> None:
        self._loop.call_later(self._latency, self._transport.close)


class _TimedState(SiteState):
    """SiteState that also reports when the first and the last page were served."""

    def reset(self) -> None:
        super().reset()
        self.first: float | None = None
        self.last: float | None = None
        self.peak: dict[bytes, int] = {}
        self.active: dict[bytes, int] = {}

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(super().stats())
        data["crawl_s"] = (self.last - self.first) if self.first and self.last else 0.0
        data["peak_per_host"] = max(self.peak.values(), default=0)
        return data


class _SlowProtocol(SiteProtocol):
    def __init__(self, state: _TimedState, latency: float) -> None:
        super().__init__(state)
        self.timed = state
        self.latency = latency

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_LateTransport(transport, self.latency))  # type: ignore[arg-type]

    def answer(self, host: bytes, target: bytes) -> list[bytes]:
        answer = super().answer(host, target)
        if (host, target) in self.timed.routes:
            state, now = self.timed, time.monotonic()
            state.first = state.first or now
            state.last = now
            active = state.active[host] = state.active.get(host, 0) + 1
            state.peak[host] = max(state.peak.get(host, 0), active)
            asyncio.get_running_loop().call_later(self.latency, self._done, host)
        return answer

    def _done(self, host: bytes) -> None:
        self.timed.active[host] -= 1


async def serve_site(shape: SiteShape, latency: float) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    state = _TimedState(shape, port)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _SlowProtocol(state, latency), sock=sock)
    info = {"port": port, "hosts": shape.host_names(), "start_urls": shape.start_urls(port)}
    print(json.dumps(info), flush=True)
    async with server:
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
