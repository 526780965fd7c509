"""aiohttp client tracing: per-response timings, timing stats, user TraceConfigs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from peers import crawl

from crawler import Request, Response, SettingsError, Spider


class Sequential(Spider):
    """Fetches ``urls`` one after another (so the second can reuse the first's connection)."""

    name = "sequential"

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.urls = list(urls)
        self.responses: list[Response] = []

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.urls.pop(0), callback=self.parse)

    def parse(self, response: Response) -> Any:
        self.responses.append(response)
        if self.urls:
            yield Request(self.urls.pop(0), callback=self.parse)


class CountStarts:
    """A user TraceConfig counting on_request_start calls by URL."""

    def __init__(self) -> None:
        self.starts: list[str] = []
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self.on_request_start)

    async def on_request_start(
        self, session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any
    ) -> None:
        self.starts.append(str(params.url))


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/two")


PAGES = {"/one": "<p>1</p>", "/two": "<p>2</p>", "/three": "<p>3</p>", "/moved": moved}


async def test_timings_for_a_new_and_a_reused_connection(site: Any) -> None:
    server = await site({"a.test": PAGES})
    spider = Sequential([server.url("a.test", "/one"), server.url("a.test", "/two")])
    run = await crawl(spider, RESOLVE=server.resolve_map())
    first, second = spider.responses
    assert set(first.timings) == {"dns", "connect", "ttfb", "total", "reused"}
    assert first.timings["reused"] == 0.0
    assert all(first.timings[p] >= 0 for p in ("dns", "connect", "ttfb", "total"))
    assert first.timings["ttfb"] <= first.timings["total"]
    assert second.timings["reused"] == 1.0  # same host, kept-alive connection
    assert "connect" not in second.timings and "dns" not in second.timings
    assert second.timings["ttfb"] <= second.timings["total"]
    for phase in ("dns", "connect", "ttfb", "total"):
        for stat in ("mean_ms", "p50_ms", "p95_ms"):
            assert run.stats[f"timings/{phase}/{stat}"] >= 0
    assert run.stats["timings/reused_ratio"] == 0.5


async def test_timings_survive_a_redirect(site: Any) -> None:
    server = await site({"a.test": PAGES})
    spider = Sequential([server.url("a.test", "/moved")])
    await crawl(spider, RESOLVE=server.resolve_map())
    [response] = spider.responses
    assert response.url.endswith("/two")
    assert {"ttfb", "total"} <= set(response.timings)


async def test_user_trace_configs_from_settings_and_spider(site: Any) -> None:
    server = await site({"a.test": PAGES, "b.test": PAGES})
    from_settings, from_spider = CountStarts(), CountStarts()
    urls = [
        server.url("a.test", "/one"),
        server.url("b.test", "/three"),
        server.url("a.test", "/moved"),
    ]
    spider = Sequential(urls)
    spider.trace_configs = [from_spider.config]
    run = await crawl(spider, RESOLVE=server.resolve_map(), TRACE_CONFIGS=[from_settings.config])
    assert run.stats["pages"] == 3
    # once per HTTP request, in every domain's session; each redirect hop is one
    # (the downloader follows redirects itself, each hop through its domain's session)
    expected = [*urls, server.url("a.test", "/two")]
    assert from_settings.starts == expected
    assert from_spider.starts == expected


STRING_TRACE = CountStarts()


async def test_trace_configs_by_import_path(site: Any) -> None:
    server = await site({"a.test": PAGES})
    STRING_TRACE.starts.clear()
    spider = Sequential([server.url("a.test", "/one")])
    await crawl(
        spider,
        RESOLVE=server.resolve_map(),
        TRACE_CONFIGS=[f"{__name__}:STRING_TRACE_CONFIG"],
    )
    assert STRING_TRACE.starts == [server.url("a.test", "/one")]


STRING_TRACE_CONFIG = STRING_TRACE.config


async def test_a_trace_config_that_is_not_one_is_a_settings_error() -> None:
    spider = Sequential(["http://a.test/"])
    with pytest.raises(
        SettingsError, match=r"TRACE_CONFIGS entry .* is not an aiohttp.TraceConfig"
    ):
        await crawl(spider, TRACE_CONFIGS=[object()])
