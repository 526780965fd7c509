"""The shared connector: limits, DNS cache, a real DNS server, RESOLVE, Unix sockets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from peers import HANG_GUARD_S, UnixSiteServer, crawl, dns_server, make_crawler, require_module

from crawler import Request, Response, Settings, SettingsError, Spider
from crawler.downloader.connector import MappedResolver
from crawler.downloader.guard import GuardedResolver
from crawler.testing import SiteServer


class Pages(Spider):
    """GETs ``urls``; keeps the responses and the downloader's connector seen mid-crawl."""

    name = "pages"
    crawler: Any = None

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.urls = urls
        self.responses: list[Response] = []
        self.failures: list[Exception] = []
        self.connector: aiohttp.TCPConnector | None = None
        self.resolver: Any = None

    async def start(self) -> AsyncIterator[Request]:
        for url in self.urls:
            yield Request(url, callback=self.parse, errback=self.failures.append)

    def parse(self, response: Response) -> None:
        self.responses.append(response)
        if self.crawler is not None:
            self.connector = self.crawler.downloader._connector
            self.resolver = getattr(self.connector, "owned_resolver", None)


async def connector_of(server: SiteServer, **settings: Any) -> aiohttp.TCPConnector:
    """The TCPConnector a crawl with ``settings`` really used."""
    spider = Pages([server.url("a.test")])
    crawler, _ = make_crawler(spider, RESOLVE=server.resolve_map(), **settings)
    spider.crawler = crawler
    async with asyncio.timeout(HANG_GUARD_S):
        await crawler.run()
    assert spider.connector is not None
    return spider.connector


@pytest.mark.parametrize(("concurrency", "limit"), [(5, 5), (0, 0)])
async def test_concurrency_is_the_connector_limit(site: Any, concurrency: int, limit: int) -> None:
    server = await site({"a.test": {"/": "ok"}})
    connector = await connector_of(server, CONCURRENCY=concurrency, CONCURRENCY_PER_HOST=3)
    assert connector.limit == limit  # 0 = no limit
    assert connector.limit_per_host == 3
    assert connector.closed  # the crawl closed it


async def test_per_host_concurrency_seen_by_the_server(site: Any) -> None:
    both_in = asyncio.Event()
    active = 0

    async def pair(request: web.Request) -> web.Response:
        nonlocal active
        active += 1
        if active >= 2:
            both_in.set()
        await both_in.wait()  # the first waits for the second: proof they overlap
        active -= 1
        return web.Response(text="ok")

    server = await site({"a.test": {f"/{n}": pair for n in range(4)}})
    spider = Pages([server.url("a.test", f"/{n}") for n in range(4)])
    run = await crawl(spider, RESOLVE=server.resolve_map(), CONCURRENCY=8, CONCURRENCY_PER_HOST=2)
    assert run.stats["pages"] == 4
    assert server.max_concurrency["a.test"] == 2


@pytest.mark.parametrize(("cache", "ttl"), [(True, 42.5), (False, 10.0)])
async def test_dns_cache_settings_reach_the_connector(site: Any, cache: bool, ttl: float) -> None:
    server = await site({"a.test": {"/": "ok"}})
    connector = await connector_of(server, DNS_CACHE=cache, DNS_CACHE_TTL=ttl)
    assert connector.use_dns_cache is cache
    assert connector._cached_hosts._ttl == ttl


async def test_dns_nameservers_use_a_real_dns_server(site: Any) -> None:
    require_module("aiodns", install="pip install aiodns")
    # Names no hosts file holds: c-ares reads /etc/hosts before asking the nameserver.
    shop, mapped = unique_name("shop"), unique_name("mapped")
    server = await site({shop: {"/": "<p>shop</p>"}, mapped: {"/": "<p>map</p>"}})
    with dns_server() as dns:
        spider = Pages([server.url(shop), server.url(mapped)])
        crawler, _ = make_crawler(
            spider, DNS_NAMESERVERS=[dns.nameserver], RESOLVE={mapped: "127.0.0.1"}
        )
        spider.crawler = crawler
        async with asyncio.timeout(HANG_GUARD_S):
            result = await crawler.run()
        queries = dns.queries
    assert spider.failures == []
    assert sorted(r.text for r in spider.responses) == ["<p>map</p>", "<p>shop</p>"]
    assert (shop, "A") in queries  # asked the DNS server...
    assert all(name != mapped for name, _ in queries)  # ...but RESOLVE came first
    assert sorted(server.paths_seen()) == sorted([f"{mapped}/", f"{shop}/"])
    assert result.stats["pages"] == 2
    # The resolvers built for the crawl are closed with the connector.
    connector: Any = spider.connector
    assert connector is not None and connector.closed
    assert connector.owned_resolver is None
    assert isinstance(spider.resolver, GuardedResolver)  # the private-network guard wraps it
    mapped = spider.resolver.inner
    assert isinstance(mapped, MappedResolver)
    assert isinstance(mapped._fallback, aiohttp.AsyncResolver)
    assert mapped._fallback._resolver is None  # its aiodns channel is gone


