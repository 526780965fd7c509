"""What the one-process benchmark sites (``hosts.py``, ``scale_site.py``) share: a whole
HTTP/1.1 response in bytes, and serving a ``HeadsProtocol`` until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import Callable

_REASONS = {200: "OK", 404: "Not Found"}


def http_response(status: int, body: bytes, content_type: str, *, close: bool = False) -> bytes:
    """Status line, headers and ``body``, ready to write."""
    connection = "close" if close else "keep-alive"
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    ).encode() + body


async def serve_until_stopped(site: Callable[[int], Callable[[], asyncio.Protocol]]) -> None:
    """Listen on a free port of 127.0.0.1 with ``site(port)``'s protocols, print
    ``{"port": port}`` (the parent waits for that line) and serve until SIGTERM/SIGINT."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(site(port), sock=sock, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"port": port}), flush=True)
    async with server:
        await stop.wait()
