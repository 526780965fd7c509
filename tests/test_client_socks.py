"""SOCKS proxies: a real microsocks (SOCKS5) on loopback, and a SOCKS4/4a server in-process.

microsocks logs each target it connects to (``connected to <host>:<port>``), which
shows who resolved the name: through socks5 it is asked for the address we
resolved, through socks5h for the name. A microsocks started with ``bind``
connects from that loopback address, so a page tells which proxy carried a
request by the peer address it sees.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from peers import TlsFiles, crawl, microsocks, socks4_server, tls_files

from crawler import Request, Response, SettingsError, Spider
from crawler.downloader.connector import ConnectorOptions
from crawler.downloader.proxies import check_proxy_url
from crawler.downloader.rotation import load_proxy_list
from crawler.downloader.sessions import SessionOptions, SessionPool
from crawler.downloader.socks import SocksConnectors
from crawler.errors import BlockedAddress, FetchError, ProxyError, TlsError

USER, PASSWORD, WRONG = "crawler", "s0cks-s3cret", "wr0ng-s3cret"
Seen = list[tuple[str, str | None]]  # (path, the peer address the page saw)


class Fetch(Spider):
    """Fetches ``requests``; the first response's callback also yields ``links``."""

    name = "socks"

    def __init__(self, requests: list[Request], links: Sequence[Request] = (), **kw: Any) -> None:
        super().__init__(**kw)
        self.requests, self.links = requests, list(links)
        self.responses: list[Response] = []
        self.failures: list[Exception] = []

    async def start(self) -> AsyncIterator[Request]:
        for request in self.requests:
            yield self.own(request)

    def own(self, request: Request) -> Request:
        request.callback = request.callback or self.parse
        request.errback = self.failures.append
        return request

    def parse(self, response: Response) -> Any:
        self.responses.append(response)
        links, self.links = self.links, []
        return [self.own(link) for link in links]

    def texts(self) -> list[str]:
        return sorted(r.text for r in self.responses)


def page(seen: Seen, text: str = "<p>ok</p>", status: int = 200) -> Callable[..., Any]:
    """A page recording (path, peer address) of every request for it."""

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.path, request.remote))
        return web.Response(text=text, status=status, content_type="text/html")

    return handler


@asynccontextmanager
async def localhost_site(text: str, tls: TlsFiles | None = None) -> AsyncIterator[int]:
    """A page on ``localhost``:<port>, on 127.0.0.1 and (if it can) ::1, whichever a SOCKS
    proxy's own resolver answers first; yields the port."""

    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=text, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    context = tls.server_context() if tls else None
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        with suppress(OSError):
            await web.TCPSite(runner, "::1", port, ssl_context=context).start()
        yield port
    finally:
        await runner.cleanup()


def connected(lines: list[str]) -> list[str]:
    return [line.split("connected to ", 1)[1].strip() for line in lines if "connected to" in line]


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        assert PASSWORD not in str(text) and WRONG not in str(text)


async def test_socks5_resolves_names_here_and_asks_the_proxy_for_the_address(site: Any) -> None:
    server = await site({"site.test": {"/page": "<p>via socks5</p>"}})
    async with microsocks() as proxy:
        spider = Fetch([Request(server.url("site.test", "/page"))])
        run = await crawl(spider, PROXY=proxy.url, RESOLVE={"site.test": "127.0.0.1"})
        await proxy.wait_for_log("connected to")
    assert spider.texts() == ["<p>via socks5</p>"]
    assert connected(proxy.lines) == [f"127.0.0.1:{server.port}"]  # RESOLVE was ours to apply
    assert run.stats["pages"] == 1


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_socks5h_asks_the_proxy_for_the_name(tmp_path: Path, scheme: str) -> None:
    tls = tls_files(tmp_path)
    async with localhost_site("<p>named</p>", tls if scheme == "https" else None) as port:
        async with microsocks() as proxy:
            spider = Fetch([Request(f"{scheme}://localhost:{port}/")])
            run = await crawl(spider, PROXY=proxy.with_scheme("socks5h"), SSL_CA_BUNDLE=tls.ca_pem)
            await proxy.wait_for_log("connected to")
    assert spider.failures == []
    assert spider.texts() == ["<p>named</p>"]
    assert connected(proxy.lines) == [f"localhost:{port}"]  # the proxy resolved it
    assert run.stats["pages"] == 1


