"""A real redis-server for the Redis frontier tests, started on a free loopback port.

``RedisServer(folder)`` runs ``redis-server`` in ``folder`` and is ready once it
answers PING. No persistence by default; ``persist=True`` (or ``"aof"``) turns on the
append-only file with ``appendfsync always``, ``persist="rdb"`` RDB snapshots only
(``save 3600 1``: one is written when the server stops). ``stop()`` / ``start()``
restart it on the same port with the same files (a server without persistence comes
back empty), to test workers riding out a Redis restart; ``flushdb()`` empties it.

When the binary is missing the tests are skipped with the reason, unless the
environment variable CI is set: then they fail, so CI can never pass without them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

__all__ = ["RedisServer", "free_port", "redis_binary", "running_redis"]


def redis_binary() -> str:
    """Path of redis-server; skips the test (fails it under CI) when it is not installed."""
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if path is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set: the Redis frontier must be tested")
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A loopback TCP port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process in ``folder`` on 127.0.0.1:``port``."""

    def __init__(self, folder: Path, *, persist: bool | str = False) -> None:
        self.binary = redis_binary()
        self.folder = folder
        self.persist = persist
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start the server (again, on the same port and files) and wait for its PING."""
        snapshots = "3600 1" if self.persist == "rdb" else ""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", snapshots]
        args += ["--dir", str(self.folder), "--daemonize", "no", "--loglevel", "warning"]
        if self.persist in (True, "aof"):
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = aioredis.Redis.from_url(self.url, retry=None)  # fail fast while it starts
        try:
            for _ in range(500):
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited: see {self.folder / 'redis.log'}")
                try:
                    if await client.ping():
                        return
                except (aioredis.ConnectionError, aioredis.ResponseError):
                    await asyncio.sleep(0.01)
            raise RuntimeError("redis-server did not answer PING within 5 s")
        finally:
            await client.aclose()

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: it writes its files first) and wait for it to exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        for _ in range(500):
            if process.poll() is not None:
                return
            await asyncio.sleep(0.01)
        process.kill()
        process.wait()

    async def flushdb(self) -> None:
        """Empty the database (FLUSHDB), as an operator's mistake would."""
        client = aioredis.Redis.from_url(self.url, retry=None)
        try:
            await client.flushdb()
        finally:
            await client.aclose()

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@contextmanager
def running_redis(folder: Path) -> Iterator[RedisServer]:
    """A RedisServer started (and stopped) outside any event loop: for module fixtures."""
    server = RedisServer(folder)
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())
