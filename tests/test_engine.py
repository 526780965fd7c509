"""The engine end to end, against real aiohttp servers on loopback.

Every site is a ``SiteServer`` whose host names (a.test, b.test, ...) the
``RESOLVE`` setting points at 127.0.0.1; the assertions read what the server
really received (``server.requests``), the items the crawl produced and the
stats. No test sleeps: where a test needs requests to overlap, the server
handlers wait on an ``asyncio.Event`` instead.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import attrs
import pydantic
import pytest
from aiohttp import web
from conftest import HANG_GUARD_S, Collect, SiteFactory, build_settings, run_spider
from yarl import URL

from crawler import Crawler, HttpError, Request, Response, Spider
from crawler.errors import CrawlerError, FetchError, NetworkError, ResponseTooLarge
from crawler.testing import ManualClock, SiteServer, html_page


def page_key(url: str) -> str:
    """``host/path?query`` of a URL, the form ``SiteServer.paths_seen()`` uses."""
    parsed = URL(url)
    return f"{parsed.host}{parsed.raw_path_qs}"


def html(body: bytes, content_type: str = "text/html; charset=utf-8") -> Any:
    """A handler answering bytes with an explicit Content-Type (for undecodable pages)."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handler


class LinkSpider(Spider):
    """Yields one item per page and follows every link."""

    name = "links"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        title = response.css_first("title")
        yield {
            "url": response.url,
            "title": title.text() if title is not None else None,
            "depth": response.request.depth,
        }
        for request in response.follow_all():
            yield request


# -- the multi-host site ----------------------------------------------------------------------

# Origins without a trailing slash; the site fixture fills in {port}.
A = "http://a.test:{port}"
B = "http://b.test:{port}"
C = "http://c.test:{port}"
EVIL = "http://evil.test:{port}"

MULTI_HOST_SITE = {
    "a.test": {
        "/": html_page(
            "A home",
            [
                "/a1",
                "/a2",
                "/a1#top",  # fragment variant
                "/a1",  # plain duplicate
                B,  # no trailing slash: the same page as B + "/"
                f"{EVIL}/",  # offsite
                "mailto:someone@a.test",  # not crawlable
                "/a2?x=1&y=2",
            ],
        ),
        "/a1": html_page("A1", ["/a3", "/a2#frag", "/", f"{C}/", "/a2?y=2&x=1#q", f"{B}/"]),
        "/a2": html_page("A2", ["/a4", "http://B.TEST:{port}/b1", "./a1"]),
        "/a2?x=1&y=2": html_page("A2 query", ["/a5", f"{EVIL}/e1"]),
        "/a3": html_page("A3", [f"{B}/b2", f"{A}/a3"]),
        "/a4": html_page("A4"),
        "/a5": html_page("A5", [f"{C}/c1"]),
        "/orphan": html_page("nobody links here"),
    },
    "b.test": {
        "/": html_page("B home", ["/b1", "/b2", "/b3", f"{A}/", f"{EVIL}/"]),
        "/b1": html_page("B1", ["/b4", "#x"]),
        "/b2": html_page("B2", ["/b5", f"{C}/c2"]),
        "/b3": html_page("B3"),
        "/b4": html_page("B4", [f"{A}/a4"]),
        "/b5": html_page("B5"),
    },
    "c.test": {
        "/": html_page("C home", ["/c1", "/c2", "/c3", A]),  # A: no trailing slash
        "/c1": html_page("C1", ["/c4", f"{A}/a5"]),
        "/c2": html_page("C2"),
        "/c3": html_page("C3", ["/c4#x"]),
        "/c4": html_page("C4", [f"{B}/b3"]),
    },
    # Served, so a crawl that wrongly goes offsite is seen here rather than in real DNS.
    "evil.test": {"/": html_page("evil"), "/e1": html_page("evil 1")},
}