async def test_credentials_http_and_https_through_the_tunnel(site: Any, tmp_path: Path) -> None:
    from peers import TlsSiteServer

    tls = tls_files(tmp_path)
    server = await site({"127.0.0.1": {"/plain": "<p>plain</p>"}})
    pages = {host: {"/secure": f"<p>{host}</p>"} for host in ("secure.test", "wrong.test")}
    async with (
        TlsSiteServer(pages, ssl_context=tls.server_context()) as https,
        microsocks(auth=(USER, PASSWORD)) as proxy,
    ):
        spider = Fetch(
            [
                Request(server.url("127.0.0.1", "/plain")),
                Request(https.url("secure.test", "/secure")),
                Request(https.url("wrong.test", "/secure")),  # not a name the certificate holds
            ]
        )
        run = await crawl(
            spider,
            PROXY=proxy.url_with(USER, PASSWORD),
            SSL_CA_BUNDLE=tls.ca_pem,
            RESOLVE={"secure.test": "127.0.0.1", "wrong.test": "127.0.0.1"},
        )
        await proxy.wait_for_log(f"connected to 127.0.0.1:{https.port}")
    assert spider.texts() == ["<p>plain</p>", "<p>secure.test</p>"]
    [failure] = spider.failures  # verified against the URL's name, not the address dialled
    assert isinstance(failure, TlsError) and "wrong.test" in str(failure)
    assert run.stats["pages"] == 2 and run.stats["failures/tls"] == 1
    assert "Proxy-Authorization" not in server.requests[0].headers


@pytest.mark.parametrize("password", [WRONG, None])
async def test_wrong_credentials_are_one_clear_failure_without_the_password(
    site: Any, caplog: pytest.LogCaptureFixture, password: str | None
) -> None:
    server = await site({"127.0.0.1": {"/page": "<p>never</p>"}})
    url = server.url("127.0.0.1", "/page")
    async with microsocks(auth=(USER, PASSWORD)) as proxy:
        spider = Fetch([Request(url)])
        proxy_url = proxy.url_with(USER, password) if password else proxy.url
        with caplog.at_level(logging.DEBUG):
            run = await crawl(spider, PROXY=proxy_url)
    [failure] = spider.failures
    assert isinstance(failure, ProxyError)
    assert url in str(failure) and "check the credentials" in str(failure)
    if password:
        assert f"socks5://***@127.0.0.1:{proxy.port}" in str(failure)
    assert run.stats["failures/proxy"] == 1 and run.stats.get("pages", 0) == 0
    assert server.requests == [] and connected(proxy.lines) == []
    assert_no_secret(str(failure), repr(failure), caplog.text, run.stats)


async def test_an_unreachable_socks_proxy_is_a_proxy_failure(site: Any, refused_port: int) -> None:
    server = await site({"127.0.0.1": {"/page": "<p>never</p>"}})
    spider = Fetch([Request(server.url("127.0.0.1", "/page"))])
    run = await crawl(spider, PROXY=f"socks5://{USER}:{PASSWORD}@127.0.0.1:{refused_port}")
    [failure] = spider.failures
    assert isinstance(failure, ProxyError)
    assert f"cannot connect to proxy socks5://***@127.0.0.1:{refused_port}" in str(failure)
    assert run.stats["failures/proxy"] == 1
    assert_no_secret(str(failure), run.stats)


