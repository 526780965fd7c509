"""Cookies from hostile servers: public-suffix domains, oversized cookies, floods, persistence.

Every crawl test asserts on the ``Cookie`` header the local server received: what
the crawler really sent, not what its jar claims.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from peers import crawl
from yarl import URL

from crawler import Request, Response, Spider
from crawler.downloader.cookies import CookieLimits, CrawlerCookieJar, make_cookie_jar
from crawler.storage import StateStore, load_jar
from crawler.testing import SiteServer

SECRET = "s3cr3t-value"


def setting(*headers: str) -> Any:
    """A handler answering with these raw ``Set-Cookie`` headers."""

    async def handler(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        for header in headers:
            response.headers.add("Set-Cookie", header)
        return response

    return handler


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def sent(server: SiteServer, host: str, path: str = "/check") -> dict[str, str]:
    """The cookies the server received with the (last) request for ``host`` + ``path``."""
    [*_, seen] = [r for r in server.requests if r.host == host and r.path_qs == path]
    cookie: SimpleCookie = SimpleCookie(seen.headers.get("Cookie", ""))
    return {name: morsel.value for name, morsel in cookie.items()}


class Sequence(Spider):
    """Fetches ``urls`` one after another (the next only after the previous answered)."""

    name = "sequence"

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queue = list(urls)

    async def start(self) -> AsyncIterator[Request]:
        yield self.next_request()

    def next_request(self) -> Request:
        url = self.queue.pop(0)
        return Request(url, callback=self.parse, errback=self.failed, dont_filter=True)

    def parse(self, response: Response) -> Any:
        if self.queue:
            yield self.next_request()

    def failed(self, failure: Exception) -> Any:
        if self.queue:
            yield self.next_request()


async def test_a_public_suffix_domain_is_refused_and_a_site_domain_is_shared(site: Any) -> None:
    hosts = ("www.shop.co.uk", "other.shop.co.uk", "evil.co.uk", "www.shop.com", "other.shop.com")
    pages: dict[str, dict[str, Any]] = {host: {"/check": ok} for host in hosts}
    pages["www.shop.co.uk"]["/set"] = setting(
        f"suffix={SECRET}; Domain=co.uk; Path=/",
        f"dotted={SECRET}; Domain=.co.uk; Path=/",
        "site=1; Domain=shop.co.uk; Path=/",
        "mine=1; Path=/",
    )
    pages["www.shop.com"]["/set"] = setting(f"tld={SECRET}; Domain=.com; Path=/", "site=2; Path=/")
    server = await site(pages)
    urls = [server.url("www.shop.co.uk", "/set"), server.url("www.shop.com", "/set")]
    urls += [server.url(host, "/check") for host in hosts]
    await crawl(Sequence(urls), RESOLVE=server.resolve_map())
    assert sent(server, "www.shop.co.uk") == {"site": "1", "mine": "1"}
    assert sent(server, "other.shop.co.uk") == {"site": "1"}  # the legit site cookie is shared
    assert sent(server, "evil.co.uk") == {}
    assert sent(server, "www.shop.com") == {"site": "2"}
    assert sent(server, "other.shop.com") == {}


async def test_an_oversized_cookie_is_never_sent(site: Any) -> None:
    # 3,300 bytes of name=value passes aiohttp's own 4,096-byte pair check; its attributes
    # take the whole cookie over RFC 6265's 4,096 bytes, so the jar refuses it.
    fat = f"fat={'v' * 3300}; Path=/; Comment={'c' * 900}"
    huge = f"huge={'v' * 5000}; Path=/"
    server = await site({"a.test": {"/set": setting(fat, huge, "small=1; Path=/"), "/check": ok}})
    urls = [server.url("a.test", "/set"), server.url("a.test", "/check")]
    await crawl(Sequence(urls), RESOLVE=server.resolve_map())
    assert sent(server, "a.test") == {"small": "1"}


async def test_ten_thousand_set_cookie_headers_leave_the_newest_fifty(site: Any) -> None:
    pages: dict[str, Any] = {"/check": ok, "/login": setting("login=1; Path=/")}
    for batch in range(100):
        pages[f"/flood/{batch}"] = setting(*(f"f{batch}_{i}=x; Path=/" for i in range(100)))
    server = await site({"a.test": pages})
    flood = [server.url("a.test", f"/flood/{batch}") for batch in range(100)]
    urls = [server.url("a.test", "/login"), *flood, server.url("a.test", "/check")]
    spider = Sequence(urls)
    await crawl(spider, RESOLVE=server.resolve_map())
    floods = [r for r in server.requests if r.path_qs.startswith("/flood/")]
    assert len(floods) == 100  # 10,000 Set-Cookie headers went out
    received = sent(server, "a.test")
    assert len(received) == CookieLimits().max_per_domain
    assert all(name.startswith("f99_") for name in received)  # the oldest were evicted


async def test_a_response_with_ten_thousand_set_cookie_headers_stores_nothing(site: Any) -> None:
    flood = setting(*(f"f{i}=x" for i in range(10_000)))
    server = await site({"a.test": {"/flood": flood, "/check": ok}})
    urls = [server.url("a.test", "/flood"), server.url("a.test", "/check")]
    await crawl(Sequence(urls), RESOLVE=server.resolve_map())
    assert sent(server, "a.test") == {}


class Login(Spider):
    """Logs in on www.shop.co.uk, then checks what three hosts of the site receive."""

    name = "login"

    def __init__(self, server: SiteServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server

    async def start(self) -> AsyncIterator[Request]:
        yield Request(self.server.url("www.shop.co.uk", "/login"), callback=self.logged_in)

    def logged_in(self, response: Response) -> Any:
        for host in ("sub.www.shop.co.uk", "www.shop.co.uk", "other.shop.co.uk"):
            yield Request(self.server.url(host, "/check"), callback=self.parse)

    def parse(self, response: Response) -> Any:
        return None


async def test_a_host_only_cookie_stays_host_only_across_a_resume(
    site: Any, tmp_path: Path
) -> None:
    login = setting("host=1; Path=/; Max-Age=3600", "site=1; Domain=shop.co.uk; Path=/")
    hosts = ("sub.www.shop.co.uk", "www.shop.co.uk", "other.shop.co.uk")
    pages: dict[str, dict[str, Any]] = {host: {"/check": ok} for host in hosts}
    pages["www.shop.co.uk"]["/login"] = login
    server = await site(pages)
    settings = {
        "RESOLVE": server.resolve_map(),
        "STATE_DIR": str(tmp_path / "state"),
    }
    # The first run stops after the login page, with the jar saved in the state...
    first = await crawl(Login(server), MAX_PAGES=1, **settings)
    assert first.result.finish_reason == "max_pages"
    assert [r.path_qs for r in server.requests] == ["/login"]
    # ...the second restores it from SQLite and fetches the checks the first one queued.
    await crawl(Login(server), **settings)
    assert sent(server, "www.shop.co.uk") == {"host": "1", "site": "1"}
    assert sent(server, "sub.www.shop.co.uk") == {"site": "1"}
    assert sent(server, "other.shop.co.uk") == {"site": "1"}


async def test_saved_records_keep_host_only_and_expiry_in_a_real_state_file(
    tmp_path: Path,
) -> None:
    jar = make_cookie_jar("strict")
    jar.update_cookies_from_headers(
        ["host=1; Path=/a/; Max-Age=3600", "site=1; Domain=shop.co.uk; Path=/"],
        URL("http://www.shop.co.uk/a/page"),
    )
    store = StateStore(tmp_path / "state.db")
    await store.open()
    try:
        await store.save({}, {"shop.co.uk": jar})
        [records] = (await store.load_cookies()).values()
    finally:
        await store.close()
    restored = make_cookie_jar("strict")
    assert load_jar(restored, records) == 2
    assert restored.host_only_cookies == {("www.shop.co.uk", "/a", "host")}
    assert isinstance(jar, CrawlerCookieJar) and isinstance(restored, CrawlerCookieJar)
    before = jar.expires_at("www.shop.co.uk", "/a", "host")
    after = restored.expires_at("www.shop.co.uk", "/a", "host")
    assert before is not None and after is not None and abs(before - after) <= 1.5
    assert restored.filter_cookies(URL("http://sub.www.shop.co.uk/a/x")).keys() == {"site"}
    assert restored.filter_cookies(URL("http://www.shop.co.uk/a")).keys() == {"site"}  # "/a/"
    assert restored.filter_cookies(URL("http://www.shop.co.uk/a/x")).keys() == {"host", "site"}


@pytest.mark.parametrize("kind", ["strict", "unsafe"])
async def test_rejections_are_counted_and_logged_by_name_only(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    jar = make_cookie_jar(kind)
    assert isinstance(jar, CrawlerCookieJar)
    caplog.set_level(logging.DEBUG, logger="crawler.downloader.cookies")
    jar.update_cookies_from_headers(
        [
            f"suffix={SECRET}; Domain=co.uk",
            f"huge={SECRET}{'v' * 5000}",
            f"fat={SECRET}{'v' * 3300}; Comment={'c' * 900}",
            "fine=1",
        ],
        URL("http://www.shop.co.uk/"),
    )
    assert dict(jar.rejections()) == {"public_suffix": 1, "too_large": 2}
    assert [m.key for m in jar] == ["fine"]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert all(name in logged for name in ("'suffix'", "'huge'", "'fat'"))
    assert SECRET not in logged
    assert SECRET not in repr(jar.rejections())


async def test_a_public_suffix_host_keeps_its_own_cookie_host_only() -> None:
    jar = CrawlerCookieJar()
    jar.update_cookies_from_headers(["own=1; Domain=github.io"], URL("http://github.io/"))
    jar.update_cookies_from_headers(["other=1; Domain=github.io"], URL("http://x.github.io/"))
    assert jar.host_only_cookies == {("github.io", "", "own")}
    assert jar.filter_cookies(URL("http://github.io/")).keys() == {"own"}
    assert jar.filter_cookies(URL("http://x.github.io/")).keys() == set()
    assert dict(jar.rejections()) == {"public_suffix": 1}


async def test_the_jar_stays_bounded_per_domain_and_in_total() -> None:
    jar = CrawlerCookieJar(limits=CookieLimits(max_per_domain=50, max_per_jar=120))
    url = URL("http://www.shop.co.uk/")
    jar.update_cookies({f"c{i}": "v" * 4000 for i in range(10_000)}, url)
    assert len(jar) == 50
    assert {m.key for m in jar} == {f"c{i}" for i in range(9_950, 10_000)}
    for site in range(5):
        jar.update_cookies({f"s{i}": "1" for i in range(40)}, URL(f"http://a.site{site}.com/"))
    assert len(jar) == 120  # the jar's total, oldest first: the shop.co.uk cookies went
    assert not any(m.key.startswith("c") for m in jar)
    assert dict(jar.rejections()) == {"domain_limit": 9_950, "jar_limit": 130}