ALLOWED_PAGES = {
    "a.test/",
    "a.test/a1",
    "a.test/a2",
    "a.test/a2?x=1&y=2",
    "a.test/a3",
    "a.test/a4",
    "a.test/a5",
    "b.test/",
    "b.test/b1",
    "b.test/b2",
    "b.test/b3",
    "b.test/b4",
    "b.test/b5",
    "c.test/",
    "c.test/c1",
    "c.test/c2",
    "c.test/c3",
    "c.test/c4",
}
# Crawlable links to allowed hosts on the 18 pages above (mailto: and "#x" are not links).
ALLOWED_LINKS = 35
OFFSITE_LINKS = 3


@pytest.fixture
async def multi_host(site: SiteFactory) -> SiteServer:
    return await site(MULTI_HOST_SITE)


def multi_host_spider(server: SiteServer, **kwargs: Any) -> LinkSpider:
    return LinkSpider(
        start_urls=[server.url("a.test")], allowed_domains=["a.test", "b.test", "c.test"], **kwargs
    )


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


# -- callbacks and items ----------------------------------------------------------------------


@dataclass
class DataclassItem:
    url: str


@attrs.define
class AttrsItem:
    url: str


class PydanticItem(pydantic.BaseModel):
    url: str


class CallbackStyles(Spider):
    name = "styles"
    allowed_domains = ("a.test",)

    def __init__(self, base: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = base
        self.called: list[str] = []

    async def start(self) -> AsyncIterator[Request]:
        callbacks = {
            "/async-gen": self.async_gen,
            "/sync-gen": self.sync_gen,
            "/coroutine": self.coroutine_list,
            "/plain-item": self.plain_item,
            "/plain-request": self.plain_request,
            "/plain-none": self.plain_none,
            "/coroutine-item": self.coroutine_item,
        }
        for path, callback in callbacks.items():
            yield Request(self.base + path, callback=callback)

    async def async_gen(self, response: Response) -> AsyncIterator[Any]:
        self.called.append("async_gen")
        yield {"url": response.url, "kind": "dict"}
        yield {"url": response.url + "#2", "kind": "dict"}

    def sync_gen(self, response: Response) -> Iterator[Any]:
        self.called.append("sync_gen")
        yield DataclassItem(response.url)

    async def coroutine_list(self, response: Response) -> list[Any]:
        self.called.append("coroutine_list")
        return [AttrsItem(response.url), None, response.follow("/from-list", callback=self.leaf)]

    def plain_item(self, response: Response) -> Any:
        self.called.append("plain_item")
        return PydanticItem(url=response.url)

    def plain_request(self, response: Response) -> Request:
        self.called.append("plain_request")
        return response.follow("/followed", callback=self.leaf)

    def plain_none(self, response: Response) -> None:
        self.called.append("plain_none")

    async def coroutine_item(self, response: Response) -> Any:
        self.called.append("coroutine_item")
        return {"url": response.url, "kind": "awaited"}

    def leaf(self, response: Response) -> dict[str, str]:
        self.called.append("leaf")
        return {"url": response.url, "kind": "leaf"}


async def test_every_callback_style_and_item_type(site: SiteFactory) -> None:
    paths = [
        "/async-gen",
        "/sync-gen",
        "/coroutine",
        "/plain-item",
        "/plain-request",
        "/plain-none",
        "/coroutine-item",
        "/followed",
        "/from-list",
    ]
    server = await site({"a.test": {path: html_page(path) for path in paths}})
    spider = CallbackStyles(server.url("a.test", ""))
    result, items = await run_spider(spider, server)

    assert sorted(server.paths_seen("a.test")) == sorted(paths)
    assert sorted(spider.called) == sorted(
        [
            "async_gen",
            "sync_gen",
            "coroutine_list",
            "plain_item",
            "plain_request",
            "plain_none",
            "coroutine_item",
            "leaf",
            "leaf",
        ]
    )
    by_type = Counter(type(item).__name__ for item in items)
    assert by_type == {"dict": 5, "DataclassItem": 1, "AttrsItem": 1, "PydanticItem": 1}
    assert {item["kind"] for item in items if isinstance(item, dict)} == {
        "dict",
        "awaited",
        "leaf",
    }
    assert result.stats["items"] == 8
    assert "callback_errors" not in result.stats


class RaisingSpider(Spider):
    name = "raising"

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"url": response.url}
        if response.url.endswith("/boom"):
            yield response.follow("/after-boom")
            raise ValueError("spider bug")
        yield from response.follow_all()