async def test_rotation_benches_the_socks_proxy_a_site_refuses(
    site: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seen: Seen = []
    refuse = page(seen, "<p>go away</p>", 403)
    served = page(seen)

    async def either(request: web.Request) -> web.StreamResponse:
        return await (refuse if request.remote == "127.0.0.2" else served)(request)

    server = await site({"127.0.0.1": {f"/{n}": either for n in range(6)}})
    async with (
        microsocks(auth=(USER, PASSWORD), bind="127.0.0.2") as banned,
        microsocks(auth=(USER, PASSWORD), bind="127.0.0.3") as good,
    ):
        spider = Fetch([Request(server.url("127.0.0.1", f"/{n}")) for n in range(6)])
        with caplog.at_level(logging.DEBUG):
            run = await crawl(
                spider,
                PROXIES=[banned.url_with(USER, PASSWORD), good.url_with(USER, PASSWORD)],
                PROXY_BAN_COOLDOWN=60,
            )
    assert spider.failures == []
    assert [r.status for r in spider.responses] == [200] * 6
    assert sorted(path for path, remote in seen if remote == "127.0.0.3") == [
        f"/{n}" for n in range(6)
    ]
    assert run.stats["proxies/bans/http_403"] >= 1
    snapshot = run.stats["proxies"]
    bad, fine = (f"socks5://***@127.0.0.1:{p.port}" for p in (banned, good))
    assert snapshot[bad]["bans"] == 1 and snapshot[bad]["state"] == "cooling"
    assert snapshot[fine]["successes"] == 6 and snapshot[fine]["bans"] == 0
    assert_no_secret(caplog.text, run.stats)


async def test_request_proxy_is_per_request_and_keeps_the_domains_jar_and_headers(
    site: Any,
) -> None:
    seen: list[tuple[str, str | None, str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            (
                request.path,
                request.remote,
                request.headers.get("Cookie", ""),
                request.headers.get("X-Team", ""),
            )
        )
        response = web.Response(text=f"<p>{request.path}</p>", content_type="text/html")
        response.set_cookie(request.path.strip("/"), "1")
        return response

    server = await site({"shop.test": {"/direct": handler, "/socks": handler, "/after": handler}})
    async with microsocks(bind="127.0.0.2") as proxy:

        def to(path: str, via: str | None, then: Any = None) -> Callable[[Response], Any]:
            return lambda _: [
                spider.own(Request(server.url("shop.test", path), proxy=via, callback=then))
            ]

        first = to("/socks", proxy.url, then=to("/after", None))  # direct, socks, direct again
        spider = Fetch([Request(server.url("shop.test", "/direct"), callback=first)])
        run = await crawl(
            spider, RESOLVE={"shop.test": "127.0.0.1"}, DEFAULT_HEADERS={"X-Team": "blue"}
        )
    assert spider.failures == []
    assert [(path, remote) for path, remote, _, _ in seen] == [
        ("/direct", "127.0.0.1"),
        ("/socks", "127.0.0.2"),  # through the proxy, which connects from 127.0.0.2
        ("/after", "127.0.0.1"),
    ]
    cookies = {path: cookie for path, _, cookie, _ in seen}
    assert cookies["/socks"] == "direct=1"  # set directly, sent through the proxy
    assert sorted(cookies["/after"].split("; ")) == ["direct=1", "socks=1"]  # and back
    assert {team for *_, team in seen} == {"blue"}
    assert run.stats["pages"] == 3


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
async def test_the_private_network_guard_applies_through_socks(site: Any, scheme: str) -> None:
    from crawler.testing import SiteServer

    async with SiteServer({"127.0.0.2": {"/": "<p>start</p>"}}, host="127.0.0.2") as start:
        port = start.port
        targets = ["http://10.1.2.3/", f"http://127.0.0.1:{port}/", f"http://localhost:{port}/"]
        if scheme == "socks5":  # resolved here: refused before the proxy is asked
            targets.append(f"http://internal.test:{port}/")
        async with microsocks() as proxy:
            spider = Fetch([Request(start.url("127.0.0.2"))], [Request(t) for t in targets])
            run = await crawl(
                spider, PROXY=proxy.with_scheme(scheme), RESOLVE={"internal.test": "127.0.0.3"}
            )
            await proxy.wait_for_log("connected to")
    assert spider.texts() == ["<p>start</p>"]
    assert all(isinstance(f, BlockedAddress) for f in spider.failures)
    assert sorted(f.url for f in spider.failures) == sorted(targets)  # type: ignore[attr-defined]
    assert "ALLOWED_NETWORKS" in str(spider.failures[0])
    assert run.stats["failures/blocked_address"] == len(targets)
    # the proxy was asked for the start page only (its own 127.0.0.1 is not trusted)
    assert connected(proxy.lines) == [f"127.0.0.2:{port}"]


async def test_socks4_resolves_here_and_socks4a_at_the_proxy(site: Any) -> None:
    server = await site({"site.test": {"/4": "<p>4</p>"}, "name.test": {"/4a": "<p>4a</p>"}})
    async with socks4_server(names={"name.test": "127.0.0.1"}) as peer:
        spider = Fetch(
            [
                Request(server.url("site.test", "/4"), proxy=peer.url("socks4", "crawler-id")),
                Request(server.url("name.test", "/4a"), proxy=peer.url("socks4a")),
            ]
        )
        run = await crawl(spider, RESOLVE={"site.test": "127.0.0.1"})
    assert spider.failures == []
    assert spider.texts() == ["<p>4</p>", "<p>4a</p>"]
    assert sorted(peer.asked) == [
        ("", "name.test", server.port),  # socks4a: the name, resolved by the proxy
        ("crawler-id", "127.0.0.1", server.port),  # socks4: the address we resolved
    ]
    assert run.stats["pages"] == 2


async def test_caps_timeouts_and_redirects_hold_through_socks(site: Any) -> None:
    seen: Seen = []
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        with suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 10)
        return web.Response(text="late")

    async def moved(request: web.Request) -> web.Response:
        seen.append((request.path, request.remote))
        raise web.HTTPFound("/to")

    pages = {"/from": moved, "/to": page(seen, "<p>arrived</p>"), "/big": "x" * 5000, "/slow": slow}
    server = await site({"127.0.0.1": pages})
    async with microsocks(bind="127.0.0.2") as proxy:
        spider = Fetch([Request(server.url("127.0.0.1", p)) for p in ("/from", "/big", "/slow")])
        run = await crawl(spider, PROXY=proxy.url, MAX_RESPONSE_SIZE=1000, REQUEST_TIMEOUT=1)
        release.set()
    [response] = spider.responses
    assert response.text == "<p>arrived</p>" and [h.status for h in response.history] == [302]
    assert seen == [("/from", "127.0.0.2"), ("/to", "127.0.0.2")]  # both hops through it
    assert run.stats["failures/too_large"] == 1
    assert run.stats["failures/timeout"] == 1


def test_socks_urls_are_checked_and_need_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = ["socks5://h:1080", "socks5h://u:p@h", "socks4://id@h:1", "socks4a://h:1"]
    for url in urls:
        assert check_proxy_url(url) == url
    (tmp_path / "proxies.txt").write_text("\n".join(urls))
    assert load_proxy_list([], str(tmp_path / "proxies.txt")) == urls  # PROXY_FILE
    with pytest.raises(SettingsError, match="SOCKS4 has a user id but no password"):
        check_proxy_url(f"socks4://{USER}:{PASSWORD}@h:1080")
    monkeypatch.setitem(sys.modules, "aiohttp_socks", None)  # as if not installed
    with pytest.raises(SettingsError) as info:
        check_proxy_url(f"socks5://{USER}:{PASSWORD}@h:1080", "PROXIES entry")
    message = str(info.value)
    assert "pip install 'crawler[socks]'" in message and "\n" not in message
    assert "PROXIES entry='socks5://***@h:1080'" in message
    assert_no_secret(message)


async def test_a_request_proxy_without_the_extra_fails_saying_what_to_install(
    site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await site({"127.0.0.1": {"/page": "<p>never</p>"}})
    monkeypatch.setitem(sys.modules, "aiohttp_socks", None)
    url = server.url("127.0.0.1", "/page")
    spider = Fetch([Request(url, proxy=f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080")])
    await crawl(spider)
    [failure] = spider.failures
    assert isinstance(failure, FetchError) and "pip install 'crawler[socks]'" in str(failure)
    assert server.requests == []
    assert_no_secret(str(failure))


async def test_socks_sessions_share_the_jar_and_connectors_are_bounded_and_closed() -> None:
    socks = SocksConnectors(ConnectorOptions(), None, None, None, max_idle=1)
    shared = aiohttp.TCPConnector()
    pool = SessionPool(shared, SessionOptions(max_open=2), socks)
    direct = pool.acquire("a.test")
    pool.release("a.test")
    opened = []
    for n in range(4):
        proxy = f"socks5://u:p@127.0.0.1:{1000 + n}"
        session = pool.acquire("www.a.test", proxy)
        assert session.cookie_jar is direct.cookie_jar  # the domain's one jar
        opened.append(session.connector)
        pool.release("www.a.test", proxy)
        await pool.close_idle()
        assert pool.open_count <= 2 and socks.open_count <= 2 + 1  # sessions + idle ones
    await pool.close()
    await socks.close()
    await shared.close()
    assert all(c is not None and c.closed for c in opened)
