"""Hostile peers on loopback: compression bombs, trickling and stalled servers.

Bombs are built once per test session by streaming zeros through each
compressor, so building a 256 MiB bomb costs a fraction of a second and no
memory. The raw servers speak just enough HTTP/1.1 to misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache

BOMB_MIB = 256
_ZEROS = bytes(1024 * 1024)


@cache
def bomb(encoding: str, mib: int = BOMB_MIB) -> bytes:
    """A body in ``encoding`` ("gzip", "deflate", "br", "zstd", "gzip, gzip") decoding to
    ``mib`` MiB of zeros (for "gzip, gzip": the gzip of a gzip bomb)."""
    if encoding == "gzip, gzip":
        return gzip.compress(bomb("gzip", mib), 9)
    if encoding in ("gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
        parts = [compressor.compress(_ZEROS) for _ in range(mib)]
        return b"".join([*parts, compressor.flush()])
    if encoding == "br":
        import brotli

        br = brotli.Compressor(quality=5)
        parts = [br.process(_ZEROS) for _ in range(mib)]
        return b"".join([*parts, br.finish()])
    if encoding == "zstd":
        from backports import zstd

        zs = zstd.ZstdCompressor()
        parts = [zs.compress(_ZEROS) for _ in range(mib)]
        return b"".join([*parts, zs.flush()])
    raise ValueError(encoding)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    """An asyncio TCP server on ``host``:<free port> running ``handler`` per connection.

    ``connections`` counts accepted connections; ``requests`` keeps each
    request head it read (so tests can assert what the crawler sent).
    """

    handler: Handler
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def url(self, path: str = "/") -> str:
        """``http://host:port/path`` of this server."""
        return f"http://{self.host}:{self.port}{path}"


@asynccontextmanager
async def raw_server(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[RawServer]:
    """Start a :class:`RawServer`; on exit stop it and cancel its open connections."""
    peer = RawServer(handler, host)
    server = await asyncio.start_server(peer._serve, host, 0)
    peer._server = server
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        for task in list(peer._tasks):
            task.cancel()
        await asyncio.gather(*peer._tasks, return_exceptions=True)
        await server.wait_closed()


async def trickle_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send a status line and then a header byte every 50 ms, never finishing."""
    writer.write(b"HTTP/1.1 200 OK\r\n")
    await writer.drain()
    while True:
        writer.write(b"X")
        await writer.drain()
        await asyncio.sleep(0.05)


async def trickle_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Complete headers promising 1 MB, then a body byte every 50 ms."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nContent-Type: text/html\r\n\r\n")
    await writer.drain()
    while True:
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)


async def stall_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Complete headers promising 100 bytes, 10 of them, then silence on an open connection."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/html\r\n\r\n")
    writer.write(b"<p>stall  ")
    await writer.drain()
    await reader.read()  # until the crawler gives up and closes