async def test_callback_error_keeps_earlier_outputs_and_the_crawl_goes_on(
    site: SiteFactory,
) -> None:
    server = await site(
        {
            "a.test": {
                "/": html_page("home", ["/boom", "/fine"]),
                "/boom": html_page("boom", ["/never"]),
                "/after-boom": html_page("requested before the error"),
                "/fine": html_page("fine", ["/fine2"]),
                "/fine2": html_page("fine 2"),
                "/never": html_page("never linked by a successful callback"),
            }
        }
    )
    spider = RaisingSpider(start_urls=[server.url("a.test")])
    result, items = await run_spider(spider, server)

    assert sorted(server.paths_seen("a.test")) == ["/", "/after-boom", "/boom", "/fine", "/fine2"]
    assert sorted(URL(item["url"]).path for item in items) == [
        "/",
        "/after-boom",
        "/boom",
        "/fine",
        "/fine2",
    ]
    assert result.stats["callback_errors"] == 1
    assert result.stats["callback_errors/ValueError"] == 1
    assert result.finish_reason == "finished"


async def test_a_callback_yielding_junk_is_a_callback_error(site: SiteFactory) -> None:
    class Junk(Spider):
        name = "junk"

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"ok": 1}
            yield "not an item"  # an error: stops this callback only
            yield {"never": 1}

    server = await site({"a.test": {"/": html_page("x")}})
    result, items = await run_spider(Junk(start_urls=[server.url("a.test")]), server)
    assert items == [{"ok": 1}]
    assert result.stats["callback_errors/CrawlerError"] == 1


async def test_a_spider_without_parse_counts_a_callback_error(site: SiteFactory) -> None:
    server = await site({"a.test": {"/": html_page("x")}})
    result, items = await run_spider(Spider(start_urls=[server.url("a.test")]), server)
    assert items == []
    assert result.stats["callback_errors/CrawlerError"] == 1
    assert result.stats["pages"] == 1


async def test_broken_html_and_undecodable_bytes_still_parse(site: SiteFactory) -> None:
    broken = (
        b"<html><head><title>caf\xe9 \xff\xfe menu</title></head><body>"
        b"<div><p>one<p>two <b>bold <a href='/next'>next</div></table></td> <<>> \x00\x80"
    )
    server = await site(
        {
            "a.test": {
                "/": html(body=broken),
                "/next": html(
                    body=b"\xef\xbb\xbf<title>bom \xc3\xa9</title>", content_type="text/html"
                ),
            }
        }
    )
    result, items = await run_spider(LinkSpider(start_urls=[server.url("a.test")]), server)
    titles = {URL(item["url"]).path: item["title"] for item in items}
    assert titles == {"/": "caf\ufffd \ufffd\ufffd menu", "/next": "bom é"}
    assert "callback_errors" not in result.stats


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


# -- redirects --------------------------------------------------------------------------------


def fill_port(text: str, request: web.Request) -> str:
    """``{port}`` in a handler's output becomes the port the request came to."""
    return text.replace("{port}", str(request.url.port))


def redirect(location: str, status: int = 302) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": fill_port(location, request)})

    return handler


async def test_redirect_records_history_and_the_target_is_not_fetched_again(
    site: SiteFactory,
) -> None:
    server = await site(
        {
            "a.test": {
                "/": html_page("home", ["/old"]),
                "/old": redirect("/new"),
                "/new": html_page("new", ["/next"]),
                "/next": html_page("next", ["/new", "/old"]),  # both already seen
            }
        }
    )

    class HistorySpider(LinkSpider):
        async def parse(self, response: Response) -> AsyncIterator[Any]:
            async for output in super().parse(response):
                if isinstance(output, dict):
                    output["history"] = [(h.url, h.status) for h in response.history]
                    output["redirect_urls"] = response.redirect_urls
                    output["request_url"] = response.request.url
                yield output

    result, items = await run_spider(HistorySpider(start_urls=[server.url("a.test")]), server)
    assert server.paths_seen("a.test") == ["/", "/old", "/new", "/next"]
    redirected = [item for item in items if item["history"]]
    assert len(redirected) == 1
    assert redirected[0]["url"] == server.url("a.test", "/new")
    assert redirected[0]["request_url"] == server.url("a.test", "/old")
    assert redirected[0]["history"] == [(server.url("a.test", "/old"), 302)]
    assert redirected[0]["redirect_urls"] == [
        server.url("a.test", "/old"),
        server.url("a.test", "/new"),
    ]
    assert len(items) == 3
    assert result.stats["redirects/302"] == 1
    assert result.stats["duplicates"] == 2


