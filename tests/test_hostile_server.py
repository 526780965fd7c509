"""A hostile-server suite: bombs, trickles, private addresses, credentials across origins.

Every server is on loopback. 127.0.0.1 is the crawl's own (start) host; other
loopback addresses (127.0.0.2, 127.0.0.3) stand for private hosts the crawl
must not reach unless told. Assertions are on what the servers saw and on the
crawl's stats.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hostile_peers import (
    bomb,
    raw_server,
    stall_body,
    trickle_body,
    trickle_headers,
)
from multidict import CIMultiDict
from peers import crawl

from crawler import Request, Response, Spider
from crawler.downloader.decoding import ACCEPT_ENCODING
from crawler.testing import SiteServer

CAP = 1024 * 1024  # MAX_RESPONSE_SIZE in these tests: far below every bomb


class Fetch(Spider):
    """GETs ``urls`` (or ``requests``); keeps responses, failures, and follows links if asked."""

    name = "fetch"

    def __init__(self, urls: list[str] = (), requests: list[Request] = (), follow: bool = False):  # type: ignore[assignment]
        super().__init__()
        self.urls = list(urls)
        self.requests = list(requests)
        self.follow = follow
        self.responses: list[Response] = []
        self.failures: list[Exception] = []

    async def start(self) -> AsyncIterator[Request]:
        for request in self.requests:
            yield request.replace(errback=self.failed)
        for url in self.urls:
            yield Request(url, errback=self.failed)

    def parse(self, response: Response) -> Any:
        self.responses.append(response)
        yield {"url": response.url, "size": len(response.body)}
        if self.follow:
            for href in response.css("a[href]"):
                yield response.follow(href, errback=self.failed)

    def failed(self, failure: Exception) -> None:
        self.failures.append(failure)


def bomb_handler(encoding: str, with_length: bool) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = bomb(encoding)
        headers = {"Content-Encoding": encoding, "Content-Type": "text/html"}
        if with_length:
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)  # chunked: no length to check first
        await response.prepare(request)
        for start in range(0, len(body), 16384):
            await response.write(body[start : start + 16384])
        await response.write_eof()
        return response

    return handler


ENCODINGS = ["gzip", "deflate", "br", "zstd", "gzip, gzip"]


# -- 1. decoded bytes are capped ---------------------------------------------------------------


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_a_bomb_is_refused_at_the_decoded_cap(encoding: str, with_length: bool) -> None:
    pages = {
        "127.0.0.1": {
            "/bomb": bomb_handler(encoding, with_length),
            "/ok": "<p>still crawling</p>",
        }
    }
    async with SiteServer(pages) as server:
        spider = Fetch([server.url("127.0.0.1", "/bomb"), server.url("127.0.0.1", "/ok")])
        run = await crawl(spider, MAX_RESPONSE_SIZE=CAP)
    assert run.stats["failures/too_large"] == 1
    assert [r.url for r in spider.responses] == [server.url("127.0.0.1", "/ok")]
    assert "once decoded" in str(spider.failures[0])
    assert run.stats.get("bytes", 0) < 2 * CAP  # not the 256 MiB the bomb decodes to


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "gzip, gzip", "br, gzip"])
async def test_each_encoding_and_stacks_of_them_are_decoded(encoding: str) -> None:
    import gzip

    import brotli

    html = b"<p>" + b"decoded " * 1000 + b"</p>"
    layers = {
        "gzip": gzip.compress,
        "deflate": __import__("zlib").compress,
        "br": brotli.compress,
        "zstd": __import__("backports.zstd", fromlist=["compress"]).compress,
    }
    body = html
    for name in [e.strip() for e in encoding.split(",")]:
        body = layers[name](body)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": encoding})

    async with SiteServer({"127.0.0.1": {"/": handler}}) as server:
        spider = Fetch([server.url("127.0.0.1")])
        await crawl(spider)
    assert spider.responses[0].body == html
    assert server.requests[0].headers["Accept-Encoding"] == ACCEPT_ENCODING


async def test_more_than_three_layers_are_refused_and_garbage_is_a_bad_response() -> None:
    async def layers(request: web.Request) -> web.Response:
        return web.Response(body=b"x", headers={"Content-Encoding": "gzip, gzip, gzip, gzip"})

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})

    pages = {"127.0.0.1": {"/layers": layers, "/garbage": garbage}}
    async with SiteServer(pages) as server:
        spider = Fetch([server.url("127.0.0.1", "/layers"), server.url("127.0.0.1", "/garbage")])
        run = await crawl(spider)
    assert run.stats["failures/bad_response"] == 2
    messages = sorted(str(f) for f in spider.failures)
    assert "4 Content-Encoding layers" in messages[1]
    assert "cannot decode the gzip body" in messages[0]


async def test_robots_txt_is_read_up_to_500_kib_even_from_a_bomb() -> None:
    async def robots(request: web.Request) -> web.Response:
        return web.Response(body=bomb("gzip"), headers={"Content-Encoding": "gzip"})

    pages = {"127.0.0.1": {"/robots.txt": robots, "/": "<p>home</p>"}}
    async with SiteServer(pages) as server:
        spider = Fetch([server.url("127.0.0.1")])
        run = await crawl(spider, ROBOTSTXT_OBEY=True, MAX_RESPONSE_SIZE=CAP)
    # 256 MiB of NULs: cut at 500 KiB, parsed (no rules), and the page is fetched
    assert len(server.robots_requests) == 1
    assert run.stats["pages"] == 1
    assert "failures/too_large" not in run.stats


async def test_peak_memory_stays_near_the_cap_while_1_gib_bombs_are_refused(tmp_path: Any) -> None:
    """In a child process, so its peak RSS is this crawl's alone."""
    script = tmp_path / "bombs.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, json, resource, sys
            sys.path.insert(0, {os.path.dirname(__file__)!r})
            from hostile_peers import bomb
            from test_hostile_server import Fetch, bomb_handler
            from peers import crawl
            from crawler.testing import SiteServer

            async def main():
                encodings = {ENCODINGS!r}
                pages = {{"127.0.0.1": {{f"/{{i}}": bomb_handler(e, False)
                                       for i, e in enumerate(encodings)}}}}
                for e in encodings:
                    bomb(e, 1024)  # built before the baseline is taken
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                async with SiteServer(pages) as server:
                    spider = Fetch([server.url("127.0.0.1", f"/{{i}}")
                                    for i in range(len(encodings))])
                    run = await crawl(spider, MAX_RESPONSE_SIZE={CAP})
                after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                print(json.dumps({{"too_large": run.stats.get("failures/too_large"),
                                  "grew_kib": after - before}}))

            asyncio.run(main())
            """
        )
    )
    # the bombs are served from the same process: bomb() caches them before the baseline
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["too_large"] == len(ENCODINGS)
    assert result["grew_kib"] < 64 * 1024, result  # 5 GiB of bombs; the cap is 1 MiB


# -- 2. time is capped -------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", [trickle_headers, trickle_body], ids=["headers", "body"])
async def test_a_trickling_server_is_cut_off_by_request_timeout(behaviour: Any) -> None:
    async with raw_server(behaviour) as server:
        spider = Fetch([server.url("/")])
        run = await crawl(spider, REQUEST_TIMEOUT=0.5, READ_TIMEOUT=30)
    assert run.stats["failures/timeout"] == 1
    assert spider.responses == []


async def test_a_stalled_keep_alive_body_is_cut_off_by_read_timeout() -> None:
    async with raw_server(stall_body) as server:
        spider = Fetch([server.url("/")])
        run = await crawl(spider, REQUEST_TIMEOUT=30, READ_TIMEOUT=0.3)
    assert run.stats["failures/timeout"] == 1
    assert server.connections == 1


# -- 3. no reach into private networks ---------------------------------------------------------


@pytest.fixture
async def private_host() -> AsyncIterator[SiteServer]:
    """A server on 127.0.0.2: a private host (an intranet admin page, a metadata service)."""
    pages = {host: {"/admin": "secret admin page"} for host in ("127.0.0.2", "intranet.test")}
    async with SiteServer(pages, host="127.0.0.2") as server:
        yield server


def private_urls(private: SiteServer) -> list[str]:
    port = private.port
    return [
        f"http://127.0.0.2:{port}/admin",  # an IP literal
        f"http://intranet.test:{port}/admin",  # a name resolving to it (RESOLVE here)
        f"http://0x7f.0.0.2:{port}/admin",  # in hex, as inet_aton (the system resolver) reads it
        f"http://2130706434:{port}/admin",  # as one number: yarl refuses the URL itself
    ]


async def test_links_and_redirects_to_private_addresses_are_refused(
    private_host: SiteServer,
) -> None:
    links = "".join(f'<a href="{u}">x</a>' for u in private_urls(private_host))
    pages = {
        "127.0.0.1": {
            "/": f"<html>{links}<a href='/go'>go</a></html>",
            "/go": lambda r: _redirect(f"http://127.0.0.2:{private_host.port}/admin"),
        }
    }
    async with SiteServer(pages) as server:
        spider = Fetch([server.url("127.0.0.1")], follow=True)
        run = await crawl(spider, RESOLVE={"intranet.test": "127.0.0.2"})
    assert private_host.requests == []  # the private host saw nothing
    assert run.stats["failures/blocked_address"] == 4  # 3 links and the redirect
    assert sum("ALLOWED_NETWORKS" in str(f) for f in spider.failures) == 4
    assert server.paths_seen() == ["127.0.0.1/", "127.0.0.1/go"]


async def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


@pytest.mark.parametrize(
    "settings",
    [{"ALLOWED_NETWORKS": ["127.0.0.2/32"]}, {"BLOCK_PRIVATE_NETWORKS": False}],
    ids=["allowed-network", "guard-off"],
)
async def test_allowed_networks_or_the_guard_off_let_the_crawl_in(
    private_host: SiteServer, settings: dict[str, Any]
) -> None:
    links = "".join(f'<a href="{u}">x</a>' for u in private_urls(private_host)[:2])
    async with SiteServer({"127.0.0.1": {"/": f"<html>{links}</html>"}}) as server:
        spider = Fetch([server.url("127.0.0.1")], follow=True)
        run = await crawl(spider, RESOLVE={"intranet.test": "127.0.0.2"}, **settings)
    assert "failures/blocked_address" not in run.stats
    assert len(private_host.requests) == 2


async def test_a_private_start_host_is_crawled_with_no_setting(private_host: SiteServer) -> None:
    spider = Fetch([f"http://intranet.test:{private_host.port}/admin"])
    run = await crawl(spider, RESOLVE={"intranet.test": "127.0.0.2"})
    assert run.stats["pages"] == 1
    assert [r.text for r in spider.responses] == ["secret admin page"]


async def test_refusals_are_logged_once_per_host(
    private_host: SiteServer, caplog: pytest.LogCaptureFixture
) -> None:
    links = "".join(f'<a href="http://127.0.0.2:{private_host.port}/{n}">x</a>' for n in range(5))
    async with SiteServer({"127.0.0.1": {"/": f"<html>{links}</html>"}}) as server:
        spider = Fetch([server.url("127.0.0.1")], follow=True)
        run = await crawl(spider)
    assert run.stats["failures/blocked_address"] == 5
    refusals = [r for r in caplog.records if r.name == "crawler.downloader.guard"]
    assert len(refusals) == 1
    assert "ALLOWED_NETWORKS=['127.0.0.2/32']" in refusals[0].getMessage()


# -- 4. credentials stay with their origin -----------------------------------------------------


def _seen_headers(server: Any, path: str) -> CIMultiDict[str]:
    for seen in server.requests:
        if seen.path_qs == path:
            return CIMultiDict(seen.headers)
    raise AssertionError(f"{path} was not requested: {server.paths_seen()}")


async def test_configured_credentials_do_not_follow_a_redirect_to_another_port() -> None:
    async with SiteServer({"a.test": {"/landing": "<p>other port</p>"}}) as other:
        pages = {
            "a.test": {
                "/start": lambda r: _redirect(other.url("a.test", "/landing")),
                "/same": lambda r: _redirect("/final"),
                "/final": "<p>same origin</p>",
            }
        }
        async with SiteServer(pages) as server:
            spider = Fetch([server.url("a.test", "/start"), server.url("a.test", "/same")])
            await crawl(
                spider,
                RESOLVE={"a.test": "127.0.0.1"},
                DEFAULT_HEADERS={"Cookie": "default=1", "Proxy-Authorization": "Basic cHg6cHg="},
                DOMAIN_HEADERS={"a.test": {"Authorization": "Bearer domain-token"}},
            )
    first = _seen_headers(server, "/start")
    assert first["Authorization"] == "Bearer domain-token"  # the origin it was meant for
    assert first["Cookie"] == "default=1"
    landing = _seen_headers(other, "/landing")  # same host, another port: another origin
    for name in ("Authorization", "Cookie", "Proxy-Authorization"):
        assert name not in landing
    assert _seen_headers(server, "/final")["Authorization"] == "Bearer domain-token"


async def test_request_credentials_duplicates_included_are_dropped_across_origins() -> None:
    pages: dict[str, dict[str, Any]] = {"www.a.test": {}, "api.a.test": {"/": "<p>api</p>"}}
    async with SiteServer(pages) as server:
        pages["www.a.test"]["/"] = lambda r: _redirect(server.url("api.a.test", "/"))
        headers = CIMultiDict([("Authorization", "Basic one"), ("authorization", "Basic two")])
        spider = Fetch(requests=[Request(server.url("www.a.test"), headers=headers)])
        spider.headers = {"Authorization": "Bearer spider"}
        await crawl(spider, RESOLVE=server.resolve_map())
    www, api = server.requests
    assert (www.host, api.host) == ("www.a.test", "api.a.test")
    assert "Authorization" in www.headers  # sent where it was meant to go...
    assert "Authorization" not in api.headers  # ...and neither copy, nor the spider's, beyond
    assert api.headers.get("Accept-Encoding") == ACCEPT_ENCODING


async def test_a_url_with_userinfo_is_sent_as_basic_auth_to_its_origin_only() -> None:
    async with SiteServer({"127.0.0.1": {"/private": "<p>in</p>"}}) as server:
        url = server.url("127.0.0.1", "/private").replace("://", "://user:s3cret@")
        spider = Fetch([url])
        run = await crawl(spider)
    expected = "Basic " + base64.b64encode(b"user:s3cret").decode()
    assert server.requests[0].headers["Authorization"] == expected
    assert run.stats.get("internal_errors", 0) == 0
    assert "s3cret" not in spider.responses[0].url


async def test_a_stack_whose_inner_layer_swallows_everything_is_refused() -> None:
    import brotli
    from test_decoding import _empty_blocks_gzip

    body = brotli.compress(_empty_blocks_gzip(64), quality=1)  # 64 MiB of nothing, in 45 KB

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": "gzip, br"})

    async with SiteServer({"127.0.0.1": {"/": handler}}) as server:
        spider = Fetch([server.url("127.0.0.1")])
        run = await crawl(spider, MAX_RESPONSE_SIZE=CAP)
    assert run.stats["failures/too_large"] == 1
    assert "across its gzip, br layers" in str(spider.failures[0])


async def test_bodiless_responses_are_not_held_to_their_content_length() -> None:
    async def head(request: web.Request) -> web.Response:
        return web.Response(headers={"Content-Length": str(10 * CAP), "Content-Encoding": "br"})

    async def not_modified(request: web.Request) -> web.Response:
        return web.Response(status=304, headers={"Content-Length": str(10 * CAP)})

    pages = {"127.0.0.1": {"/file": head, "/cached": not_modified}}
    async with SiteServer(pages) as server:
        spider = Fetch(
            requests=[
                Request(server.url("127.0.0.1", "/file"), method="HEAD"),
                Request(
                    server.url("127.0.0.1", "/cached"),
                    meta={"handle_httpstatus_list": [304]},
                ),
            ]
        )
        run = await crawl(spider, MAX_RESPONSE_SIZE=CAP)
    assert "failures/too_large" not in run.stats
    assert sorted(r.status for r in spider.responses) == [200, 304]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "100.64.0.1", "169.254.169.254", "172.16.0.1", "192.168.1.1",
        "192.0.0.8", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1",
        "fc00::1", "ff02::1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "64:ff9b:1::a9fe:a9fe",
        "2002:7f00:1::1", "::7f00:1", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
    ],
)  # fmt: skip
def test_private_addresses_in_every_spelling_are_not_public(address: str) -> None:
    import ipaddress

    from crawler.downloader.guard import is_public

    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_public(address: str) -> None:
    import ipaddress

    from crawler.downloader.guard import is_public

    assert is_public(ipaddress.ip_address(address))


async def test_a_private_ip_literal_is_refused_even_through_a_proxy(
    private_host: SiteServer, tmp_path: Any
) -> None:
    from peers import tinyproxy

    link = f"http://127.0.0.2:{private_host.port}/admin"
    async with tinyproxy(tmp_path) as proxy:
        async with SiteServer({"127.0.0.1": {"/": f'<a href="{link}">x</a>'}}) as server:
            spider = Fetch([server.url("127.0.0.1")], follow=True)
            run = await crawl(spider, PROXY=proxy.url)
    assert run.stats["pages"] == 1  # the start page, through the proxy (on loopback: trusted)
    assert run.stats["failures/blocked_address"] == 1
    assert private_host.requests == []
    assert "through a proxy" in str(spider.failures[0])


async def test_spider_wide_credentials_stay_on_the_start_domains() -> None:
    pages = {
        "a.test": {"/": '<a href="http://b.test:{port}/">b</a>'},
        "b.test": {"/": "<p>elsewhere</p>"},
    }
    async with SiteServer(pages) as server:
        pages["a.test"]["/"] = f'<a href="{server.url("b.test")}">b</a>'
        spider = Fetch([server.url("a.test")], follow=True)
        spider.cookies = {"sid": "spider-session"}
        await crawl(
            spider,
            RESOLVE=server.resolve_map(),
            DEFAULT_HEADERS={"Authorization": "Bearer global", "X-Plain": "kept"},
            DOMAIN_HEADERS={"b.test": {"Authorization": "Bearer for-b"}},
        )
    a, b = server.requests
    assert (a.headers["Authorization"], a.headers["Cookie"]) == (
        "Bearer global",
        "sid=spider-session",
    )
    assert b.headers["Authorization"] == "Bearer for-b"  # its own, from DOMAIN_HEADERS
    assert "Cookie" not in b.headers
    assert b.headers["X-Plain"] == "kept"  # only credentials are scoped


async def test_url_credentials_carry_to_same_origin_links_only() -> None:
    async with SiteServer({"127.0.0.1": {"/elsewhere": "<p>other port</p>"}}) as other:
        pages = {
            "127.0.0.1": {
                "/": f'<a href="/next">n</a><a href="{other.url("127.0.0.1", "/elsewhere")}">o</a>',
                "/next": "<p>still in</p>",
            }
        }
        async with SiteServer(pages) as server:
            url = server.url("127.0.0.1").replace("://", "://user:s3cret@")
            spider = Fetch([url], follow=True)
            await crawl(spider)
    expected = "Basic " + base64.b64encode(b"user:s3cret").decode()
    assert [r.headers.get("Authorization") for r in server.requests] == [expected, expected]
    assert [r.path_qs for r in other.requests] == ["/elsewhere"]
    assert "Authorization" not in other.requests[0].headers