async def test_dns_nameservers_answer_nxdomain_is_a_network_failure(site: Any) -> None:
    require_module("aiodns", install="pip install aiodns")
    with dns_server() as dns:
        nowhere = unique_name("nowhere")
        spider = Pages([f"http://{nowhere}:9/"])
        run = await crawl(spider, DNS_NAMESERVERS=[dns.nameserver])
    assert run.stats["failures/network"] == 1
    [failure] = spider.failures
    assert nowhere in str(failure)


def unique_name(label: str) -> str:
    """A host name under .test that no machine's hosts file can hold."""
    return f"{label}-{uuid.uuid4().hex[:12]}.test"


def test_dns_nameservers_are_checked() -> None:
    from crawler.downloader.connector import ConnectorOptions, build_connector

    with pytest.raises(SettingsError, match=r"DNS_NAMESERVERS entry 'dns\.test:53'"):
        build_connector(ConnectorOptions(nameservers=("dns.test:53",)))


async def test_resolve_from_the_command_line_string_form(site: Any) -> None:
    server = await site({"shop.test": {"/": "<p>shop</p>"}, "api.test": {"/": "<p>api</p>"}})
    settings = Settings.build(("-s", {"RESOLVE": "shop.test:127.0.0.1, api.test:127.0.0.1"}))
    assert settings.RESOLVE == {"shop.test": "127.0.0.1", "api.test": "127.0.0.1"}
    spider = Pages([server.url("shop.test"), server.url("api.test")])
    await crawl(spider, RESOLVE="shop.test:127.0.0.1,api.test:127.0.0.1")
    assert sorted(r.text for r in spider.responses) == ["<p>api</p>", "<p>shop</p>"]


def test_resolve_rejects_a_non_ip() -> None:
    with pytest.raises(SettingsError, match=r"RESOLVE=.*shop.test:localhost does not map to an IP"):
        Settings.build(("-s", {"RESOLVE": "shop.test:localhost"}))


async def cookie_echo(request: web.Request) -> web.Response:
    response = web.json_response(
        {"unix": request.transport is not None and request.transport.get_extra_info("peername") == "",
         "cookies": dict(request.cookies), "x_api": request.headers.get("X-Api")}
    )  # fmt: skip
    response.set_cookie("api_session", "u1", path="/")
    return response


async def test_unix_sockets_carry_that_hosts_requests(site: Any, tmp_path: Path) -> None:
    tcp = await site({"a.test": {"/": "<p>tcp</p>"}})
    path = str(tmp_path / "api.sock")
    assert len(path) < 100, "Unix socket paths are limited to ~107 bytes"
    async with UnixSiteServer(
        {"api.test": {"/": cookie_echo, "/again": cookie_echo}}, path=path
    ) as unix:
        spider = Pages([unix.url("api.test"), tcp.url("a.test")])
        spider.cookies = {"spider": "1"}
        run = await crawl(
            spider,
            RESOLVE=tcp.resolve_map(),
            UNIX_SOCKETS=f"api.test:{path}",  # the CLI form; a dict works too
            DOMAIN_HEADERS={"api.test": {"X-Api": "yes"}},
        )
        seen = unix.paths_seen()
    assert run.stats["pages"] == 2
    assert seen == ["api.test/"]
    assert tcp.paths_seen() == ["a.test/"]
    api = next(r for r in spider.responses if "api.test" in r.url)
    assert api.json() == {"unix": True, "cookies": {"spider": "1"}, "x_api": "yes"}


async def test_unix_socket_sessions_keep_their_cookies(tmp_path: Path) -> None:
    path = str(tmp_path / "api.sock")

    class Twice(Pages):
        def parse(self, response: Response) -> Any:
            self.responses.append(response)
            if response.url.endswith("/"):
                yield Request("http://api.test/again", callback=self.parse)

    async with UnixSiteServer({"api.test": {"/": cookie_echo, "/again": cookie_echo}}, path=path):
        spider = Twice(["http://api.test/"])
        await crawl(spider, UNIX_SOCKETS={"api.test": path})
    first, second = spider.responses
    assert first.json()["cookies"] == {}
    assert second.json()["cookies"] == {"api_session": "u1"}
