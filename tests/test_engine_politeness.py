"""The engine end to end: per-host concurrency and the download delay on an injected clock.

Every site is a ``SiteServer`` whose host names (a.test, b.test, ...) the
``RESOLVE`` setting points at 127.0.0.1; the assertions read what the server
really received (``server.requests``), the items the crawl produced and the
stats. No test sleeps.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from conftest import HANG_GUARD_S, Collect, SiteFactory, build_settings, run_spider
from engine_peers import LinkSpider

from crawler import Crawler, Spider
from crawler.testing import ManualClock, html_page


async def test_concurrency_per_host_is_never_exceeded(site: SiteFactory) -> None:
    """20 pages on one host, 16 workers, 2 per host: the server sees exactly 2 at once.

    Each handler waits until a second request for its host is in progress, so a
    crawler that sends fewer than 2 at once would hang (and the hang guard fails
    the test); one that sends more shows up in ``max_concurrency``.
    """
    gates = {"a.test": asyncio.Event(), "b.test": asyncio.Event()}
    active = dict.fromkeys(gates, 0)

    def gated(host: str, title: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            active[host] += 1
            try:
                if active[host] >= 2:
                    gates[host].set()
                await gates[host].wait()
                return web.Response(text=html_page(title), content_type="text/html")
            finally:
                active[host] -= 1

        return handler

    pages: dict[str, dict[str, Any]] = {
        host: {f"/p{n}": gated(host, f"{host} {n}") for n in range(20)} for host in gates
    }
    pages["a.test"]["/"] = html_page(
        "home",
        [f"/p{n}" for n in range(20)] + [f"http://b.test:{{port}}/p{n}" for n in range(20)],
    )
    server = await site(pages)
    result, items = await run_spider(
        LinkSpider(start_urls=[server.url("a.test")]),
        server,
        CONCURRENCY=16,
        CONCURRENCY_PER_HOST=2,
    )
    assert len(items) == result.stats["pages"] == 41
    assert server.max_concurrency == {"a.test": 2, "b.test": 2}


class Signalling(Collect):
    """Collects items and lets a test wait until a number of them has arrived."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    async def process_item(self, item: Any, spider: Spider) -> Any:
        self._changed.set()
        return await super().process_item(item, spider)

    async def wait_for(self, count: int) -> None:
        while len(self.items) < count:
            self._changed.clear()
            await self._changed.wait()


async def settle() -> None:
    """Let runnable tasks finish what they can do without I/O or time passing."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_download_delay_uses_the_injected_clock(site: SiteFactory) -> None:
    server = await site({"a.test": {"/": html_page("home", ["/1", "/2"]), "/1": "1", "/2": "2"}})
    clock = ManualClock()
    spider = LinkSpider(start_urls=[server.url("a.test")])
    collect = Signalling()
    settings = build_settings(spider, server, DOWNLOAD_DELAY=5)
    crawler = Crawler(spider, settings, pipelines=[collect], clock=clock)

    async def counts() -> tuple[int, int, int]:
        snapshot = await crawler.frontier.counts()
        return snapshot.queued, snapshot.in_flight, snapshot.done

    async with asyncio.timeout(HANG_GUARD_S):
        crawl = asyncio.create_task(crawler.run())
        await collect.wait_for(1)  # "/" is parsed: /1 and /2 are queued behind the delay
        await settle()
        assert await counts() == (2, 0, 1)
        await clock.advance(4.9)
        assert await counts() == (2, 0, 1)  # nobody could start a request
        await clock.advance(0.1)
        assert await counts() == (1, 1, 1)  # exactly one request started
        await collect.wait_for(2)
        await settle()
        assert await counts() == (1, 0, 2)
        await clock.advance(4.9)
        assert await counts() == (1, 0, 2)
        await clock.advance(0.1)
        result = await crawl
    assert server.paths_seen() == ["a.test/", "a.test/1", "a.test/2"]
    assert result.stats["pages"] == 3
