"""The site of ``frontier_scale.py crawl``: every link a new URL, pages made from the path.

A bare asyncio ``Protocol`` on loopback (``frontier_scale.py serve`` runs it in its own
process): page ``/p/<n>`` links to ``/p/<n*L+1>`` .. ``/p/<n*L+L>`` (``L`` = ``links``),
page ``m`` on host ``h<m % hosts>.scale``; ``/__scale/stats`` gives its counters.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from typing import Any, ClassVar


def host_name(k: int) -> str:
    return f"h{k}.scale"


class ScaleSite(asyncio.Protocol):
    """Keep-alive GETs of /p/<n>, each page rendered from its number; ``/__scale/stats``."""

    counters: ClassVar[dict[str, int]] = {"served": 0, "bytes": 0, "not_found": 0, "wrong_host": 0}
    port = 0
    links = 1000
    hosts = 8

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        transport = self.transport
        assert transport is not None
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            buffer = buffer[end + 4 :]
            line_end = head.find(b"\r\n")
            try:
                _method, target, _version = head[: line_end if line_end >= 0 else None].split(
                    b" ", 2
                )
            except ValueError:
                transport.close()
                return
            lower = head.lower()
            at = lower.find(b"\r\nhost:")
            host = b""
            if at >= 0:
                stop = lower.find(b"\r\n", at + 7)
                host = lower[at + 7 : stop if stop >= 0 else None].strip().split(b":", 1)[0]
            transport.write(self.answer(host, target))
        self.buffer = buffer

    @classmethod
    def answer(cls, host: bytes, target: bytes) -> bytes:
        counters = cls.counters
        if target.startswith(b"/p/") and target[3:].isdigit():
            n = int(target[3:])
            if host != host_name(n % cls.hosts).encode():
                counters["wrong_host"] += 1
                return _response(404, b"wrong host", "text/plain")
            body = cls.page(n)
            counters["served"] += 1
            counters["bytes"] += len(body)
            return _response(200, body, "text/html; charset=utf-8")
        if target == b"/__scale/stats":
            return _response(200, json.dumps(counters).encode(), "application/json")
        counters["not_found"] += 1
        return _response(404, b"not found", "text/plain")

    @classmethod
    def page(cls, n: int) -> bytes:
        port, hosts, first = cls.port, cls.hosts, n * cls.links + 1
        items = "".join(
            f'<li><a href="http://h{m % hosts}.scale:{port}/p/{m}">{m}</a></li>\n'
            for m in range(first, first + cls.links)
        )
        return (
            f"<!DOCTYPE html>\n<html><head><title>Page {n}</title></head>"
            f"<body><h1>Page {n}</h1><ul>\n{items}</ul></body></html>\n"
        ).encode()


def _response(status: int, body: bytes, content_type: str) -> bytes:
    reason = "OK" if status == 200 else "Not Found"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body


async def serve(links: int, hosts: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    ScaleSite.port = sock.getsockname()[1]
    ScaleSite.links, ScaleSite.hosts = links, hosts
    loop = asyncio.get_running_loop()
    server = await loop.create_server(ScaleSite, sock=sock, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"port": ScaleSite.port}), flush=True)
    async with server:
        await stop.wait()


def site_stats(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /__scale/stats HTTP/1.1\r\nHost: h0.scale\r\n\r\n")
        data = b""
        while b"}" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])
