"""Headers and cookies against a real local server: what the server received, what came back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from peers import crawl

from crawler import Request, Response, Settings, SettingsError, Spider
from crawler.downloader import DownloaderOptions
from crawler.testing import SiteServer


async def echo(request: web.Request) -> web.Response:
    """Answers with every header (repeats included) and cookie the server received."""
    return web.json_response(
        {
            "headers": [[k, v] for k, v in request.headers.items()],
            "cookies": dict(request.cookies),
        }
    )


def received(response: Response, name: str) -> list[str]:
    """Every value of header ``name`` the server received for ``response``'s request."""
    return [v for k, v in response.json()["headers"] if k.lower() == name.lower()]


async def set_cookie(request: web.Request) -> web.Response:
    response = web.json_response({"cookies": dict(request.cookies)})
    response.set_cookie("session", "s3cr3t", path="/")
    return response


async def repeated(request: web.Request) -> web.Response:
    response = web.Response(text="ok")
    response.headers.add("X-Multi", "one")
    response.headers.add("X-Multi", "two")
    response.set_cookie("first", "1", path="/")
    response.set_cookie("second", "2", path="/")
    return response


class Recorder(Spider):
    """Fetches ``requests`` in order, one after another; records what each response said."""

    name = "recorder"

    def __init__(self, requests: list[Request], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queue = list(requests)
        self.responses: dict[str, Response] = {}
        self.jar_seen: dict[str, dict[str, str]] = {}

    async def start(self) -> AsyncIterator[Request]:
        yield self.next_request()

    def next_request(self) -> Request:
        request = self.queue.pop(0)
        request.callback = self.parse
        request.dont_filter = True
        return request

    def parse(self, response: Response) -> Any:
        key = response.request.meta.get("key", response.url)
        self.responses[key] = response
        self.jar_seen[key] = self.cookies_for(response.url)
        if self.queue:
            yield self.next_request()


async def test_header_layers_reach_the_server(site: Any) -> None:
    server: SiteServer = await site({"a.test": {"/": echo}, "b.test": {"/": echo}})
    spider = Recorder(
        [
            Request(server.url("a.test"), meta={"key": "a"}),
            Request(server.url("b.test"), meta={"key": "b"}),
            Request(
                server.url("a.test", "/?r"),
                headers={"X-Level": "request", "User-Agent": "per-request/3"},
                meta={"key": "a-request"},
            ),
        ]
    )
    spider.headers = {"X-Level": "spider", "X-Spider": "yes"}
    run = await crawl(
        spider,
        RESOLVE=server.resolve_map(),
        USER_AGENT="crawler-test/1.0",
        DEFAULT_HEADERS={"X-Level": "default", "X-Default": "yes", "Accept-Language": "de"},
        DOMAIN_HEADERS={"a.test": {"X-Level": "domain", "X-Domain": "a"}},
    )
    assert run.stats["pages"] == 3
    a, b, a_request = (spider.responses[k] for k in ("a", "b", "a-request"))
    assert received(a, "User-Agent") == ["crawler-test/1.0"]
    assert received(a, "X-Default") == ["yes"]
    assert received(a, "Accept-Language") == ["de"]
    assert received(a, "X-Spider") == ["yes"]
    assert received(a, "X-Level") == ["domain"]  # DOMAIN_HEADERS > spider.headers > DEFAULT
    assert received(a, "X-Domain") == ["a"]
    assert received(b, "X-Level") == ["spider"]  # spider.headers > DEFAULT_HEADERS
    assert received(b, "X-Domain") == []  # another domain's headers stay there
    assert received(b, "User-Agent") == ["crawler-test/1.0"]
    assert received(a_request, "X-Level") == ["request"]  # Request(headers=) wins over all
    assert received(a_request, "User-Agent") == ["per-request/3"]
    assert received(a_request, "X-Domain") == ["a"]


async def test_header_names_are_case_insensitive_across_layers(site: Any) -> None:
    server = await site({"a.test": {"/": echo}})
    spider = Recorder([Request(server.url("a.test"), meta={"key": "a"})])
    spider.headers = {"x-level": "spider", "user-agent": "spider-agent/2"}
    await crawl(
        spider,
        RESOLVE=server.resolve_map(),
        USER_AGENT="crawler-test/1.0",
        DEFAULT_HEADERS={"X-LEVEL": "default"},
        DOMAIN_HEADERS={"A.TEST": {"X-Level": "domain"}},
    )
    response = spider.responses["a"]
    assert received(response, "User-Agent") == ["spider-agent/2"]  # one header, not two
    assert received(response, "X-Level") == ["domain"]


async def test_initial_cookies_from_spider_settings_and_request(site: Any) -> None:
    server = await site({"a.test": {"/": echo}, "b.test": {"/": echo}})
    spider = Recorder(
        [
            Request(server.url("a.test"), cookies={"req": "3"}, meta={"key": "a"}),
            Request(server.url("b.test"), meta={"key": "b"}),
        ]
    )
    spider.cookies = {"spider": "1"}
    await crawl(spider, RESOLVE=server.resolve_map(), DOMAIN_COOKIES={"a.test": {"dom": "2"}})
    assert spider.responses["a"].json()["cookies"] == {"spider": "1", "dom": "2", "req": "3"}
    # b.test is reached from a callback, not a start request: the spider's cookies stay home
    assert spider.responses["b"].json()["cookies"] == {}
    # Request(cookies=) is for that request only; it does not enter the jar.
    assert spider.jar_seen["a"] == {"spider": "1", "dom": "2"}


async def test_server_cookies_persist_per_domain_and_never_leak(site: Any) -> None:
    server = await site(
        {"a.test": {"/set": set_cookie, "/check": echo}, "b.test": {"/check": echo}}
    )
    spider = Recorder(
        [
            Request(server.url("a.test", "/set"), meta={"key": "set"}),
            Request(server.url("a.test", "/check"), meta={"key": "a"}),
            Request(server.url("b.test", "/check"), meta={"key": "b"}),
        ]
    )
    await crawl(spider, RESOLVE=server.resolve_map())
    set_response = spider.responses["set"]
    assert set_response.cookies["session"].value == "s3cr3t"  # what that response set
    assert spider.jar_seen["set"] == {"session": "s3cr3t"}  # cookies_for() in the callback
    assert spider.responses["a"].json()["cookies"] == {"session": "s3cr3t"}
    assert spider.responses["b"].json()["cookies"] == {}
    assert spider.jar_seen["b"] == {}
    assert all("s3cr3t" not in value for value in map(str, spider.responses["b"].json().values()))


async def test_strict_jar_rejects_cookies_from_an_ip_host(site: Any) -> None:
    server = await site({"127.0.0.1": {"/set": set_cookie, "/check": echo}})
    spider = Recorder(
        [
            Request(server.url("127.0.0.1", "/set"), meta={"key": "set"}),
            Request(server.url("127.0.0.1", "/check"), meta={"key": "check"}),
        ]
    )
    await crawl(spider)  # COOKIE_JAR="strict" is the default
    assert spider.responses["set"].cookies["session"].value == "s3cr3t"  # it was offered
    assert spider.responses["check"].json()["cookies"] == {}
    assert spider.jar_seen["check"] == {}


async def test_unsafe_jar_accepts_cookies_from_an_ip_host(site: Any) -> None:
    server = await site({"127.0.0.1": {"/set": set_cookie, "/check": echo}})
    spider = Recorder(
        [
            Request(server.url("127.0.0.1", "/set"), meta={"key": "set"}),
            Request(server.url("127.0.0.1", "/check"), meta={"key": "check"}),
        ]
    )
    spider.cookies = {"spider": "1"}
    await crawl(spider, COOKIE_JAR="unsafe")
    assert spider.responses["set"].json()["cookies"] == {"spider": "1"}
    assert spider.responses["check"].json()["cookies"] == {"spider": "1", "session": "s3cr3t"}
    assert spider.jar_seen["check"] == {"spider": "1", "session": "s3cr3t"}


async def test_no_jar_neither_stores_nor_sends(site: Any) -> None:
    server = await site({"a.test": {"/set": set_cookie, "/check": echo}})
    spider = Recorder(
        [
            Request(server.url("a.test", "/set"), meta={"key": "set"}),
            Request(server.url("a.test", "/check"), meta={"key": "check"}),
        ]
    )
    spider.cookies = {"spider": "1"}
    await crawl(
        spider,
        RESOLVE=server.resolve_map(),
        COOKIE_JAR="none",
        DOMAIN_COOKIES={"a.test": {"dom": "2"}},
    )
    assert spider.responses["set"].cookies["session"].value == "s3cr3t"  # still readable
    assert spider.responses["set"].json()["cookies"] == {}
    assert spider.responses["check"].json()["cookies"] == {}
    assert spider.jar_seen["check"] == {}


async def test_repeated_headers_raw_headers_and_response_cookies(site: Any) -> None:
    server = await site({"a.test": {"/": repeated}})
    spider = Recorder([Request(server.url("a.test"), meta={"key": "a"})])
    await crawl(spider, RESOLVE=server.resolve_map())
    response = spider.responses["a"]
    assert isinstance(response.headers, CIMultiDictProxy)
    assert response.headers.getall("x-multi") == ["one", "two"]
    assert len(response.headers.getall("Set-Cookie")) == 2
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in response.raw_headers)
    assert [v for k, v in response.raw_headers if k.lower() == b"x-multi"] == [b"one", b"two"]
    assert {name: m.value for name, m in response.cookies.items()} == {"first": "1", "second": "2"}
    assert spider.jar_seen["a"] == {"first": "1", "second": "2"}


