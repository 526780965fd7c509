"""The engine end to end: cookies and per-domain headers, across redirects too.

Every site is a ``SiteServer`` whose host names (a.test, b.test, ...) the
``RESOLVE`` setting points at 127.0.0.1; the assertions read what the server
really received (``server.requests``), the items the crawl produced and the
stats. No test sleeps.
"""

from __future__ import annotations

from conftest import SiteFactory, run_spider
from engine_peers import LinkSpider, redirect, set_cookie

from crawler.testing import html_page


async def test_cookies_stay_on_the_domain_that_set_them(site: SiteFactory) -> None:
    b_home = "http://b.test:{port}/"
    server = await site(
        {
            "a.test": {
                "/": set_cookie(
                    "A",
                    ["/a1", "/a2", "/to-b", b_home],
                    "sid=a-secret; Path=/",
                    "stolen=1; Domain=b.test; Path=/",  # a.test may not set cookies for b.test
                ),
                "/a1": html_page("A1", ["http://b.test:{port}/b1"]),
                "/a2": html_page("A2", ["/a3"]),
                "/a3": html_page("A3"),
                "/to-b": redirect("http://b.test:{port}/landing"),
            },
            "b.test": {
                "/": set_cookie("B", ["/b1", "http://a.test:{port}/a3"], "bsid=b-secret; Path=/"),
                "/b1": html_page("B1", ["/b2"]),
                "/b2": html_page("B2"),
                "/landing": html_page("landing"),
            },
        }
    )
    spider = LinkSpider(start_urls=[server.url("a.test")])
    _, items = await run_spider(spider, server)

    cookies = {(r.host, r.path_qs): r.headers.get("Cookie", "") for r in server.requests}
    assert set(cookies) == {("a.test", path) for path in ("/", "/a1", "/a2", "/a3", "/to-b")} | {
        ("b.test", path) for path in ("/", "/b1", "/b2", "/landing")
    }
    for (host, path), header in cookies.items():
        if host == "a.test" and path != "/":
            assert header == "sid=a-secret", (host, path)
        if host == "b.test":
            assert "a-secret" not in header and "stolen" not in header, (host, path, header)
        assert "b-secret" not in header or host == "b.test", (host, path, header)
    assert cookies[("a.test", "/")] == ""
    assert len(items) == 8


async def test_cookie_jar_none_sends_no_cookies(site: SiteFactory) -> None:
    server = await site(
        {"a.test": {"/": set_cookie("A", ["/a1"], "sid=1; Path=/"), "/a1": html_page("A1")}}
    )
    await run_spider(LinkSpider(start_urls=[server.url("a.test")]), server, COOKIE_JAR="none")
    assert [r.headers.get("Cookie") for r in server.requests] == [None, None]


async def test_spider_and_domain_cookies(site: SiteFactory) -> None:
    server = await site(
        {
            "a.test": {"/": html_page("A", ["http://b.test:{port}/"])},
            "b.test": {"/": html_page("B")},
        }
    )

    await run_spider(
        LinkSpider(start_urls=[server.url("a.test")], cookies={"everywhere": "1"}),
        server,
        DOMAIN_COOKIES={"a.test": {"only_a": "2"}},
    )
    headers = {r.host: r.headers.get("Cookie", "") for r in server.requests}
    assert sorted(headers["a.test"].split("; ")) == ["everywhere=1", "only_a=2"]
    assert headers["b.test"] == ""  # the spider's cookies stay on the start domains


# -- redirects across domains (known bugs) ----------------------------------------------------


async def test_cookies_of_the_redirect_target_domain_are_sent(site: SiteFactory) -> None:
    server = await site(
        {
            "b.test": {
                "/": set_cookie("B", ["http://a.test:{port}/to-b"], "bsid=b-session; Path=/"),
                "/landing": html_page("landing"),
            },
            "a.test": {"/to-b": redirect("http://b.test:{port}/landing")},
        }
    )
    spider = LinkSpider(start_urls=[server.url("b.test")])
    await run_spider(spider, server, CONCURRENCY=1)
    landing = [r for r in server.requests if r.path_qs == "/landing"]
    assert [r.headers.get("Cookie") for r in landing] == ["bsid=b-session"]


async def test_domain_headers_do_not_follow_a_redirect_to_another_domain(
    site: SiteFactory,
) -> None:
    server = await site(
        {
            "a.test": {"/": redirect("http://b.test:{port}/landing")},
            "b.test": {"/landing": html_page("landing")},
        }
    )
    spider = LinkSpider(start_urls=[server.url("a.test")])
    await run_spider(spider, server, DOMAIN_HEADERS={"a.test": {"X-Api-Key": "a-secret"}})
    seen = {r.host: r.headers.get("X-Api-Key") for r in server.requests}
    assert seen == {"a.test": "a-secret", "b.test": None}
