"""SitemapSpider against a real local site: robots.txt Sitemap lines, an index, a gzipped
sitemap, rules routing pages to callbacks, and hostile XML refused without a crash."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from peers import crawl
from politeness_peers import timed_site

from crawler import Response
from crawler.spiders import sitemap as sitemap_module
from crawler.spiders.sitemap import SitemapSpider, parse_sitemap
from crawler.testing import html_page

ORIGIN = "http://site.test:{port}"
NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
XHTML = 'xmlns:xhtml="http://www.w3.org/1999/xhtml"'


def urlset(*entries: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {NS} {XHTML}>{"".join(entries)}</urlset>'
    )


def url(loc: str, extra: str = "") -> str:
    return f"<url><loc>{loc}</loc>{extra}</url>"


def index(*locs: str) -> str:
    items = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex {NS}>{items}</sitemapindex>'


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&lol9;</loc></url></urlset>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&secret;</loc></url></urlset>
"""


class ShopSitemap(SitemapSpider):
    name = "shop-sitemap"
    sitemap_rules = ((r"/products/", "parse_product"), (r"/blog/", "parse_post"), (r"", "parse"))
    sitemap_follow = (r"sitemap_(pages|products)",)

    def parse_product(self, response: Response) -> Iterator[dict[str, Any]]:
        yield {"kind": "product", "path": response.request.yarl_url.path}

    def parse_post(self, response: Response) -> Iterator[dict[str, Any]]:
        yield {"kind": "post", "path": response.request.yarl_url.path}


def shop_site() -> dict[str, dict[str, Any]]:
    """The site; its gzipped sitemap is added by _gzipped_products once the port is known."""
    pages = urlset(
        url(f"{ORIGIN}/about", "<lastmod>2024-05-01</lastmod>"),
        url(f"{ORIGIN}/private/secret"),
        url(
            f"{ORIGIN}/blog/1",
            f'<xhtml:link rel="alternate" hreflang="fr" href="{ORIGIN}/fr/blog/1"/>',
        ),
    )
    site: dict[str, Any] = {
        "/robots.txt": (
            f"User-agent: *\nDisallow: /private\n\nSitemap: {ORIGIN}/sitemap_index.xml\n"
        ),
        "/sitemap_index.xml": index(
            f"{ORIGIN}/sitemap_pages.xml",
            f"{ORIGIN}/sitemap_products.xml.gz",
            f"{ORIGIN}/archive.xml",  # not matched by sitemap_follow
        ),
        "/sitemap_pages.xml": pages,
        "/archive.xml": urlset(url(f"{ORIGIN}/old")),
        "/old": html_page("old"),
        "/about": html_page("About us"),
        "/private/secret": html_page("secret"),
        "/blog/1": html_page("post"),
        "/fr/blog/1": html_page("billet"),
        "/products/1": html_page("p1"),
        "/products/2": html_page("p2"),
    }
    return {"site.test": site}


async def _gzipped_products(server: Any) -> None:
    """The .xml.gz sitemap is served as raw gzip bytes (no Content-Encoding)."""
    products = urlset(
        url(server.url("site.test", "/products/1")), url(server.url("site.test", "/products/2"))
    )
    server.pages["site.test"]["/sitemap_products.xml.gz"] = gzip.compress(products.encode())


async def test_robots_index_gzip_and_rules_route_pages_to_callbacks() -> None:
    async with timed_site(shop_site()) as server:
        await _gzipped_products(server)
        spider = ShopSitemap(sitemap_urls=[server.url("site.test", "/robots.txt")])
        run = await crawl(spider, RESOLVE=server.resolve_map(), ROBOTSTXT_OBEY=True)
    about = server.url("site.test", "/about")
    assert sorted(run.items, key=repr) == sorted(
        [
            {"kind": "product", "path": "/products/1"},
            {"kind": "product", "path": "/products/2"},
            {"kind": "post", "path": "/blog/1"},
            {"url": about, "title": "About us", "lastmod": "2024-05-01"},
        ],
        key=repr,
    )
    seen = server.paths_seen("site.test")
    assert "/archive.xml" not in seen and "/old" not in seen  # sitemap_follow
    assert "/private/secret" not in seen  # robots.txt still applies
    assert "/fr/blog/1" not in seen  # alternates only when asked
    assert run.stats["robots/disallowed"] == 1
    assert "callback_errors" not in run.stats


async def test_alternate_links_are_followed_when_asked() -> None:
    async with timed_site(shop_site()) as server:
        await _gzipped_products(server)
        spider = ShopSitemap(
            sitemap_urls=[server.url("site.test", "/sitemap_pages.xml")],
            sitemap_alternate_links=True,
        )
        run = await crawl(spider, RESOLVE=server.resolve_map())
    assert {"kind": "post", "path": "/fr/blog/1"} in run.items
    assert "/fr/blog/1" in server.paths_seen("site.test")


