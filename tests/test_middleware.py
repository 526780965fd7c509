"""Downloader middlewares: the user's own, the built-ins' order, and one give-back per lease.

A user middleware wraps every attempt like the built-ins do; the chain is built once
per crawl from the list (built-ins, DOWNLOADER_MIDDLEWARES, the spider's
``middlewares``, ``Crawler(middlewares=...)``). Whatever ends a request — a
callback, a retry, a ban, robots.txt, an offsite redirect, a 404, a callback
error, a middleware — its lease is given back exactly once.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import HANG_GUARD_S, Collect, SiteFactory, build_settings, run_spider
from multidict import CIMultiDict, CIMultiDictProxy

from crawler import Crawler, DownloaderMiddleware, Request, Response, Settings, Spider
from crawler.downloader.rotation import ProxyPool
from crawler.errors import SettingsError
from crawler.frontier import MemoryFrontier, PolitenessPolicy
from crawler.frontier.base import Lease
from crawler.middleware import Done, EndRequest, load_middlewares
from crawler.middlewares import builtin_middlewares
from crawler.robots import RobotsCache
from crawler.stats import Stats
from crawler.testing import ManualClock, html_page

Handler = Callable[[Request], Awaitable[Response]]
MIDDLEWARES_PAGE = Path(__file__).resolve().parent.parent / "docs" / "middlewares.md"


class Pages(Spider):
    """Yields one item per page and follows every link."""

    name = "pages"

    def parse(self, response: Response) -> Any:
        yield {"path": response._url.path, "status": response.status}
        yield from response.follow_all()


class Tag:
    """Adds ``X-Tag`` (appending to one already there): shows the order of the chain."""

    def __init__(self, name: str, seen: list[str] | None = None) -> None:
        self.name = name
        self.seen = seen if seen is not None else []

    async def handle(self, request: Request, call_next: Handler) -> Response:
        headers = dict(request.headers or {})
        headers["X-Tag"] = f"{headers['X-Tag']},{self.name}" if "X-Tag" in headers else self.name
        request.headers = headers
        self.seen.append(f"{self.name}:request")
        response = await call_next(request)
        self.seen.append(f"{self.name}:response")
        return response


def readme_block(name: str) -> str:
    """The python block of docs/middlewares.md defining class ``name``."""
    text = MIDDLEWARES_PAGE.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    [source] = [block for block in blocks if f"\nclass {name}" in block]
    return source


async def test_the_readme_signing_middleware_signs_every_request(site: SiteFactory) -> None:
    namespace: dict[str, Any] = {"__name__": "readme_signing"}
    exec(compile(readme_block("SignRequests"), "docs/middlewares.md", "exec"), namespace)
    assert isinstance(namespace["SignRequests"](), DownloaderMiddleware)
    server = await site({"api.test": {"/items": html_page("items", ["/items/2"]), "/items/2": "x"}})
    spider = namespace["SignedApi"](start_urls=[server.url("api.test", "/items")])
    result, items = await run_spider(spider, server)
    assert len(items) == 2
    for seen in server.requests:
        assert re.fullmatch(r"[0-9a-f]{64}", seen.headers["X-Signature"])
        assert seen.headers["X-Timestamp"].isdigit()
    assert result.stats["pages"] == 2


async def test_a_middleware_answers_without_fetching_or_drops(site: SiteFactory) -> None:
    class Shortcuts:
        async def handle(self, request: Request, call_next: Handler) -> Response:
            if request.url.endswith("/cached"):
                headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain"}))
                return Response(request.url, 200, headers, b"from the cache", request)
            if request.url.endswith("/drop"):
                raise EndRequest(Done(kept=False))
            return await call_next(request)

    links = ["/cached", "/drop", "/real"]
    server = await site({"a.test": {"/": html_page("home", links), "/real": html_page("real")}})
    spider = Pages(start_urls=[server.url("a.test")])
    spider.middlewares = [Shortcuts()]  # type: ignore[attr-defined]
    result, items = await run_spider(spider, server)
    assert sorted(server.paths_seen("a.test")) == ["/", "/real"]  # neither fetched
    assert sorted(item["path"] for item in items) == ["/", "/cached", "/real"]
    assert result.stats["pages"] == 2  # pages counts fetches


async def test_a_middleware_rewrites_the_url(site: SiteFactory) -> None:
    class ToMirror:
        async def handle(self, request: Request, call_next: Handler) -> Response:
            return await call_next(request.replace(url=request.url.replace("/old/", "/new/")))

    server = await site({"a.test": {"/new/1": html_page("one"), "/old/1": "gone"}})
    spider = Pages(start_urls=[server.url("a.test", "/old/1")])
    result, items = await run_spider(
        spider, server, DOWNLOADER_MIDDLEWARES=["test_middleware:ToMirrorByPath"]
    )
    assert server.paths_seen("a.test") == ["/new/1"]
    assert items == [{"path": "/new/1", "status": 200}]
    crawler_ = Crawler(spider, build_settings(spider, server), middlewares=[ToMirror()])
    async with asyncio.timeout(HANG_GUARD_S):
        result = await crawler_.run()
    assert server.paths_seen("a.test") == ["/new/1", "/new/1"]
    assert result.stats["pages"] == 1


class ToMirrorByPath:
    """Loaded by a 'module:Name' string in DOWNLOADER_MIDDLEWARES (a class: instantiated)."""

    async def handle(self, request: Request, call_next: Handler) -> Response:
        return await call_next(request.replace(url=request.url.replace("/old/", "/new/")))


def test_the_built_ins_order() -> None:
    spider = Pages()
    settings = Settings.build(("test", {"AUTOTHROTTLE": True}))
    clock = ManualClock()

    async def fetch(request: Request) -> Response:
        raise AssertionError("not called")

    class Conditional:
        async def handle(self, request: Request, call_next: Handler) -> Response:
            return await call_next(request)

    chain = builtin_middlewares(
        settings,
        spider,
        MemoryFrontier(),
        Stats(),
        None,  # type: ignore[arg-type]  # only ProxyRotation keeps it, to clear cookies
        policy=PolitenessPolicy(),
        robots=RobotsCache(fetch, "crawler", clock),
        proxies=ProxyPool(["http://127.0.0.1:9"], clock),
        conditional=Conditional(),
    )
    assert [type(m).__name__ for m in chain] == [
        "RobotsTxt",
        "StatusFilter",
        "Redirects",
        "Retries",
        "Conditional",
        "AutoThrottled",
        "ProxyRotation",
    ]
    assert all(isinstance(m, DownloaderMiddleware) for m in chain)
    bare = builtin_middlewares(
        Settings.build(),
        spider,
        MemoryFrontier(),
        Stats(),
        None,
        policy=PolitenessPolicy(),  # type: ignore[arg-type]
    )
    assert [type(m).__name__ for m in bare] == ["StatusFilter", "Redirects", "Retries"]


async def test_user_middlewares_follow_the_built_ins_in_list_order(site: SiteFactory) -> None:
    seen: list[str] = []
    robots = "User-agent: *\nDisallow: /private\n"
    server = await site({"a.test": {"/": html_page("home", ["/private"]), "/robots.txt": robots}})

    class Spied(Pages):
        middlewares = (Tag("spider", seen),)

    spider = Spied(start_urls=[server.url("a.test")])
    settings = build_settings(
        spider, server, ROBOTSTXT_OBEY=True, DOWNLOADER_MIDDLEWARES=[Tag("setting", seen)]
    )
    crawler_ = Crawler(spider, settings, middlewares=[Tag("crawler", seen)])
    async with asyncio.timeout(HANG_GUARD_S):
        result = await crawler_.run()
    # setting, spider, crawler: outermost first; the disallowed page never reached them
    assert seen == [
        "setting:request",
        "spider:request",
        "crawler:request",
        "crawler:response",
        "spider:response",
        "setting:response",
    ]
    assert [r.headers["X-Tag"] for r in server.requests] == ["setting,spider,crawler"]
    assert result.stats["robots/disallowed"] == 1


async def test_user_middlewares_see_each_attempt_and_the_response_first(
    site: SiteFactory,
) -> None:
    tries = Counter[str]()

    async def flaky(request: web.Request) -> web.Response:
        tries[request.path] += 1
        if tries[request.path] == 1:
            return web.Response(status=503)
        return web.Response(text=html_page("ok"), content_type="text/html")

    seen: list[str] = []
    server = await site({"a.test": {"/": flaky}})
    spider = Pages(start_urls=[server.url("a.test")])
    result, items = await run_spider(
        spider,
        server,
        DOWNLOADER_MIDDLEWARES=[Tag("one", seen), Tag("two", seen)],
        RETRY_BACKOFF_BASE=0.01,
    )
    assert items == [{"path": "/", "status": 200}]
    attempt = ["one:request", "two:request", "two:response", "one:response"]
    assert seen == attempt * 2  # the 503 and its retry
    # The retry is the same request: it keeps what the middlewares changed the first time.
    assert [r.headers["X-Tag"] for r in server.requests] == ["one,two", "one,two,one,two"]
    assert result.stats["retries/http_503"] == 1


def test_a_bad_middleware_setting_is_refused_before_the_crawl() -> None:
    with pytest.raises(SettingsError, match="has no `async def handle"):
        load_middlewares([object()], "DOWNLOADER_MIDDLEWARES")
    with pytest.raises(SettingsError, match="cannot import"):
        load_middlewares(["no_such_module:Thing"], "DOWNLOADER_MIDDLEWARES")
    [loaded] = load_middlewares(["test_middleware:ToMirrorByPath"], "DOWNLOADER_MIDDLEWARES")
    assert isinstance(loaded, ToMirrorByPath)


# -- one give-back per lease, on every path ----------------------------------------------------


class CountingFrontier(MemoryFrontier):
    """Counts how each lease was given back (ack, fail, retry)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.leases: list[Lease] = []
        self.give_backs: dict[int, list[str]] = {}

    async def lease(self) -> Lease | None:
        lease = await super().lease()
        if lease is not None:
            self.leases.append(lease)  # kept alive: ids stay unique
            self.give_backs[id(lease)] = []
        return lease

    def _count(self, lease: Lease, how: str) -> None:
        self.give_backs[id(lease)].append(how)

    async def ack(self, lease: Lease) -> None:
        self._count(lease, "ack")
        await super().ack(lease)

    async def fail(self, lease: Lease, reason: str) -> None:
        self._count(lease, f"fail:{reason}")
        await super().fail(lease, reason)

    async def retry(self, lease: Lease, delay_s: float) -> None:
        self._count(lease, "retry")
        await super().retry(lease, delay_s)


