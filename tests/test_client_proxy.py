"""Proxies: a real tinyproxy process on loopback carries http and https (CONNECT) requests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from peers import ProxyPeer, TlsFiles, TlsSiteServer, crawl, proxy_py, tinyproxy, tls_files

from crawler import Request, Response, SettingsError, Spider
from crawler.errors import ProxyError
from crawler.testing import SiteServer

USER, PASSWORD, WRONG = "crawler", "pr0xy-s3cret", "wr0ng-s3cret"


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[ProxyPeer]:
    async with tinyproxy(tmp_path) as running:
        yield running


@pytest.fixture
async def auth_proxy(tmp_path: Path) -> AsyncIterator[ProxyPeer]:
    async with tinyproxy(tmp_path, basic_auth=(USER, PASSWORD)) as running:
        yield running


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return tls_files(tmp_path)


@pytest.fixture
async def https(tls: TlsFiles) -> AsyncIterator[TlsSiteServer]:
    pages = {"127.0.0.1": {"/secure": "<p>over CONNECT</p>"}}
    async with TlsSiteServer(pages, ssl_context=tls.server_context()) as server:
        yield server


class Fetch(Spider):
    name = "proxied"

    def __init__(self, requests: list[Request], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests = requests
        self.responses: list[Response] = []
        self.failures: list[Exception] = []

    async def start(self) -> AsyncIterator[Request]:
        for request in self.requests:
            request.callback = self.parse
            request.errback = self.failures.append
            yield request

    def parse(self, response: Response) -> None:
        self.responses.append(response)


def via(server: SiteServer, path: str) -> str | None:
    """The Via header the server saw on ``path`` (tinyproxy adds one to what it forwards)."""
    [seen] = [r for r in server.requests if r.path_qs == path]
    return seen.headers.get("Via")


async def test_proxy_setting_carries_http_requests(site: Any, proxy: ProxyPeer) -> None:
    server = await site({"127.0.0.1": {"/page": "<p>proxied</p>"}})
    url = server.url("127.0.0.1", "/page")
    spider = Fetch([Request(url)])
    run = await crawl(spider, PROXY=proxy.url)
    assert [r.text for r in spider.responses] == ["<p>proxied</p>"]
    assert "tinyproxy" in (via(server, "/page") or "")
    assert f"GET {url}" in await proxy.wait_for_log(f"GET {url}")
    assert run.stats["pages"] == 1


async def test_request_proxy_is_per_request(site: Any, proxy: ProxyPeer) -> None:
    server = await site({"127.0.0.1": {"/proxied": "<p>1</p>", "/direct": "<p>2</p>"}})
    spider = Fetch(
        [
            Request(server.url("127.0.0.1", "/proxied"), proxy=proxy.url),
            Request(server.url("127.0.0.1", "/direct")),
        ]
    )
    await crawl(spider)
    assert len(spider.responses) == 2
    assert "tinyproxy" in (via(server, "/proxied") or "")
    assert via(server, "/direct") is None


async def test_https_through_connect(https: TlsSiteServer, tls: TlsFiles, proxy: ProxyPeer) -> None:
    url = https.url("127.0.0.1", "/secure")
    spider = Fetch([Request(url)])
    run = await crawl(spider, PROXY=proxy.url, SSL_CA_BUNDLE=tls.ca_pem)
    assert spider.failures == []
    assert [r.text for r in spider.responses] == ["<p>over CONNECT</p>"]
    assert run.stats["pages"] == 1
    # The tunnel is end-to-end TLS, so only the proxy's log can show it carried the request.
    await proxy.wait_for_log(f"CONNECT 127.0.0.1:{https.port}")


async def test_credentials_in_the_proxy_url(
    site: Any, https: TlsSiteServer, tls: TlsFiles, auth_proxy: ProxyPeer
) -> None:
    server = await site({"127.0.0.1": {"/page": "<p>authorised</p>"}})
    spider = Fetch(
        [Request(server.url("127.0.0.1", "/page")), Request(https.url("127.0.0.1", "/secure"))]
    )
    run = await crawl(spider, PROXY=auth_proxy.url_with(USER, PASSWORD), SSL_CA_BUNDLE=tls.ca_pem)
    assert spider.failures == []
    assert sorted(r.text for r in spider.responses) == ["<p>authorised</p>", "<p>over CONNECT</p>"]
    assert "tinyproxy" in (via(server, "/page") or "")
    assert "Proxy-Authorization" not in server.requests[0].headers  # the proxy consumed it
    assert run.stats["pages"] == 2


@pytest.mark.parametrize(
    ("peer", "target", "password"),
    [
        ("proxy.py", "http", WRONG),
        ("proxy.py", "https", WRONG),
        ("tinyproxy", "https", WRONG),
        # tinyproxy answers wrong credentials on a plain-http request with 401, not 407,
        # which cannot be told from the site's own 401; without credentials it says 407.
        ("tinyproxy", "http", None),
    ],
)
async def test_wrong_proxy_credentials_are_one_clear_failure_without_the_password(
    site: Any,
    https: TlsSiteServer,
    tls: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    peer: str,
    target: str,
    password: str | None,
) -> None:
    server = await site({"127.0.0.1": {"/page": "<p>never</p>"}})
    url = (
        server.url("127.0.0.1", "/page") if target == "http" else https.url("127.0.0.1", "/secure")
    )
    spider = Fetch([Request(url)])
    start = (
        tinyproxy(tmp_path, (USER, PASSWORD)) if peer == "tinyproxy" else proxy_py((USER, PASSWORD))
    )
    async with start as proxy:
        proxy_url = proxy.url_with(USER, password) if password else proxy.url
        with caplog.at_level(logging.DEBUG):
            run = await crawl(spider, PROXY=proxy_url, SSL_CA_BUNDLE=tls.ca_pem)
    assert spider.responses == []
    [failure] = spider.failures
    assert isinstance(failure, ProxyError)
    assert url in str(failure)
    if peer == "proxy.py" or password is None:
        assert "HTTP 407" in str(failure) and "credentials" in str(failure)
    if password:
        assert f"http://***@127.0.0.1:{proxy.port}" in str(failure)
    assert run.stats["failures/proxy"] == 1
    assert run.stats.get("pages", 0) == 0
    assert server.requests == [] and https.requests == []
    for text in (str(failure), repr(failure), caplog.text, str(run.stats)):
        assert WRONG not in text
        assert PASSWORD not in text


async def test_proxy_py_with_the_right_credentials(
    site: Any, https: TlsSiteServer, tls: TlsFiles
) -> None:
    server = await site({"127.0.0.1": {"/page": "<p>authorised</p>"}})
    spider = Fetch(
        [Request(server.url("127.0.0.1", "/page")), Request(https.url("127.0.0.1", "/secure"))]
    )
    async with proxy_py((USER, PASSWORD)) as proxy:
        run = await crawl(spider, PROXY=proxy.url_with(USER, PASSWORD), SSL_CA_BUNDLE=tls.ca_pem)
        await proxy.wait_for_log(f"127.0.0.1:{https.port}")  # its access log names the target
    assert spider.failures == []
    assert sorted(r.text for r in spider.responses) == ["<p>authorised</p>", "<p>over CONNECT</p>"]
    assert run.stats["pages"] == 2


async def test_an_unreachable_proxy_is_a_proxy_failure(site: Any, refused_port: int) -> None:
    server = await site({"127.0.0.1": {"/page": "<p>never</p>"}})
    spider = Fetch([Request(server.url("127.0.0.1", "/page"))])
    run = await crawl(spider, PROXY=f"http://{USER}:{PASSWORD}@127.0.0.1:{refused_port}")
    [failure] = spider.failures
    assert isinstance(failure, ProxyError)
    assert PASSWORD not in str(failure)
    assert run.stats["failures/proxy"] == 1


def test_a_bad_proxy_url_fails_before_the_crawl() -> None:
    from crawler.downloader import DownloaderOptions
    from crawler.settings import Settings

    settings = Settings.build(("t", {"PROXY": f"ftp://{USER}:{PASSWORD}@127.0.0.1:1080"}))
    with pytest.raises(
        SettingsError, match=r"bad value PROXY='ftp://\*\*\*@127.0.0.1:1080'"
    ) as info:
        DownloaderOptions.from_settings(settings)
    assert PASSWORD not in str(info.value)


async def test_trust_env_routes_through_http_proxy_except_no_proxy(
    site: Any, proxy: ProxyPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "direct.test")
    server = await site({"127.0.0.1": {"/env": "<p>1</p>"}, "direct.test": {"/direct": "<p>2</p>"}})
    spider = Fetch(
        [Request(server.url("127.0.0.1", "/env")), Request(server.url("direct.test", "/direct"))]
    )
    await crawl(spider, TRUST_ENV=True, RESOLVE={"direct.test": "127.0.0.1"})
    assert len(spider.responses) == 2, spider.failures
    assert "tinyproxy" in (via(server, "/env") or "")
    assert via(server, "/direct") is None  # NO_PROXY


async def test_without_trust_env_the_environment_proxy_is_ignored(
    site: Any, proxy: ProxyPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server = await site({"127.0.0.1": {"/page": "<p>1</p>"}})
    spider = Fetch([Request(server.url("127.0.0.1", "/page"))])
    await crawl(spider)
    assert len(spider.responses) == 1
    assert via(server, "/page") is None
