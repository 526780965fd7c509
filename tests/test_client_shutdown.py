"""Shutdown: after a crawl (finished or forced to stop mid-request) nothing is left open."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from peers import HANG_GUARD_S, TlsFiles, TlsSiteServer, UnixSiteServer, make_crawler, tls_files

from crawler import Crawler, Request, Response, Spider


class Watch(Spider):
    """Fetches ``urls``; remembers the connector and sessions it saw in use."""

    name = "watch"
    crawler: Crawler | None = None

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.urls = urls
        self.responses: list[Response] = []
        self.connectors: set[aiohttp.BaseConnector] = set()
        self.sessions: set[aiohttp.ClientSession] = set()

    async def start(self) -> AsyncIterator[Request]:
        self.note()
        for url in self.urls:
            yield Request(url, callback=self.parse)

    def note(self) -> None:
        assert self.crawler is not None and self.crawler.downloader is not None
        downloader = self.crawler.downloader
        if downloader._connector is not None:
            self.connectors.add(downloader._connector)
        pool = downloader.sessions
        self.sessions.update(entry.session for entry in pool._open.values())
        self.connectors.update(pool._unix_connectors.values())

    def parse(self, response: Response) -> None:
        self.responses.append(response)
        self.note()


def leftovers() -> list[str]:
    """Warnings a garbage collection raises now (unclosed sockets, transports, sessions)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def assert_all_closed(spider: Watch, caplog: pytest.LogCaptureFixture) -> None:
    assert spider.connectors, "the spider never saw the connector"
    assert all(connector.closed for connector in spider.connectors)
    assert spider.sessions and all(session.closed for session in spider.sessions)
    assert all(session.connector is None for session in spider.sessions)  # closed one by one
    assert spider.crawler is not None and spider.crawler.downloader is not None
    assert spider.crawler.downloader._connector is None
    assert leftovers() == []
    assert "Unclosed" not in caplog.text


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return tls_files(tmp_path)


@pytest.fixture
async def https(tls: TlsFiles) -> AsyncIterator[TlsSiteServer]:
    pages = {"secure.test": {"/": "<p>s</p>", "/2": "<p>s2</p>"}}
    async with TlsSiteServer(pages, ssl_context=tls.server_context()) as server:
        yield server


async def run(spider: Watch, **settings: Any) -> Any:
    crawler, _ = make_crawler(spider, **settings)
    spider.crawler = crawler
    async with asyncio.timeout(HANG_GUARD_S):
        return await crawler.run()


async def test_a_finished_crawl_over_http_https_and_unix_leaves_nothing_open(
    site: Any,
    https: TlsSiteServer,
    tls: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = await site({"a.test": {"/": "<p>a</p>"}, "b.test": {"/": "<p>b</p>"}})
    sock = str(tmp_path / "u.sock")
    async with UnixSiteServer({"api.test": {"/": "<p>u</p>"}}, path=sock):
        spider = Watch(
            [
                server.url("a.test"),
                server.url("b.test"),
                https.url("secure.test"),
                https.url("secure.test", "/2"),
                "http://api.test/",
            ]
        )
        with caplog.at_level(logging.WARNING):
            result = await run(
                spider,
                RESOLVE={**server.resolve_map(), **https.resolve_map()},
                SSL_CA_BUNDLE=tls.ca_pem,
                UNIX_SOCKETS={"api.test": sock},
            )
    assert result.finish_reason == "finished"
    assert len(spider.responses) == 5
    assert len(spider.sessions) == 4  # a.test, b.test, secure.test, api.test (Unix)
    assert len(spider.connectors) == 2  # the shared TCP one and api.test's Unix one
    assert_all_closed(spider, caplog)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_forced_stop_mid_request_leaves_nothing_open(
    site: Any, tls: TlsFiles, caplog: pytest.LogCaptureFixture, scheme: str
) -> None:
    arrived = asyncio.Event()
    release = asyncio.Event()
    crawler_box: list[Crawler] = []

    async def stall(request: web.Request) -> web.Response:
        arrived.set()
        spider.note()  # the session carrying this request is open now
        crawler_box[0].request_stop(force=True)  # the request is in flight right now
        await release.wait()
        return web.Response(text="too late")

    pages = {"secure.test": {"/": stall, "/other": "<p>never fetched</p>"}}
    if scheme == "https":
        server: Any = TlsSiteServer(pages, ssl_context=tls.server_context())
        await server.__aenter__()
    else:
        server = await site(pages)
    try:
        spider = Watch([server.url("secure.test"), server.url("secure.test", "/other")])
        crawler, _ = make_crawler(
            spider,
            RESOLVE=server.resolve_map(),
            SSL_CA_BUNDLE=tls.ca_pem,
            CONCURRENCY_PER_HOST=1,
        )
        spider.crawler = crawler
        crawler_box.append(crawler)
        with caplog.at_level(logging.WARNING):
            async with asyncio.timeout(HANG_GUARD_S):
                result = await crawler.run()
        assert arrived.is_set()
        assert result.interrupted
        assert spider.responses == []
        assert_all_closed(spider, caplog)
    finally:
        release.set()
        if scheme == "https":
            await server.__aexit__(None, None, None)