async def test_a_gzip_encoded_sitemap_is_decoded_by_the_transport() -> None:
    """A server may also send the sitemap with Content-Encoding: gzip."""
    body = urlset(url("http://site.test:{port}/a")).encode()

    async def encoded(request: web.Request) -> web.Response:
        xml = body.replace(b"{port}", str(request.url.port).encode())
        return web.Response(
            body=gzip.compress(xml),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/xml"},
        )

    pages = {"/sitemap.xml": encoded, "/a": html_page("A")}
    async with timed_site({"site.test": pages}) as server:
        spider = SitemapSpider(sitemap_urls=[server.url("site.test", "/sitemap.xml")])
        run = await crawl(spider, RESOLVE=server.resolve_map())
    assert [item["title"] for item in run.items] == ["A"]


async def test_a_hostile_sitemap_is_refused_without_crashing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pages = {
        "/evil.xml": BILLION_LAUGHS,
        "/xxe.xml": EXTERNAL_ENTITY,
        "/good.xml": urlset(url(f"{ORIGIN}/ok")),
        "/ok": html_page("ok"),
    }
    async with timed_site({"site.test": pages}) as server:
        spider = SitemapSpider(
            sitemap_urls=[
                server.url("site.test", p) for p in ("/evil.xml", "/xxe.xml", "/good.xml")
            ]
        )
        with caplog.at_level(logging.WARNING):
            run = await crawl(spider, RESOLVE=server.resolve_map())
    assert [item["title"] for item in run.items] == ["ok"]
    assert run.result.finish_reason == "finished"
    assert "callback_errors" not in run.stats
    assert "not a sitemap (or malformed)" in caplog.text
    assert server.url("site.test", "/evil.xml") in caplog.text


def test_parse_sitemap_refuses_entity_tricks() -> None:
    assert parse_sitemap(BILLION_LAUGHS) == ("", [])
    assert parse_sitemap(EXTERNAL_ENTITY) == ("", [])
    assert parse_sitemap(gzip.compress(BILLION_LAUGHS)) == ("", [])


def test_parse_sitemap_entries() -> None:
    kind, entries = parse_sitemap(
        urlset(
            url("http://s.test/a", "<lastmod> 2024-01-02 </lastmod>"),
            url("http://s.test/b", '<xhtml:link rel="alternate" href="http://s.test/b-fr"/>'),
            "<url><lastmod>2024-01-01</lastmod></url>",  # no loc: skipped
        ).encode()
    )
    assert kind == "urlset"
    assert entries == [
        {"loc": "http://s.test/a", "lastmod": "2024-01-02"},
        {"loc": "http://s.test/b", "alternates": ["http://s.test/b-fr"]},
    ]
    assert parse_sitemap(index("http://s.test/s1.xml").encode()) == (
        "sitemapindex",
        [{"loc": "http://s.test/s1.xml"}],
    )


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"<html><body>not xml", b"\x1f\x8b\x08broken gzip", b"plain text"],
)
def test_parse_sitemap_rejects_garbage(body: bytes) -> None:
    assert parse_sitemap(body)[1] == []


def test_a_decompressed_sitemap_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sitemap_module, "_MAX_SITEMAP_BYTES", 100)
    big = urlset(*(url(f"http://s.test/{n}") for n in range(50))).encode()
    assert parse_sitemap(gzip.compress(big)) == ("", [])  # cut off: not a usable sitemap
    monkeypatch.setattr(sitemap_module, "_MAX_SITEMAP_BYTES", 10 * len(big))
    assert len(parse_sitemap(gzip.compress(big))[1]) == 50


def test_sitemap_urls_from_the_command_line_are_split() -> None:
    spider = SitemapSpider(sitemap_urls="http://a.test/robots.txt, http://b.test/s.xml")
    assert spider.sitemap_urls == ["http://a.test/robots.txt", "http://b.test/s.xml"]


async def test_relative_and_bad_sitemap_lines_in_robots_txt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pages = {
        "/robots.txt": "Sitemap: /maps/sitemap.xml\nSitemap: ftp://site.test/other.xml\n",
        "/maps/sitemap.xml": urlset(url(f"{ORIGIN}/a")),
        "/a": html_page("A"),
    }
    async with timed_site({"site.test": pages}) as server:
        spider = SitemapSpider(sitemap_urls=[server.url("site.test", "/robots.txt")])
        with caplog.at_level(logging.WARNING):
            run = await crawl(spider, RESOLVE=server.resolve_map())
    assert [item["title"] for item in run.items] == ["A"]
    assert "callback_errors" not in run.stats
    assert "ftp://site.test/other.xml" in caplog.text
