"""The engine end to end: callback styles, item types, callback and pipeline errors, settings
checked before the crawl.

Every site is a ``SiteServer`` whose host names (a.test, b.test, ...) the
``RESOLVE`` setting points at 127.0.0.1; the assertions read what the server
really received (``server.requests``), the items the crawl produced and the
stats. No test sleeps.
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
from conftest import HANG_GUARD_S, Collect, SiteFactory, build_settings, run_spider
from engine_peers import LinkSpider, html
from yarl import URL

from crawler import (
    Crawler,
    CrawlerError,
    FetchError,
    HttpError,
    NetworkError,
    Request,
    Response,
    Spider,
)
from crawler.testing import html_page

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
