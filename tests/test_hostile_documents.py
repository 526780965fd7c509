"""Hostile documents: huge, deeply nested, binary or mislabelled pages, absurd Retry-After.

Every page comes from a real aiohttp server on 127.0.0.1 (the ``site`` fixture); the
assertions read what the spider received, the crawl stats and what the server saw. No
test sleeps or times anything: waits use a ManualClock, and "parsed off the loop" is
observed as the thread the parser was built in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from conftest import HANG_GUARD_S, Collect, SiteFactory, build_settings, run_spider
from multidict import CIMultiDict, CIMultiDictProxy
from selectolax.lexbor import LexborHTMLParser

import crawler.response
from crawler import Crawler, Request, Response, Spider
from crawler.response import ResponseLimits
from crawler.stats import Stats
from crawler.testing import ManualClock, html_page
from crawler.worker import THREAD_PARSE_BYTES


def serve(body: bytes, content_type: str | None = "text/html; charset=utf-8") -> Any:
    """A handler answering ``body`` as is, with ``content_type`` (None: no header at all)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=body)
        if content_type is None:
            response.headers.popall("Content-Type", None)
        else:
            response.headers["Content-Type"] = content_type
        return response

    return handler


class Record(Spider):
    """Yields ``inspect(response)`` (and the path) as each page's item; follows links if asked."""

    name = "record"

    def __init__(
        self,
        urls: list[str],
        inspect: Callable[[Response], dict[str, Any]],
        follow: bool = False,
    ) -> None:
        super().__init__(start_urls=urls)
        self.inspect = inspect
        self.follow = follow

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"path": response.request.yarl_url.path, **self.inspect(response)}
        if self.follow:
            yield from response.follow_all()


