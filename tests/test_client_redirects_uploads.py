"""Redirect chains, limits and loops; request bodies (bytes, str, form, JSON, pre-compressed)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from peers import crawl, require_module
from yarl import URL

from crawler import Request, Response, Spider
from crawler.downloader.uploads import compress_body
from crawler.errors import InvalidRequest, TooManyRedirects


def redirect(status: int, location: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location, "X-Hop": request.path})

    return handler


CHAIN = {
    "/start": redirect(301, "/hop1"),
    "/hop1": redirect(302, "/hop2"),
    "/hop2": redirect(307, "/final"),
    "/final": "<p>landed</p>",
    "/loop": redirect(302, "/loop"),
}


class Fetch(Spider):
    """Fetches ``requests``; keeps responses and errback failures by URL."""

    name = "fetch"

    def __init__(self, requests: list[Request], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests = requests
        self.responses: list[Response] = []
        self.failures: list[Exception] = []

    async def start(self) -> AsyncIterator[Request]:
        for request in self.requests:
            request.callback = self.parse
            request.errback = self.failed
            yield request

    def parse(self, response: Response) -> None:
        self.responses.append(response)

    def failed(self, failure: Exception) -> None:
        self.failures.append(failure)


async def test_a_redirect_chain_is_followed_and_recorded(site: Any) -> None:
    server = await site({"a.test": CHAIN})
    spider = Fetch([Request(server.url("a.test", "/start"))])
    run = await crawl(spider, RESOLVE=server.resolve_map())
    [response] = spider.responses
    assert response.url == server.url("a.test", "/final")
    assert response.text == "<p>landed</p>"
    assert [(hop.url, hop.status) for hop in response.history] == [
        (server.url("a.test", "/start"), 301),
        (server.url("a.test", "/hop1"), 302),
        (server.url("a.test", "/hop2"), 307),
    ]
    assert [hop.headers["X-Hop"] for hop in response.history] == ["/start", "/hop1", "/hop2"]
    assert response.history[1].headers["Location"] == "/hop2"
    assert response.redirect_urls == [
        server.url("a.test", p) for p in ("/start", "/hop1", "/hop2", "/final")
    ]
    assert run.stats["redirects/301"] == 1
    assert run.stats["redirects/302"] == 1
    assert run.stats["redirects/307"] == 1
    assert run.stats["pages"] == 1
    assert server.paths_seen("a.test") == ["/start", "/hop1", "/hop2", "/final"]


async def test_max_redirects_is_the_longest_chain_followed(site: Any) -> None:
    server = await site({"a.test": CHAIN})
    spider = Fetch([Request(server.url("a.test", "/start"))])
    run = await crawl(spider, RESOLVE=server.resolve_map(), MAX_REDIRECTS=3)
    assert [r.url for r in spider.responses] == [server.url("a.test", "/final")]
    assert "failures/too_many_redirects" not in run.stats


async def test_a_chain_over_max_redirects_fails_with_too_many_redirects(site: Any) -> None:
    server = await site({"a.test": CHAIN})
    url = server.url("a.test", "/start")
    spider = Fetch([Request(url)])
    run = await crawl(spider, RESOLVE=server.resolve_map(), MAX_REDIRECTS=2)
    assert spider.responses == []
    [failure] = spider.failures
    assert isinstance(failure, TooManyRedirects)
    assert url in str(failure)
    assert "more than 2" in str(failure)
    assert failure.url == url
    assert run.stats["failures/too_many_redirects"] == 1
    assert server.paths_seen("a.test") == ["/start", "/hop1", "/hop2"]  # never went to /final


async def test_max_redirects_zero_follows_none(site: Any) -> None:
    server = await site({"a.test": CHAIN})
    spider = Fetch([Request(server.url("a.test", "/start"))])
    run = await crawl(spider, RESOLVE=server.resolve_map(), MAX_REDIRECTS=0)
    assert [type(f) for f in spider.failures] == [TooManyRedirects]
    assert run.stats["failures/too_many_redirects"] == 1
    assert server.paths_seen("a.test") == ["/start"]


async def test_a_redirect_loop_is_one_clear_failure(site: Any) -> None:
    server = await site({"a.test": CHAIN})
    url = server.url("a.test", "/loop")
    spider = Fetch([Request(url)])
    run = await crawl(spider, RESOLVE=server.resolve_map(), MAX_REDIRECTS=5)
    [failure] = spider.failures
    assert isinstance(failure, TooManyRedirects)
    assert url in str(failure) and "loop" in str(failure)
    assert run.stats["failures/too_many_redirects"] == 1
    assert run.stats.get("pages", 0) == 0
    assert len(server.paths_seen("a.test")) == 6  # the first request and 5 redirects


async def test_allow_redirects_false_hands_the_3xx_to_the_callback(site: Any) -> None:
    server = await site({"a.test": CHAIN})
    spider = Fetch([Request(server.url("a.test", "/hop1"), allow_redirects=False)])
    run = await crawl(spider, RESOLVE=server.resolve_map())
    [response] = spider.responses
    assert response.status == 302
    assert response.headers["Location"] == "/hop2"
    assert response.history == ()
    assert response.redirect_urls == [server.url("a.test", "/hop1")]
    assert run.stats["status/302"] == 1
    assert server.paths_seen("a.test") == ["/hop1"]


# -- uploads ----------------------------------------------------------------------------------


async def upload_echo(request: web.Request) -> web.Response:
    """What arrived: method, headers, the decoded body, and the form if it is one."""
    body = await request.read()  # aiohttp's server undoes one Content-Encoding
    form = dict(await request.post()) if request.content_type.endswith("urlencoded") else None
    return web.json_response(
        {
            "method": request.method,
            "content_type": request.content_type,
            "content_encoding": request.headers.getall("Content-Encoding", []),
            "body": body.decode("latin-1"),
            "form": form,
        }
    )


def echoed(spider: Fetch) -> dict[str, Any]:
    [response] = spider.responses
    return response.json()


@pytest.mark.parametrize(
    ("kwargs", "method", "content_type", "body", "form"),
    [
        ({"data": b"\x00\x01raw"}, "POST", "application/octet-stream", "\x00\x01raw", None),
        ({"data": "héllo"}, "PUT", "text/plain", "héllo".encode().decode("latin-1"), None),
        (
            {"data": {"q": "crawler", "page": "2"}},
            "POST",
            "application/x-www-form-urlencoded",
            "q=crawler&page=2",
            {"q": "crawler", "page": "2"},
        ),
        ({"json": {"a": [1, 2]}}, "PUT", "application/json", '{"a":[1,2]}', None),
    ],
    ids=["bytes", "str", "form", "json"],
)
async def test_request_bodies_arrive_as_sent(
    site: Any, kwargs: dict[str, Any], method: str, content_type: str, body: str, form: Any
) -> None:
    server = await site({"a.test": {"/upload": upload_echo}})
    spider = Fetch([Request(server.url("a.test", "/upload"), method=method, **kwargs)])
    await crawl(spider, RESOLVE=server.resolve_map())
    echo = echoed(spider)
    assert echo["method"] == method
    assert echo["content_type"] == content_type
    assert echo["body"].replace(" ", "") == body
    assert echo["form"] == form
    assert echo["content_encoding"] == []


PAYLOAD = b'{"items": [' + b", ".join(b'{"n": %d}' % n for n in range(200)) + b"]}"


async def test_a_pre_compressed_body_is_sent_once_compressed(site: Any) -> None:
    server = await site({"a.test": {"/upload": upload_echo}})
    request = Request(
        server.url("a.test", "/upload"),
        method="POST",
        data=gzip.compress(PAYLOAD),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    spider = Fetch([request])
    await crawl(spider, RESOLVE=server.resolve_map())
    echo = echoed(spider)
    assert echo["content_encoding"] == ["gzip"]
    assert echo["body"].encode("latin-1") == PAYLOAD  # one gzip layer, not two
    [seen] = server.requests
    assert seen.headers["Content-Encoding"] == "gzip"
    assert int(seen.headers["Content-Length"]) == len(gzip.compress(PAYLOAD))


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_compress_body_uploads_decode_on_the_server(site: Any, encoding: str) -> None:
    if encoding == "br":
        require_module("brotli", "brotlicffi", install="pip install brotli")
    server = await site({"a.test": {"/upload": upload_echo}})
    body, headers = compress_body(PAYLOAD, encoding)
    assert headers == {"Content-Encoding": encoding}
    assert len(body) < len(PAYLOAD)
    spider = Fetch(
        [Request(server.url("a.test", "/upload"), method="POST", data=body, headers=headers)]
    )
    await crawl(spider, RESOLVE=server.resolve_map())
    echo = echoed(spider)
    assert echo["content_encoding"] == [encoding]
    assert echo["body"].encode("latin-1") == PAYLOAD


def test_compress_body_values() -> None:
    body, headers = compress_body("é", "deflate")
    assert zlib.decompress(body) == "é".encode()
    assert headers == {"Content-Encoding": "deflate"}
    assert gzip.decompress(compress_body(b"x")[0]) == b"x"  # gzip is the default
    with pytest.raises(InvalidRequest, match="unsupported upload encoding 'zip'"):
        compress_body(b"x", "zip")
    with pytest.raises(InvalidRequest, match="bytes or str, got dict"):
        compress_body({"a": 1}, "gzip")  # type: ignore[arg-type]


# -- what each hop carries --------------------------------------------------------------------


async def seen_echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "body": (await request.read()).decode(),
            "authorization": request.headers.get("Authorization"),
            "cookies": dict(request.cookies),
        }
    )


@pytest.mark.parametrize(
    ("status", "method", "body"),
    [
        (303, "GET", ""),
        (302, "GET", ""),
        (301, "GET", ""),
        (307, "POST", "q=1"),
        (308, "POST", "q=1"),
    ],
)
async def test_a_post_redirect_keeps_or_drops_the_body_by_status(
    site: Any, status: int, method: str, body: str
) -> None:
    server = await site({"a.test": {"/form": redirect(status, "/result"), "/result": seen_echo}})
    spider = Fetch([Request(server.url("a.test", "/form"), method="POST", data={"q": "1"})])
    await crawl(spider, RESOLVE=server.resolve_map())
    [response] = spider.responses
    assert [h.status for h in response.history] == [status]
    assert response.json()["method"] == method
    assert response.json()["body"] == body
    assert response.request.method == "POST"  # the callback sees the request it made


async def test_credentials_of_the_request_stay_with_its_origin(site: Any) -> None:
    server = await site({"a.test": {"/me": seen_echo}, "b.test": {"/me": seen_echo}})
    server.pages["a.test"]["/local"] = redirect(302, "/me")
    server.pages["a.test"]["/away"] = redirect(302, server.url("b.test", "/me"))
    secret = {"headers": {"Authorization": "Bearer t0ken"}, "cookies": {"rc": "1"}}
    spider = Fetch(
        [
            Request(server.url("a.test", "/local"), **secret),  # type: ignore[arg-type]
            Request(server.url("a.test", "/away"), **secret),  # type: ignore[arg-type]
        ]
    )
    await crawl(spider, RESOLVE=server.resolve_map())
    by_start = {URL(r.history[0].url).path: r.json() for r in spider.responses}
    assert by_start["/local"]["authorization"] == "Bearer t0ken"  # same origin: kept
    assert by_start["/local"]["cookies"] == {"rc": "1"}
    assert by_start["/away"]["authorization"] is None  # another origin: dropped
    assert by_start["/away"]["cookies"] == {}


async def test_a_redirect_to_another_domain_uses_that_domains_jar(site: Any) -> None:
    async def set_b_cookie(request: web.Request) -> web.Response:
        response = web.Response(text="b home")
        response.set_cookie("bsid", "b-session", path="/")
        return response

    async def set_a_cookie_and_go(request: web.Request) -> web.Response:
        response = web.Response(status=302, headers={"Location": server.url("b.test", "/me")})
        response.set_cookie("asid", "a-session", path="/")
        return response

    server = await site(
        {"a.test": {"/go": set_a_cookie_and_go}, "b.test": {"/": set_b_cookie, "/me": seen_echo}}
    )

    class Chain(Fetch):
        def parse(self, response: Response) -> Any:
            self.responses.append(response)
            if response.url == server.url("b.test"):
                yield Request(server.url("a.test", "/go"), callback=self.parse)

    spider = Chain([Request(server.url("b.test"))])
    await crawl(spider, RESOLVE=server.resolve_map())
    landing = spider.responses[-1]
    assert landing.url == server.url("b.test", "/me")
    assert landing.json()["cookies"] == {"bsid": "b-session"}  # b.test's jar, not a.test's
    assert landing.history[0].headers["Set-Cookie"].startswith("asid=")


async def test_follow_may_refuse_a_redirect_target(site: Any) -> None:
    from crawler.downloader import Downloader, DownloaderOptions
    from crawler.settings import Settings

    server = await site(
        {"a.test": {"/away": redirect(302, "http://evil.test/")}, "evil.test": {"/": "evil"}}
    )
    settings = Settings.build(("test", {"RESOLVE": server.resolve_map()}))
    async with Downloader(DownloaderOptions.from_settings(settings)) as downloader:
        request = Request(server.url("a.test", "/away"))
        downloader.trust_start_host(request.host)  # a.test is on loopback, as the crawl does
        response = await downloader.fetch(request, follow=lambda target: target.host != "evil.test")
    assert response.status == 302
    assert response.history == ()
    assert response.headers["Location"] == "http://evil.test/"
    assert server.paths_seen() == ["a.test/away"]