async def test_a_redirect_to_an_already_queued_page_gives_one_item(site: SiteFactory) -> None:
    server = await site(
        {
            "a.test": {
                "/": html_page("home", ["/r", "/target"]),
                "/r": redirect("/target", 301),
                "/target": html_page("target"),
            }
        }
    )
    result, items = await run_spider(
        LinkSpider(start_urls=[server.url("a.test")]), server, CONCURRENCY=1
    )
    assert [URL(item["url"]).path for item in items].count("/target") == 1
    assert result.stats["duplicates/redirect"] == 1


async def test_a_redirect_to_an_offsite_host_is_not_followed(site: SiteFactory) -> None:
    server = await site(
        {
            "a.test": {"/": html_page("home", ["/away"]), "/away": redirect(f"{EVIL}/")},
            "evil.test": {"/": html_page("evil")},
        }
    )
    spider = LinkSpider(start_urls=[server.url("a.test")], allowed_domains=["a.test"])
    result, items = await run_spider(spider, server)
    assert "evil.test" not in {r.host for r in server.requests}
    assert all(URL(item["url"]).host == "a.test" for item in items)
    assert result.stats["offsite"] == 1
    assert result.stats["offsite/redirect"] == 1


# -- politeness -------------------------------------------------------------------------------


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


# -- cookies ----------------------------------------------------------------------------------


