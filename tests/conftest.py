"""Shared fixtures: local multi-host sites on loopback and a one-call crawl runner."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest

from crawler import Crawler, CrawlResult, Settings, Spider
from crawler.testing import Page, SiteServer

# Only trips when a test hangs (a bug); no test waits for it to pass.
HANG_GUARD_S = 20.0

SiteFactory = Callable[[Mapping[str, Mapping[str, Page]]], Awaitable[SiteServer]]


class Collect:
    """The smallest item pipeline: keeps every item in a list, in order."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def process_item(self, item: Any, spider: Spider) -> Any:
        self.items.append(item)
        return item


# Engine tests count every request the server sees; robots.txt has tests of its own.
_TEST_DEFAULTS = {"PROGRESS_INTERVAL": 0, "ROBOTSTXT_OBEY": False}


def build_settings(spider: Spider, server: SiteServer | None, **settings: Any) -> Settings:
    """The spider's settings, then the test's: RESOLVE points the site's hosts at ``server``.

    Defaults for tests: no progress lines, robots.txt not fetched (pass ``ROBOTSTXT_OBEY=True``
    to test it).
    """
    names = set(Settings.names())
    values: dict[str, Any] = {k: v for k, v in _TEST_DEFAULTS.items() if k in names}
    if server is not None:
        values["RESOLVE"] = server.resolve_map()
    values.update(settings)
    return Settings.build(("spider settings", spider.settings), ("test", values))


async def run_spider(
    spider: Spider, server: SiteServer | None, **settings: Any
) -> tuple[CrawlResult, list[Any]]:
    """Crawl with ``spider`` against ``server``; return the result and the items, in order."""
    collect = Collect()
    crawler = Crawler(spider, build_settings(spider, server, **settings), pipelines=[collect])
    async with asyncio.timeout(HANG_GUARD_S):
        result = await crawler.run()
    return result, collect.items


def _fill_port(page: Page, port: int) -> Page:
    if isinstance(page, str):
        return page.replace("{port}", str(port))
    if isinstance(page, bytes):
        return page.replace(b"{port}", str(port).encode())
    return page


@pytest.fixture
async def site() -> AsyncIterator[SiteFactory]:
    """``await site(pages)`` starts a SiteServer; ``{port}`` in str/bytes pages becomes its port.

    ``pages`` maps host -> path -> page (HTML text, bytes or an aiohttp handler).
    Every server started is closed after the test.
    """
    servers: list[SiteServer] = []

    async def start(pages: Mapping[str, Mapping[str, Page]]) -> SiteServer:
        server = SiteServer({})
        await server.__aenter__()
        servers.append(server)
        for host, host_pages in pages.items():
            server.pages[host] = {
                path: _fill_port(page, server.port) for path, page in host_pages.items()
            }
        return server

    yield start
    for server in reversed(servers):
        await server.__aexit__(None, None, None)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