@pytest.fixture
def parser_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each HTML parse ran in, in order."""
    threads: list[str] = []

    def recording(html: str) -> LexborHTMLParser:
        threads.append(threading.current_thread().name)
        return LexborHTMLParser(html)

    monkeypatch.setattr(crawler.response, "LexborHTMLParser", recording)
    return threads


# -- big pages are parsed off the event loop ----------------------------------------------------


async def test_a_big_page_is_parsed_in_a_thread_before_its_callback(
    site: SiteFactory, parser_threads: list[str]
) -> None:
    filler = "<p>filler text for a big page</p>" * (THREAD_PARSE_BYTES // 30)
    server = await site(
        {"a.test": {"/big": html_page("big", ["/small"], filler), "/small": html_page("small")}}
    )
    seen: dict[str, list[str]] = {}

    def inspect(response: Response) -> dict[str, Any]:
        seen[response.url] = list(parser_threads)  # what had been parsed when the callback ran
        return {"title": response.css_first("title").text(), "links": len(response.css("a"))}

    result, items = await run_spider(Record([server.url("a.test", "/big")], inspect, True), server)
    main = threading.main_thread().name
    [big_thread, small_thread] = parser_threads
    assert big_thread != main  # parsed in a worker thread...
    assert seen[server.url("a.test", "/big")] == [big_thread]  # ...before the callback ran
    assert seen[server.url("a.test", "/small")] == [big_thread]  # small: not yet parsed...
    assert small_thread == main  # ...until the callback's first css(), on the loop
    assert [item["title"] for item in items] == ["big", "small"]
    assert result.stats["pages"] == 2
    assert "callback_errors" not in result.stats


async def test_a_small_page_is_not_parsed_unless_the_callback_asks(
    site: SiteFactory, parser_threads: list[str]
) -> None:
    server = await site({"a.test": {"/": html_page("home", ["/next"])}})
    spider = Record([server.url("a.test")], lambda response: {"size": len(response.body)})
    result, items = await run_spider(spider, server)
    assert items and parser_threads == []
    assert result.stats["pages"] == 1


# -- a page with a million links ---------------------------------------------------------------


def million_links_page() -> str:
    anchors = "".join(f"<a href={i:x}></a>" for i in range(1_000_000))
    return f"<html><head><title>many</title></head><body>{anchors}</body></html>"


async def test_a_million_links_page_yields_at_most_max_links_requests(
    site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await site({"a.test": {"/": million_links_page()}})

    def inspect(response: Response) -> dict[str, Any]:
        first = response.follow_all()
        again = response.follow_all(["/one", "/two"])  # the budget is per response
        return {"first": len(first), "last": first[-1].url, "again": len(again)}

    spider = Record([server.url("a.test")], inspect)
    with caplog.at_level(logging.WARNING, logger="crawler.response"):
        result, items = await run_spider(spider, server, MAX_RESPONSE_SIZE=32 * 1024 * 1024)
    limit = 100_000  # the MAX_LINKS_PER_RESPONSE default
    assert items == [
        {"path": "/", "first": limit, "last": server.url("a.test", f"/{limit - 1:x}"), "again": 0}
    ]
    assert result.stats["links_dropped/too_many"] == 1_000_000 - limit + 2
    [line] = [r.getMessage() for r in caplog.records if "MAX_LINKS_PER_RESPONSE" in r.getMessage()]
    assert server.url("a.test") in line and "dropped 900000" in line


async def test_max_links_per_response_setting_reaches_the_response(site: SiteFactory) -> None:
    server = await site({"a.test": {"/": html_page("ten", [f"/{i}" for i in range(10)])}})
    spider = Record([server.url("a.test")], lambda r: {"links": len(r.follow_all())})
    result, items = await run_spider(spider, server, MAX_LINKS_PER_RESPONSE=4)
    assert items == [{"path": "/", "links": 4}]
    assert result.stats["links_dropped/too_many"] == 6


def test_follow_all_counts_what_it_drops_and_zero_means_unlimited() -> None:
    body = html_page("p", [f"/{i}" for i in range(10)]).encode()
    stats = Stats()
    response = Response(
        "http://a.test/", 200, CIMultiDictProxy(CIMultiDict()), body, Request("http://a.test/")
    )
    response.limits = ResponseLimits(max_links=4, stats=stats, spider="s")
    assert [r.url for r in response.follow_all()] == [f"http://a.test/{i}" for i in range(4)]
    assert response.follow_all(["/x"]) == []
    assert stats.counters == {"links_dropped/too_many": 7}
    response.limits = ResponseLimits(max_links=0, stats=stats)
    assert len(response.follow_all()) == 10


# -- 100,000 nested elements -------------------------------------------------------------------


NESTED = 100_000


@pytest.mark.parametrize(
    "bomb",
    [
        "<div>" * NESTED,
        "<div>" * NESTED + "</div>" * NESTED,
        "<div></span>" * NESTED,  # end tags that close nothing
        "<div><!-- </div> -->" * NESTED,  # end tags hidden in comments
        '<div title="</div>">' * NESTED,  # ...in attribute values
        "<ul><li>" * (NESTED // 2),
        "<svg>" + "<g>" * NESTED,
    ],
    ids=["open", "closed", "unmatched-ends", "commented-ends", "attribute-ends", "lists", "svg"],
)
async def test_deep_nesting_is_cut_not_parsed_for_ever(
    site: SiteFactory, caplog: pytest.LogCaptureFixture, bomb: str
) -> None:
    page = html_page("deep", ["/before"], "<p>intro</p>") + bomb + '<a href="/after">after</a>'
    server = await site({"a.test": {"/": page, "/before": html_page("before")}})

    def inspect(response: Response) -> dict[str, Any]:
        body = response.css_first("body")
        depth = len(response.css("div")) + len(response.css("li")) + len(response.css("g"))
        hrefs = [r.url.rsplit("/", 1)[1] for r in response.follow_all()]
        return {"links": hrefs, "text": body.text()[:5], "depth_ok": 0 < depth <= 1024}

    spider = Record([server.url("a.test")], inspect, follow=True)
    with caplog.at_level(logging.WARNING, logger="crawler.response"):
        result, items = await run_spider(spider, server)
    assert items[0] == {"path": "/", "links": ["before"], "text": "intro", "depth_ok": True}
    assert server.paths_seen("a.test") == ["/", "/before"]  # "/after" was past the cut
    assert result.stats["responses/html_truncated"] == 1
    assert "callback_errors" not in result.stats
    assert any("nests too deep" in r.getMessage() for r in caplog.records)


async def test_a_big_flat_page_is_not_cut(site: SiteFactory) -> None:
    rows = "".join(f"<tr><td><b>{i}</b><td><a href=/{i}>{i}</a>" for i in range(20_000))
    table = f"<table>{rows}</table><ul>{'<li>item' * 20_000}</ul><p><a href=/last>last</a>"
    server = await site({"a.test": {"/": html_page("flat", [], table)}})
    spider = Record([server.url("a.test")], lambda r: {"links": len(r.follow_all())})
    result, items = await run_spider(spider, server)
    assert items == [{"path": "/", "links": 20_001}]
    assert "responses/html_truncated" not in result.stats


# -- binary served as HTML, bad charsets --------------------------------------------------------


def png(size: int) -> bytes:
    data = os.urandom(size)
    chunk = b"IDAT" + zlib.compress(data, 0)
    return b"\x89PNG\r\n\x1a\n" + len(chunk).to_bytes(4, "big") + chunk


BAD_PAGES: dict[str, tuple[bytes, str | None]] = {
    "/random": (os.urandom(5_000_000), "text/html"),
    "/png": (png(3_000_000), "text/html; charset=utf-8"),
    "/bogus": (b'<a href="/a">caf\xe9</a>', "text/html; charset=x-bogus"),
    "/utf7": (b'<a href="/a">+AOk-t+AOk-</a>', "text/html; charset=utf-7"),
    "/meta-nonsense": (b'<meta charset="nonsense-42"><a href="/a">\xe9</a>', "text/html"),
    "/meta-base64": (b'<meta charset="base64"><a href="/a">x</a>', "text/html"),
    "/rot13": (b'<a href="/a">x</a>', "text/html; charset=rot13"),
    "/idna": (b'<a href="/a">x</a>', "text/html; charset=idna"),
    "/undefined": (b'<a href="/a">x</a>', "text/html; charset=undefined"),
    "/punycode": (b'<a href="/a">x\xff</a>', "text/html; charset=punycode"),
    "/utf16-no-bom": ('<a href="/a">été</a>'.encode("utf-16-le"), "text/html"),
    "/utf16-be-no-bom": ('<a href="/a">été</a>'.encode("utf-16-be"), "text/html; charset=utf-16"),
    "/mixed-utf8": (
        b'<a href="/a">\xc3\xa9\xff\xfe\xc3(\xed\xa0\x80</a>',
        "text/html; charset=utf-8",
    ),
    "/no-type": (b'\x00\x01<a href="/a">\x80x</a>', None),
}


async def test_binary_and_badly_labelled_pages_decode_and_parse_without_raising(
    site: SiteFactory,
) -> None:
    pages = {path: serve(body, content_type) for path, (body, content_type) in BAD_PAGES.items()}
    server = await site({"a.test": pages})

    def inspect(response: Response) -> dict[str, Any]:
        nodes = response.css("a")
        return {
            "text": isinstance(response.text, str),
            "encoding": isinstance(response.encoding, str),
            "nodes": all(isinstance(node.text(), str) for node in nodes),
            "links": sorted({r.url.rsplit("/", 1)[1] for r in response.follow_all()}),
        }

    spider = Record([server.url("a.test", path) for path in BAD_PAGES], inspect)
    result, items = await run_spider(spider, server, CONCURRENCY=4)
    assert "callback_errors" not in result.stats
    by_path = {item.pop("path"): item for item in items}
    assert set(by_path) == set(BAD_PAGES)
    assert all(item["text"] and item["encoding"] and item["nodes"] for item in by_path.values())
    # Declared nonsense falls back to UTF-8 sniffing: the markup is still read.
    unreadable = {"/random", "/png", "/utf16-no-bom"}  # no markup to find in them
    for path in set(BAD_PAGES) - unreadable:
        assert by_path[path]["links"] == ["a"], path


def test_text_of_a_codec_that_is_not_a_text_encoding_is_replaced_utf8() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/html; charset=base64"}))
    response = Response(
        "http://a.test/", 200, headers, b"caf\xc3\xa9 \xff", Request("http://a.test/")
    )
    assert (response.encoding, response.text) == ("utf-8", "café \ufffd")


# -- Retry-After far beyond RETRY_AFTER_MAX ---------------------------------------------------


def busy_once(retry_after: str) -> Any:
    """A handler answering 503 with ``Retry-After: retry_after`` once, then a page."""
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=503, headers={"Retry-After": retry_after})
        return web.Response(text=html_page("ok"), content_type="text/html")

    return handler


async def settle() -> None:
    """Let runnable tasks finish what they can without I/O or time passing."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    "retry_after",
    ["999999999", "9" * 1000, "Fri, 31 Dec 9999 23:59:59 GMT"],
    ids=["seconds", "huge-number", "year-9999"],
)
async def test_a_retry_after_beyond_the_cap_waits_the_cap(
    site: SiteFactory, retry_after: str
) -> None:
    await crawl_with_manual_clock(site, retry_after, cap_s=120.0, wait_s=120.0)