async def test_domain_headers_stay_with_their_domain_across_redirects(site: Any) -> None:
    server: SiteServer = await site(
        {"a.test": {}, "b.test": {"/landing": echo}, "c.test": {"/": echo}}
    )

    async def go_to_b(request: web.Request) -> web.Response:
        raise web.HTTPFound(server.url("b.test", "/landing"))

    server.pages["a.test"]["/go"] = go_to_b
    spider = Recorder([Request(server.url("a.test", "/go"), meta={"key": "go"})])
    spider.headers = {"X-Level": "spider"}
    await crawl(
        spider,
        RESOLVE=server.resolve_map(),
        DOMAIN_HEADERS={
            "a.test": {"X-Token": "a-secret", "X-Level": "a"},
            "b.test": {"X-B": "b"},
        },
    )
    [go_seen] = [r for r in server.requests if r.path_qs == "/go"]
    assert go_seen.headers["X-Token"] == "a-secret"
    landing = spider.responses["go"]
    assert landing.url == server.url("b.test", "/landing")
    assert received(landing, "X-Token") == []  # a.test's secret never reaches b.test
    assert received(landing, "X-Level") == ["spider"]
    assert received(landing, "X-B") == ["b"]  # b.test's own headers apply there


async def test_domain_settings_cover_subdomains(site: Any) -> None:
    server = await site({"www.a.test": {"/": echo}, "a.test": {"/": echo}})
    spider = Recorder(
        [
            Request(server.url("www.a.test"), meta={"key": "www"}),
            Request(server.url("a.test"), meta={"key": "apex"}),
        ]
    )
    await crawl(
        spider,
        RESOLVE=server.resolve_map(),
        DOMAIN_COOKIES={"a.test": {"dom": "2"}},
        DOMAIN_HEADERS={"a.test": {"X-Domain": "a"}},
    )
    for key in ("www", "apex"):
        assert spider.responses[key].json()["cookies"] == {"dom": "2"}
        assert received(spider.responses[key], "X-Domain") == ["a"]


@pytest.mark.parametrize("setting", ["DOMAIN_HEADERS", "DOMAIN_COOKIES", "DOMAIN_SSL"])
def test_a_subdomain_key_in_domain_settings_is_refused(setting: str) -> None:
    value: Any = {"www.a.test": {"x": "1"}} if setting != "DOMAIN_SSL" else {"www.a.test": "false"}
    settings = Settings.build(("test", {setting: value}))
    with pytest.raises(SettingsError, match=rf"{setting}\['www.a.test'\].*use 'a.test'"):
        DownloaderOptions.from_settings(settings)


def test_a_cookie_that_cannot_be_sent_is_a_settings_error() -> None:
    settings = Settings.build(("test", {"DOMAIN_COOKIES": {"a.test": {"path": "x"}}}))
    with pytest.raises(SettingsError, match=r"DOMAIN_COOKIES\['a.test'\]: cookie 'path'"):
        DownloaderOptions.from_settings(settings)
    with pytest.raises(SettingsError, match=r"Spider.cookies: cookie 'bad name'"):
        DownloaderOptions.from_settings(Settings(), cookies={"bad name": "1"})
