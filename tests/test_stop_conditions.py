"""Stop conditions beside MAX_PAGES (MAX_ITEMS, MAX_DURATION, MAX_ERRORS), the items a
crawl hands back when asked, and stats that read 0 for what never happened.

One worker (CONCURRENCY=1) makes "how many requests went out" exact; MAX_DURATION runs
on the manual clock while the server holds the first page, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from conftest import HANG_GUARD_S, SiteFactory, build_settings, run_spider
from engine_peers import LinkSpider

from crawler import Crawler, Response, Spider
from crawler.testing import ManualClock, SiteServer, html_page

CHAIN = {"a.test": {f"/{n}": html_page(f"P{n}", [f"/{n + 1}"]) for n in range(10)}}


def chain_spider(server: SiteServer) -> LinkSpider:
    return LinkSpider(start_urls=[server.url("a.test", "/0")])


async def test_max_items_stops_gracefully_after_that_many_items(site: SiteFactory) -> None:
    server = await site(CHAIN)
    result, items = await run_spider(chain_spider(server), server, MAX_ITEMS=3, CONCURRENCY=1)
    assert result.finish_reason == "max_items"
    assert len(items) == 3 and result.stats["items"] == 3
    assert server.paths_seen("a.test") == ["/0", "/1", "/2"]


class Failing(Spider):
    """Every page's callback raises after following the next link."""

    name = "failing"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        for request in response.follow_all():
            yield request
        raise ValueError("broken selector")


async def test_max_errors_counts_callback_errors_and_failures(site: SiteFactory) -> None:
    pages = {"a.test": {"/0": html_page("P0", ["/missing", "/1"]), "/1": html_page("P1")}}
    server = await site(pages)
    spider = Failing(start_urls=[server.url("a.test", "/0")])
    result, _ = await run_spider(spider, server, MAX_ERRORS=2, CONCURRENCY=1)
    assert result.finish_reason == "max_errors"
    # /0 raised (1 error), /missing answered 404 and finally failed (2): /1 is never fetched
    assert server.paths_seen("a.test") == ["/0", "/missing"]
    assert result.stats["callback_errors"] == 1
    assert result.stats["failures/http_status"] == 1


async def test_max_duration_stops_on_the_crawl_clock(site: SiteFactory) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow_home(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text=html_page("Home", ["/a", "/b"]), content_type="text/html")

    server = await site({"a.test": {"/": slow_home, "/a": html_page("A"), "/b": html_page("B")}})
    spider = LinkSpider(start_urls=[server.url("a.test")])
    clock = ManualClock()
    crawler = Crawler(
        spider, build_settings(spider, server, MAX_DURATION=30, CONCURRENCY=1), clock=clock
    )
    async with asyncio.timeout(HANG_GUARD_S):
        task = asyncio.create_task(crawler.run())
        await arrived.wait()
        await clock.advance(29)
        assert not task.done()
        await clock.advance(1)
        release.set()  # the page in flight still finishes and reaches its callback
        result = await task
    assert result.finish_reason == "max_duration"
    assert server.paths_seen("a.test") == ["/"]
    assert result.stats["items"] == 1


async def test_result_carries_the_items_when_asked(site: SiteFactory) -> None:
    server = await site(CHAIN)
    spider = chain_spider(server)
    settings = build_settings(spider, server, MAX_PAGES=4)
    result = await Crawler(spider, settings, collect_items=True).run()
    assert [item["title"] for item in result.items] == ["P0", "P1", "P2", "P3"]
    plain = await Crawler(chain_spider(server), settings).run()
    assert plain.items == []


async def test_stats_of_an_empty_crawl_read_zero() -> None:
    result, items = await run_spider(LinkSpider(start_urls=[]), None)
    assert result.finish_reason == "finished" and items == []
    assert result.stats["pages"] == 0
    assert result.stats["failures/timeout"] == 0
    assert "pages" not in result.stats  # reading a missing key does not add it
