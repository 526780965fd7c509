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


def test_timing_summary_keeps_a_bounded_uniform_sample() -> None:
    """p50/p95, means and the reuse ratio from a uniform sample of at most ``sample_size``
    requests (the sample's own statistics: close to the whole crawl's)."""
    from crawler.downloader.tracing import TimingSummary

    summary = TimingSummary(sample_size=1_000, seed=3)
    count = 200_000
    for i in range(count):  # ttfb i ms, so p50 and p95 are known; connect on every 4th
        timings = {"ttfb": i / 1000, "reused": float(i % 4 != 0)}
        if i % 4 == 0:
            timings["connect"] = 0.002
        summary.add(timings)
    result = summary.summary()
    assert abs(result["timings/ttfb/mean_ms"] - count / 2) < count * 0.03
    assert abs(result["timings/ttfb/p50_ms"] - count * 0.50) < count * 0.05
    assert abs(result["timings/ttfb/p95_ms"] - count * 0.95) < count * 0.02
    assert result["timings/connect/p95_ms"] == 2.0
    assert abs(result["timings/reused_ratio"] - 0.75) < 0.07
    assert "timings/dns/p50_ms" not in result  # no request looked a name up
    # bounded: never more than sample_size requests kept, each one seen
    sample = sorted(summary.sample("ttfb"))
    assert len(sample) == 1_000 and len(set(sample)) == 1_000
    assert all(0 <= v < count / 1000 for v in sample)
    # uniform: each tenth of the range holds about a tenth of the sample
    tenths = [sum(1 for v in sample if k * 20 <= v < (k + 1) * 20) for k in range(10)]
    assert min(tenths) > 60 and max(tenths) < 140, tenths


def test_timing_summary_of_fewer_requests_than_its_sample_is_exact() -> None:
    from crawler.downloader.tracing import TimingSummary

    summary = TimingSummary()
    for ms in (1.0, 2.0, 3.0):
        summary.add({"ttfb": ms / 1000, "total": ms / 500, "reused": 1.0})
    result = summary.summary()
    assert result["timings/ttfb/mean_ms"] == 2.0
    assert result["timings/total/p50_ms"] == 4.0
    assert result["timings/reused_ratio"] == 1.0