def set_cookie(title: str, links: list[str], *cookies: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        text = fill_port(html_page(title, links), request)
        response = web.Response(text=text, content_type="text/html")
        for cookie in cookies:
            response.headers.add("Set-Cookie", cookie)
        return response

    return handler


async def test_cookies_stay_on_the_domain_that_set_them(site: SiteFactory) -> None:
    b_home = "http://b.test:{port}/"
    server = await site(
        {
            "a.test": {
                "/": set_cookie(
                    "A",
                    ["/a1", "/a2", "/to-b", b_home],
                    "sid=a-secret; Path=/",
                    "stolen=1; Domain=b.test; Path=/",  # a.test may not set cookies for b.test
                ),
                "/a1": html_page("A1", ["http://b.test:{port}/b1"]),
                "/a2": html_page("A2", ["/a3"]),
                "/a3": html_page("A3"),
                "/to-b": redirect("http://b.test:{port}/landing"),
            },
            "b.test": {
                "/": set_cookie("B", ["/b1", "http://a.test:{port}/a3"], "bsid=b-secret; Path=/"),
                "/b1": html_page("B1", ["/b2"]),
                "/b2": html_page("B2"),
                "/landing": html_page("landing"),
            },
        }
    )
    spider = LinkSpider(start_urls=[server.url("a.test")])
    _, items = await run_spider(spider, server)

    cookies = {(r.host, r.path_qs): r.headers.get("Cookie", "") for r in server.requests}
    assert set(cookies) == {("a.test", path) for path in ("/", "/a1", "/a2", "/a3", "/to-b")} | {
        ("b.test", path) for path in ("/", "/b1", "/b2", "/landing")
    }
    for (host, path), header in cookies.items():
        if host == "a.test" and path != "/":
            assert header == "sid=a-secret", (host, path)
        if host == "b.test":
            assert "a-secret" not in header and "stolen" not in header, (host, path, header)
        assert "b-secret" not in header or host == "b.test", (host, path, header)
    assert cookies[("a.test", "/")] == ""
    assert len(items) == 8


async def test_cookie_jar_none_sends_no_cookies(site: SiteFactory) -> None:
    server = await site(
        {"a.test": {"/": set_cookie("A", ["/a1"], "sid=1; Path=/"), "/a1": html_page("A1")}}
    )
    await run_spider(LinkSpider(start_urls=[server.url("a.test")]), server, COOKIE_JAR="none")
    assert [r.headers.get("Cookie") for r in server.requests] == [None, None]


async def test_spider_and_domain_cookies(site: SiteFactory) -> None:
    server = await site(
        {
            "a.test": {"/": html_page("A", ["http://b.test:{port}/"])},
            "b.test": {"/": html_page("B")},
        }
    )

    await run_spider(
        LinkSpider(start_urls=[server.url("a.test")], cookies={"everywhere": "1"}),
        server,
        DOMAIN_COOKIES={"a.test": {"only_a": "2"}},
    )
    headers = {r.host: r.headers.get("Cookie", "") for r in server.requests}
    assert sorted(headers["a.test"].split("; ")) == ["everywhere=1", "only_a=2"]
    assert headers["b.test"] == ""  # the spider's cookies stay on the start domains


# -- the spider's own hooks -------------------------------------------------------------------


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


async def test_pipeline_errors_and_dropped_items_are_counted(site: SiteFactory) -> None:
    from crawler import DropItem

    class Picky:
        def process_item(self, item: Any, spider: Spider) -> Any:
            if item["title"] == "drop":
                raise DropItem("unwanted")
            if item["title"] == "crash":
                raise RuntimeError("pipeline bug")
            return item

    server = await site(
        {
            "a.test": {
                "/": html_page("keep", ["/drop", "/crash"]),
                "/drop": html_page("drop"),
                "/crash": html_page("crash"),
            }
        }
    )
    spider = LinkSpider(start_urls=[server.url("a.test")])
    collect = Collect()
    settings = build_settings(spider, server)
    async with asyncio.timeout(HANG_GUARD_S):
        result = await Crawler(spider, settings, pipelines=[Picky(), collect]).run()
    assert [item["title"] for item in collect.items] == ["keep"]
    assert result.stats["items"] == 1
    assert result.stats["items_dropped"] == 1
    assert result.stats["pipeline_errors"] == 1


@pytest.mark.parametrize("bad", [{"CONCURRENCY_PER_HOST": 0}, {"NOT_A_SETTING": 1}])
async def test_bad_settings_fail_before_anything_is_crawled(
    site: SiteFactory, bad: dict[str, Any]
) -> None:
    from crawler import SettingsError

    server = await site({"a.test": {"/": html_page("home")}})

    class Configured(LinkSpider):
        settings = bad

    spider = Configured(start_urls=[server.url("a.test")])
    with pytest.raises(SettingsError, match=next(iter(bad))):
        await run_spider(spider, server)
    assert server.requests == []


def test_crawler_error_tree() -> None:
    assert issubclass(HttpError, FetchError)
    assert issubclass(NetworkError, FetchError)
    assert issubclass(FetchError, CrawlerError)


# -- redirects across domains (known bugs) ----------------------------------------------------


async def test_cookies_of_the_redirect_target_domain_are_sent(site: SiteFactory) -> None:
    server = await site(
        {
            "b.test": {
                "/": set_cookie("B", ["http://a.test:{port}/to-b"], "bsid=b-session; Path=/"),
                "/landing": html_page("landing"),
            },
            "a.test": {"/to-b": redirect("http://b.test:{port}/landing")},
        }
    )
    spider = LinkSpider(start_urls=[server.url("b.test")])
    await run_spider(spider, server, CONCURRENCY=1)
    landing = [r for r in server.requests if r.path_qs == "/landing"]
    assert [r.headers.get("Cookie") for r in landing] == ["bsid=b-session"]


async def test_domain_headers_do_not_follow_a_redirect_to_another_domain(
    site: SiteFactory,
) -> None:
    server = await site(
        {
            "a.test": {"/": redirect("http://b.test:{port}/landing")},
            "b.test": {"/landing": html_page("landing")},
        }
    )
    spider = LinkSpider(start_urls=[server.url("a.test")])
    await run_spider(spider, server, DOMAIN_HEADERS={"a.test": {"X-Api-Key": "a-secret"}})
    seen = {r.host: r.headers.get("X-Api-Key") for r in server.requests}
    assert seen == {"a.test": "a-secret", "b.test": None}
