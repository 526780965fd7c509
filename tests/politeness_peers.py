"""Helpers for the politeness tests: a site server that timestamps requests, a link-following
spider that records what it got, and tinyproxy instances with extra configuration (a domain
filter, a marker header).

Timing assertions read the *server's* clock (``time.monotonic()`` when a request arrived),
never the test's wall time, and only as lower bounds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from peers import HANG_GUARD_S

from crawler import Request, Response, Spider
from crawler.errors import FetchError
from crawler.testing import SiteServer

# Timers and the two hops between the frontier and the server's handler can make a measured
# gap a little shorter than the delay that spaced the two requests' starts.
TOLERANCE_S = 0.1  # arrival jitter on a loaded machine; delays are enforced between starts


@dataclass
class TimedSiteServer(SiteServer):
    """A :class:`SiteServer` that also records when each request arrived (its own clock)."""

    arrivals: list[tuple[str, str, float]] = field(default_factory=list)  # host, path_qs, t

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        self.arrivals.append((host, request.path_qs, time.monotonic()))
        return await super()._handle(request)

    def times(self, host: str, robots: bool = False) -> list[float]:
        """Arrival times of the requests to ``host`` (robots.txt only if ``robots``)."""
        return [
            t for h, path, t in self.arrivals if h == host and (path == "/robots.txt") == robots
        ]

    def gaps(self, host: str) -> list[float]:
        """Seconds between consecutive page requests (robots.txt excluded) to ``host``."""
        times = self.times(host)
        return [b - a for a, b in itertools.pairwise(times)]


def status(code: int, text: str = "", headers: dict[str, str] | None = None) -> Any:
    """A handler answering ``code``."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=code, text=text or f"HTTP {code}", headers=headers)

    return handler


def sequence(*pages: Any) -> Any:
    """A handler answering with ``pages[0]``, then ``pages[1]`` ... (the last one repeats)."""
    remaining = list(pages)

    async def handler(request: web.Request) -> web.StreamResponse:
        page = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if callable(page):
            return await page(request)
        if isinstance(page, bytes):
            return web.Response(body=page, content_type="application/octet-stream")
        return web.Response(text=page, content_type="text/html")

    return handler


class Rendezvous:
    """Pages of one host whose requests wait until ``count`` of them are in progress at once.

    Once they have met, every request is answered at once. A crawler that never sends
    ``count`` requests to the host at the same time hangs (the test's guard fails it);
    one that sends more shows up in the server's ``max_concurrency``. No timing involved.
    """

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self.active = 0
        self.met = asyncio.Event()

    def page(self, text: str) -> Any:
        """A handler answering ``text`` as HTML once ``count`` requests have met."""

        async def handler(request: web.Request) -> web.Response:
            self.active += 1
            try:
                if self.active >= self.count:
                    self.met.set()
                await self.met.wait()
                return web.Response(text=text, content_type="text/html")
            finally:
                self.active -= 1

        return handler


class Recorder(Spider):
    """Fetches ``urls`` (and, if ``follow``, every link on the pages); records everything."""

    name = "recorder"

    def __init__(self, urls: Iterable[str | Request], follow: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.urls = list(urls)
        self.follow = follow
        self.responses: list[Response] = []
        self.failures: list[FetchError] = []

    async def start(self) -> AsyncIterator[Request]:
        for url in self.urls:
            if isinstance(url, Request):
                yield url
            else:
                yield Request(url, callback=self.parse, errback=self.failed)

    def parse(self, response: Response) -> Any:
        self.responses.append(response)
        yield {"url": response.url, "status": response.status}
        if self.follow and "html" in response.headers.get("Content-Type", ""):
            yield from response.follow_all(callback=self.parse, errback=self.failed)

    def failed(self, failure: FetchError) -> None:
        self.failures.append(failure)

    @property
    def paths(self) -> list[str]:
        return sorted(r.request.yarl_url.path_qs for r in self.responses)


@asynccontextmanager
async def timed_site(
    pages: Mapping[str, Mapping[str, Any]], host: str = "127.0.0.1"
) -> AsyncIterator[TimedSiteServer]:
    """A running :class:`TimedSiteServer`; ``{port}`` in str pages becomes its port."""
    server = TimedSiteServer({}, host=host)
    async with server:
        for name, host_pages in pages.items():
            server.pages[name] = {
                path: page.replace("{port}", str(server.port)) if isinstance(page, str) else page
                for path, page in host_pages.items()
            }
        yield server


TINYPROXY = shutil.which("tinyproxy") or (
    "/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None
)


@dataclass
class TinyproxyPeer:
    """A running tinyproxy; ``lines`` is its log (it logs each request, and each filtered one)."""

    port: int
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    async def _drain(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace"))


@asynccontextmanager
async def configured_tinyproxy(
    directory: Path, extra: Sequence[str] = ()
) -> AsyncIterator[TinyproxyPeer]:
    """tinyproxy on 127.0.0.1:<free port> with ``extra`` configuration lines (Filter,
    AddHeader ...); ``directory`` must be this proxy's own (its config file goes there)."""
    if TINYPROXY is None:
        if os.environ.get("CI"):
            pytest.fail("tinyproxy is not installed but CI is set: apt-get install tinyproxy")
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy)")
    port = free_port()
    lines = [f"Port {port}", "Listen 127.0.0.1", "Allow 127.0.0.1", "LogLevel Info"]
    conf = _write(directory / "tinyproxy.conf", [*lines, "MaxClients 50", "Timeout 30", *extra])
    process = await asyncio.create_subprocess_exec(
        TINYPROXY, "-d", "-c", str(conf),  # -d: foreground, log to stdout
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    proxy = TinyproxyPeer(port, process)
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            assert process.stdout is not None
            while True:  # ready once it says so
                line = await process.stdout.readline()
                if not line:
                    raise AssertionError("tinyproxy exited:\n" + "".join(proxy.lines))
                proxy.lines.append(line.decode(errors="replace"))
                if b"Accepting connections" in line:
                    break
        drain = asyncio.create_task(proxy._drain())
        yield proxy
    finally:
        if process.returncode is None:
            process.terminate()
        if drain is not None:
            await drain  # ends at EOF, when the process has gone
        await process.wait()


def _write(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def free_port() -> int:
    """A loopback port nobody listens on right now (tinyproxy cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def denying_filter(directory: Path, *hosts: str) -> list[str]:
    """tinyproxy config lines making it answer 403 for ``hosts`` (a domain filter file)."""
    path = _write(directory / "filter", ["^" + h.replace(".", r"\.") + "$" for h in hosts])
    return [f'Filter "{path}"', "FilterType ere", "FilterDefaultDeny No"]
