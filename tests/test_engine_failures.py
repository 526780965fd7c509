"""The engine end to end: HTTP errors, network errors and the response size cap.

Every site is a ``SiteServer`` whose host names (a.test, b.test, ...) the
``RESOLVE`` setting points at 127.0.0.1; the assertions read what the server
really received (``server.requests``), the items the crawl produced and the
stats. No test sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from conftest import SiteFactory, run_spider
from engine_peers import LinkSpider
from yarl import URL

from crawler import FetchError, HttpError, NetworkError, Request, Response, ResponseTooLarge
from crawler.testing import html_page

# -- HTTP errors, network errors, size limits ------------------------------------------------


class ErrbackSpider(LinkSpider):
    name = "errback"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures: list[BaseException] = []
        self.parsed: list[tuple[str, int]] = []

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        self.parsed.append((URL(response.url).path, response.status))
        async for output in super().parse(response):
            if isinstance(output, Request):
                output.errback = self.on_error
            yield output

    async def start(self) -> AsyncIterator[Request]:
        async for request in super().start():
            request.errback = self.on_error
            yield request

    def on_error(self, failure: FetchError) -> dict[str, Any]:
        self.failures.append(failure)
        return {"failed": failure.url, "kind": failure.kind}


async def test_404_goes_to_the_errback_not_to_parse(site: SiteFactory) -> None:
    server = await site({"a.test": {"/": html_page("home", ["/missing", "/ok"]), "/ok": "ok"}})
    spider = ErrbackSpider(start_urls=[server.url("a.test")])
    result, items = await run_spider(spider, server)

    assert sorted(spider.parsed) == [("/", 200), ("/ok", 200)]
    assert len(spider.failures) == 1
    failure = spider.failures[0]
    assert isinstance(failure, HttpError)
    assert isinstance(failure.response, Response)
    assert failure.response.status == 404
    assert failure.request.url == server.url("a.test", "/missing")  # type: ignore[attr-defined]
    assert {"failed": server.url("a.test", "/missing"), "kind": "http_status"} in items
    assert result.stats["failures/http_status"] == 1
    assert result.stats["status/404"] == 1
    assert result.stats["pages"] == 3


async def test_handle_httpstatus_list_lets_the_status_through(site: SiteFactory) -> None:
    class Handles404(ErrbackSpider):
        handle_httpstatus_list = (404,)

    server = await site({"a.test": {"/": html_page("home", ["/missing"])}})
    spider = Handles404(start_urls=[server.url("a.test")])
    result, _ = await run_spider(spider, server)
    assert sorted(spider.parsed) == [("/", 200), ("/missing", 404)]
    assert spider.failures == []
    assert "failures/http_status" not in result.stats


async def test_handle_httpstatus_list_in_meta(site: SiteFactory) -> None:
    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=410, text="gone")

    class MetaSpider(ErrbackSpider):
        async def start(self) -> AsyncIterator[Request]:
            yield Request(self.base + "/gone", meta={"handle_httpstatus_list": [410]})
            yield Request(self.base + "/gone2", errback=self.on_error)

    server = await site({"a.test": {"/gone": gone, "/gone2": gone}})
    spider = MetaSpider(base=server.url("a.test", ""))
    result, _ = await run_spider(spider, server)
    assert spider.parsed == [("/gone", 410)]
    assert [f.kind for f in spider.failures] == ["http_status"]
    assert result.stats["status/410"] == 2


async def test_connection_refused_is_a_network_failure(
    site: SiteFactory, refused_port: int
) -> None:
    server = await site({"a.test": {"/": html_page("home")}})
    dead = f"http://dead.test:{refused_port}/"
    spider = ErrbackSpider(start_urls=[dead, server.url("a.test")])
    result, items = await run_spider(
        spider,
        server,
        RESOLVE={**server.resolve_map(), "dead.test": "127.0.0.1"},
        RETRY_TIMES=0,  # a retry would wait out a real back-off
    )
    assert [type(f) for f in spider.failures] == [NetworkError]
    assert spider.failures[0].url == dead
    assert dead in str(spider.failures[0])
    assert result.stats["failures/network"] == 1
    assert server.paths_seen() == ["a.test/"]  # the crawl went on
    assert {"failed": dead, "kind": "network"} in items


async def test_max_response_size_is_enforced(site: SiteFactory) -> None:
    big = "x" * 5000

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"y" * 500)
        await response.write_eof()
        return response

    server = await site(
        {
            "a.test": {
                "/": html_page("home", ["/big", "/chunked", "/small"]),
                "/big": html_page("big", body=big),
                "/chunked": streamed,
                "/small": html_page("small"),
            }
        }
    )
    spider = ErrbackSpider(start_urls=[server.url("a.test")])
    result, items = await run_spider(spider, server, MAX_RESPONSE_SIZE=1000)
    assert sorted(spider.parsed) == [("/", 200), ("/small", 200)]
    assert len(items) == 4  # two pages, two errback items
    assert sorted(URL(f.url).path for f in spider.failures) == ["/big", "/chunked"]
    assert all(isinstance(f, ResponseTooLarge) for f in spider.failures)
    assert result.stats["failures/too_large"] == 2
    assert "MAX_RESPONSE_SIZE=1000" in str(spider.failures[0])


async def test_max_response_size_zero_means_unlimited(site: SiteFactory) -> None:
    server = await site({"a.test": {"/": html_page("big", body="x" * 100_000)}})
    result, items = await run_spider(
        LinkSpider(start_urls=[server.url("a.test")]), server, MAX_RESPONSE_SIZE=0
    )
    assert len(items) == 1
    assert result.stats["bytes"] > 100_000