@pytest.mark.parametrize("retry_after", ["soon", "²", "-5", "Mon, 01 Jan 99999 00:00:00 GMT"])
async def test_a_garbage_retry_after_falls_back_to_the_backoff(
    site: SiteFactory, retry_after: str
) -> None:
    # RETRY_BACKOFF_MAX=1: the first retry waits at most one second.
    await crawl_with_manual_clock(site, retry_after, cap_s=120.0, wait_s=1.0)


class Saw503:
    """A downloader middleware that tells when a 503 has arrived (the retry is decided next)."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()

    async def handle(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Signal a 503; hand every response on as usual."""
        response = await call_next(request)
        if response.status == 503:
            self.arrived.set()
        return response


async def crawl_with_manual_clock(
    site: SiteFactory, retry_after: str, cap_s: float, wait_s: float
) -> None:
    """The 503's request is fetched again once ``wait_s`` have passed, and not before."""
    server = await site({"a.test": {"/": busy_once(retry_after)}})
    clock = ManualClock()
    spider = Record([server.url("a.test")], lambda response: {"status": response.status})
    settings = build_settings(
        spider, server, RETRY_AFTER_MAX=cap_s, RETRY_BACKOFF_BASE=1.0, RETRY_BACKOFF_MAX=1.0
    )
    collect, saw_503 = Collect(), Saw503()
    crawler_ = Crawler(spider, settings, pipelines=[collect], clock=clock, middlewares=[saw_503])
    async with asyncio.timeout(HANG_GUARD_S):
        run = asyncio.create_task(crawler_.run())
        await saw_503.arrived.wait()
        await settle()
        await clock.advance(wait_s - 0.01)
        await settle()
        counts = await crawler_.frontier.counts()
        assert (counts.queued, counts.in_flight) == (1, 0)  # still waiting: nobody may fetch it
        assert crawler_.stats.get("retries/http_503") == 1
        await clock.advance(0.01)
        result = await run
    assert len(server.requests) == 2
    assert collect.items == [{"path": "/", "status": 200}]
    assert result.stats["retries/http_503"] == 1


def test_the_workers_tag_count_is_reused_only_when_it_is_the_texts() -> None:
    """worker._parse_off_loop counts b"<" once; the nesting guard reuses it for an ASCII-safe
    codec and the same body only (a UTF-16 page, or a body replaced since, is counted again)."""
    from crawler.worker import _parse_off_loop

    bomb = "<div>" * 5000

    def response(body: bytes, charset: str) -> Response:
        headers = CIMultiDictProxy(CIMultiDict({"Content-Type": f"text/html; charset={charset}"}))
        return Response("http://a.test/", 200, headers, body, Request("http://a.test/"))

    page = response(bomb.encode(), "utf-8")
    assert _parse_off_loop(page) and page._tags == (page.body, 5000)
    assert page._parse() > 0  # cut
    wide = response(bomb.encode("utf-16"), "utf-16")
    wide._tags = (wide.body, 0)  # a wrong count is not trusted for UTF-16
    assert wide._parse() > 0
    stale = response(bomb.encode(), "utf-8")
    stale._tags = (b"<p>", 0)  # counted on another body
    assert stale._parse() > 0
    trusted = response(bomb.encode(), "utf-8")
    trusted._tags = (trusted.body, 0)  # reused: shows the count is not taken again
    assert trusted._parse() == -1