async def test_every_outcome_gives_the_lease_back_exactly_once(site: SiteFactory) -> None:
    hits = Counter[str]()

    def once(status: int) -> Any:
        async def handler(request: web.Request) -> web.Response:
            hits[request.path] += 1
            if hits[request.path] == 1:
                return web.Response(status=status)
            return web.Response(text=html_page(request.path), content_type="text/html")

        return handler

    async def always_500(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://elsewhere.test/")

    async def back_home(request: web.Request) -> web.Response:
        raise web.HTTPFound("/")

    links = ["/retry", "/busy", "/ban", "/down", "/missing", "/boom", "/private", "/away"]
    links += ["/home-again", "/drop"]
    pages = {
        "/": html_page("home", links),
        "/robots.txt": "User-agent: *\nDisallow: /private\n",
        "/retry": once(500),
        "/busy": once(503),
        "/ban": once(403),
        "/down": always_500,
        "/boom": html_page("boom"),
        "/away": away,
        "/home-again": back_home,
    }
    server = await site({"a.test": pages, "elsewhere.test": {"/": "offsite"}})

    class Outcomes(Pages):
        allowed_domains = ("a.test",)

        def parse(self, response: Response) -> Any:
            if response.url.endswith("/boom"):
                raise ValueError("a callback error")
            yield from super().parse(response)

    class DropOne:
        async def handle(self, request: Request, call_next: Handler) -> Response:
            if request.url.endswith("/drop"):
                raise EndRequest(Done(kept=False))
            return await call_next(request)

    spider = Outcomes(start_urls=[server.url("a.test")])
    proxy = f"http://127.0.0.1:{server.port}"  # the site answers absolute-form requests itself
    settings = build_settings(
        spider,
        server,
        ROBOTSTXT_OBEY=True,
        RETRY_TIMES=1,
        RETRY_BACKOFF_BASE=0.01,
        RETRY_BACKOFF_MAX=0.02,
        PROXIES=[proxy, proxy.replace("127.0.0.1", "localhost")],
        PROXY_BAN_COOLDOWN=0.01,
    )
    frontier = CountingFrontier()
    collect = Collect()
    crawler_ = Crawler(
        spider, settings, pipelines=[collect], frontier=frontier, middlewares=[DropOne()]
    )
    async with asyncio.timeout(HANG_GUARD_S):
        result = await crawler_.run()
    stats = result.stats
    assert result.finish_reason == "finished"
    assert all(len(ways) == 1 for ways in frontier.give_backs.values()), frontier.give_backs
    ways = Counter(how for hows in frontier.give_backs.values() for how in hows)
    assert stats["retries/http_500"] == 2  # /retry, /down
    assert stats["retries/http_503"] == 1
    assert stats["proxies/bans/http_403"] == 1
    assert stats["robots/disallowed"] == 1
    assert stats["offsite/redirect"] == 1
    assert stats["duplicates/redirect"] == 1
    assert stats["failures/http_status"] == 2  # /missing (404), /down after its retry
    assert stats["callback_errors"] == 1
    assert ways["retry"] == 4  # /retry, /busy, /down, /ban (through another proxy)
    assert ways["fail:http_status"] == 2
    # ack: /, /retry, /busy, /ban, /boom, /private, /away, /home-again, /drop
    assert ways["ack"] == 9
    assert len(frontier.leases) == 15  # 11 pages, 4 of them twice
    assert sorted(item["path"] for item in collect.items) == ["/", "/ban", "/busy", "/retry"]


# -- the contract every built-in keeps ---------------------------------------------------------


async def test_every_built_in_passes_an_ordinary_response_through(tmp_path: Path) -> None:
    """Called once per attempt, each built-in hands the 200 it got back untouched."""
    from crawler.jobs import ConditionalRequests, JobState

    clock = ManualClock()

    async def no_robots(request: Request) -> Response:
        return Response(request.url, 404, CIMultiDictProxy(CIMultiDict()), b"", request)

    async with JobState(tmp_path / "job.db") as state:
        chain = builtin_middlewares(
            Settings.build(("test", {"AUTOTHROTTLE": True})),
            Pages(),
            MemoryFrontier(),
            Stats(),
            None,  # type: ignore[arg-type]
            policy=PolitenessPolicy(),
            robots=RobotsCache(no_robots, "crawler", clock),
            proxies=ProxyPool(["http://127.0.0.1:9"], clock),
            conditional=ConditionalRequests(state),
        )
        assert len(chain) == 7
        calls: list[Request] = []

        async def fetch(sent: Request) -> Response:
            calls.append(sent)
            headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/html"}))
            return Response(sent.url, 200, headers, b"<p>ok</p>", sent)

        for middleware in chain:
            request = Request("http://a.test/page")
            calls.clear()
            response = await middleware.handle(request, fetch)
            assert isinstance(middleware, DownloaderMiddleware)
            assert len(calls) == 1, type(middleware).__name__
            assert response.status == 200 and response.body == b"<p>ok</p>"
            assert request.proxy is None  # a pool's proxy is for one attempt only
