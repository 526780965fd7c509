"""The engine end to end: which pages a crawl visits (domains, depth, page budget, start
requests, priority).

Every site is a ``SiteServer`` whose host names (a.test, b.test, ...) the
``RESOLVE`` setting points at 127.0.0.1; the assertions read what the server
really received (``server.requests``), the items the crawl produced and the
stats. No test sleeps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from conftest import SiteFactory, run_spider
from engine_peers import (
    ALLOWED_LINKS,
    ALLOWED_PAGES,
    MULTI_HOST_SITE,
    OFFSITE_LINKS,
    LinkSpider,
    multi_host_spider,
    page_key,
)

from crawler import Request, Response, Spider
from crawler.testing import SiteServer, html_page


@pytest.fixture
async def multi_host(site: SiteFactory) -> SiteServer:
    return await site(MULTI_HOST_SITE)


async def test_every_allowed_page_is_crawled_exactly_once(multi_host: SiteServer) -> None:
    result, items = await run_spider(multi_host_spider(multi_host), multi_host)

    seen = Counter(multi_host.paths_seen())
    assert set(seen) == ALLOWED_PAGES
    assert max(seen.values()) == 1, f"fetched more than once: {+(seen - Counter(set(seen)))}"
    assert Counter(page_key(item["url"]) for item in items) == Counter(ALLOWED_PAGES)
    stats = result.stats
    assert result.finish_reason == "finished"
    assert stats["pages"] == stats["items"] == stats["requests"] == len(ALLOWED_PAGES)
    assert stats["status/200"] == len(ALLOWED_PAGES)
    assert stats["offsite"] == OFFSITE_LINKS
    assert stats["duplicates"] == ALLOWED_LINKS - (len(ALLOWED_PAGES) - 1)
    assert "failures/http_status" not in stats
    titles = {page_key(item["url"]): item["title"] for item in items}
    assert titles["a.test/a2?x=1&y=2"] == "A2 query"
    assert titles["c.test/c4"] == "C4"


async def test_depth_limit_stops_at_the_limit(multi_host: SiteServer) -> None:
    result, items = await run_spider(multi_host_spider(multi_host), multi_host, DEPTH_LIMIT=1)

    depth_one = {"a.test/a1", "a.test/a2", "a.test/a2?x=1&y=2", "b.test/"}
    assert Counter(multi_host.paths_seen()) == Counter({"a.test/", *depth_one})
    assert {page_key(item["url"]): item["depth"] for item in items} == {
        "a.test/": 0,
        **dict.fromkeys(depth_one, 1),
    }
    # every link found on a depth-1 page is one level too deep: a1 6, a2 3, a2?x 2, b/ 5
    assert result.stats["depth_dropped"] == 16


async def test_depth_limit_two(multi_host: SiteServer) -> None:
    _, items = await run_spider(multi_host_spider(multi_host), multi_host, DEPTH_LIMIT=2)
    assert max(item["depth"] for item in items) == 2
    assert "c.test/" in {page_key(item["url"]) for item in items}  # a/ -> a1 -> c/
    assert "c.test/c1" not in set(multi_host.paths_seen())  # depth 3 via a5 or c/


async def test_max_pages_sends_exactly_that_many_requests(multi_host: SiteServer) -> None:
    result, items = await run_spider(
        multi_host_spider(multi_host), multi_host, MAX_PAGES=3, CONCURRENCY=16
    )
    assert len(multi_host.requests) == 3
    assert multi_host.paths_seen()[0] == "a.test/"
    assert len(items) == 3
    assert result.finish_reason == "max_pages"
    assert result.stats["pages"] == 3


async def test_start_urls_are_deduplicated_and_offsite_ones_dropped(site: SiteFactory) -> None:
    server = await site({"a.test": {"/": html_page("A")}, "evil.test": {"/": html_page("E")}})
    spider = LinkSpider(
        start_urls=[server.url("a.test"), server.url("a.test", "/#x"), server.url("evil.test")],
        allowed_domains=["a.test"],
    )
    result, items = await run_spider(spider, server)
    assert server.paths_seen() == ["a.test/"]
    assert len(items) == 1
    assert result.stats["offsite"] == 1
    assert result.stats["duplicates"] == 1


async def test_subdomains_of_allowed_domains_are_allowed(site: SiteFactory) -> None:
    server = await site(
        {
            "a.test": {
                "/": html_page("A", ["http://www.a.test:{port}/", "http://xa.test:{port}/"])
            },
            "www.a.test": {"/": html_page("www")},
            "xa.test": {"/": html_page("not a subdomain of a.test")},
        }
    )
    spider = LinkSpider(start_urls=[server.url("a.test")], allowed_domains=["a.test"])
    result, _ = await run_spider(spider, server)
    assert sorted(server.paths_seen()) == ["a.test/", "www.a.test/"]
    assert result.stats["offsite"] == 1


async def test_spider_kwargs_become_attributes(site: SiteFactory) -> None:
    class Tagged(Spider):
        name = "tagged"

        def parse(self, response: Response) -> dict[str, Any]:
            return {"url": response.url, "category": self.category, "limit": self.limit}

    server = await site({"a.test": {"/books": "b"}, "b.test": {"/books": "b"}})
    spider = Tagged(
        category="books",
        limit="5",
        start_urls=f"{server.url('a.test', '/books')}, {server.url('b.test', '/books')}",
        allowed_domains="a.test",
    )
    assert spider.start_urls == [server.url("a.test", "/books"), server.url("b.test", "/books")]
    assert spider.allowed_domains == ["a.test"]
    result, items = await run_spider(spider, server)
    assert items == [{"url": server.url("a.test", "/books"), "category": "books", "limit": "5"}]
    assert result.stats["offsite"] == 1


async def test_async_start_yields_the_first_requests(site: SiteFactory) -> None:
    class Starter(Spider):
        name = "starter"

        def __init__(self, base: str) -> None:
            super().__init__()
            self.base = base
            self.events: list[str] = []

        async def open(self) -> None:
            self.events.append("open")

        async def close(self, reason: str) -> None:
            self.events.append(f"close:{reason}")

        async def start(self) -> AsyncIterator[Request]:
            for n in range(3):
                yield Request(f"{self.base}/item/{n}", callback=self.item, meta={"n": n})
            yield Request(f"{self.base}/search", method="POST", data=b"q=x", callback=self.search)

        def item(self, response: Response) -> dict[str, Any]:
            return {"n": response.meta["n"], "body": response.text}

        def search(self, response: Response) -> dict[str, Any]:
            return {"search": response.text}

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {(await request.read()).decode()}")

    server = await site(
        {"a.test": {"/item/0": "zero", "/item/1": "one", "/item/2": "two", "/search": echo}}
    )
    spider = Starter(server.url("a.test", ""))
    result, items = await run_spider(spider, server)
    assert sorted(items, key=str) == sorted(
        [
            {"n": 0, "body": "zero"},
            {"n": 1, "body": "one"},
            {"n": 2, "body": "two"},
            {"search": "POST q=x"},
        ],
        key=str,
    )
    assert [r.method for r in server.requests if r.path_qs == "/search"] == ["POST"]
    assert spider.events == ["open", "close:finished"]
    assert result.stats["requests"] == 4


async def test_start_that_raises_keeps_what_it_yielded(site: SiteFactory) -> None:
    class BadStart(LinkSpider):
        async def start(self) -> AsyncIterator[Request]:
            yield Request(self.base + "/")
            raise RuntimeError("start broke")

    server = await site({"a.test": {"/": html_page("home")}})
    result, items = await run_spider(BadStart(base=server.url("a.test", "")), server)
    assert len(items) == 1
    assert result.stats["start_errors"] == 1


async def test_priority_orders_the_crawl(site: SiteFactory) -> None:
    class Prioritised(Spider):
        name = "prio"

        async def start(self) -> AsyncIterator[Request]:
            for n, priority in enumerate([0, 5, -5, 10, 5]):
                yield Request(f"{self.base}/{n}", priority=priority, callback=self.noop)

        def noop(self, response: Response) -> None:
            return None

    server = await site({"a.test": {f"/{n}": str(n) for n in range(5)}})
    await run_spider(Prioritised(base=server.url("a.test", "")), server, CONCURRENCY=1)
    assert server.paths_seen("a.test") == ["/3", "/1", "/4", "/0", "/2"]


async def test_one_bad_start_url_never_drops_the_others(
    site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await site({"a.test": {"/": html_page("A"), "/b": html_page("B")}})
    spider = LinkSpider(
        start_urls=[server.url("a.test"), "no-scheme.test/x", server.url("a.test", "/b")]
    )
    result, items = await run_spider(spider, server)
    assert sorted(server.paths_seen("a.test")) == ["/", "/b"]
    assert len(items) == 2
    assert result.stats["start_errors"] == 1
    [line] = [r for r in caplog.records if "start URL skipped" in r.getMessage()]
    assert "'no-scheme.test/x'" in line.getMessage() and line.exc_info is None
