"""Shared helpers of the engine tests (test_engine_*.py).

Handlers answering raw bytes, redirects and Set-Cookie; a link-following spider; the
multi-host site with its expected page and link counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from yarl import URL

from crawler import Response, Spider
from crawler.testing import SiteServer, html_page


def page_key(url: str) -> str:
    """``host/path?query`` of a URL, the form ``SiteServer.paths_seen()`` uses."""
    parsed = URL(url)
    return f"{parsed.host}{parsed.raw_path_qs}"


def html(body: bytes, content_type: str = "text/html; charset=utf-8") -> Any:
    """A handler answering bytes with an explicit Content-Type (for undecodable pages)."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handler


class LinkSpider(Spider):
    """Yields one item per page and follows every link."""

    name = "links"

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        title = response.css_first("title")
        yield {
            "url": response.url,
            "title": title.text() if title is not None else None,
            "depth": response.request.depth,
        }
        for request in response.follow_all():
            yield request


# -- the multi-host site ----------------------------------------------------------------------

# Origins without a trailing slash; the site fixture fills in {port}.
A = "http://a.test:{port}"
B = "http://b.test:{port}"
C = "http://c.test:{port}"
EVIL = "http://evil.test:{port}"

MULTI_HOST_SITE = {
    "a.test": {
        "/": html_page(
            "A home",
            [
                "/a1",
                "/a2",
                "/a1#top",  # fragment variant
                "/a1",  # plain duplicate
                B,  # no trailing slash: the same page as B + "/"
                f"{EVIL}/",  # offsite
                "mailto:someone@a.test",  # not crawlable
                "/a2?x=1&y=2",
            ],
        ),
        "/a1": html_page("A1", ["/a3", "/a2#frag", "/", f"{C}/", "/a2?y=2&x=1#q", f"{B}/"]),
        "/a2": html_page("A2", ["/a4", "http://B.TEST:{port}/b1", "./a1"]),
        "/a2?x=1&y=2": html_page("A2 query", ["/a5", f"{EVIL}/e1"]),
        "/a3": html_page("A3", [f"{B}/b2", f"{A}/a3"]),
        "/a4": html_page("A4"),
        "/a5": html_page("A5", [f"{C}/c1"]),
        "/orphan": html_page("nobody links here"),
    },
    "b.test": {
        "/": html_page("B home", ["/b1", "/b2", "/b3", f"{A}/", f"{EVIL}/"]),
        "/b1": html_page("B1", ["/b4", "#x"]),
        "/b2": html_page("B2", ["/b5", f"{C}/c2"]),
        "/b3": html_page("B3"),
        "/b4": html_page("B4", [f"{A}/a4"]),
        "/b5": html_page("B5"),
    },
    "c.test": {
        "/": html_page("C home", ["/c1", "/c2", "/c3", A]),  # A: no trailing slash
        "/c1": html_page("C1", ["/c4", f"{A}/a5"]),
        "/c2": html_page("C2"),
        "/c3": html_page("C3", ["/c4#x"]),
        "/c4": html_page("C4", [f"{B}/b3"]),
    },
    # Served, so a crawl that wrongly goes offsite is seen here rather than in real DNS.
    "evil.test": {"/": html_page("evil"), "/e1": html_page("evil 1")},
}

ALLOWED_PAGES = {
    "a.test/",
    "a.test/a1",
    "a.test/a2",
    "a.test/a2?x=1&y=2",
    "a.test/a3",
    "a.test/a4",
    "a.test/a5",
    "b.test/",
    "b.test/b1",
    "b.test/b2",
    "b.test/b3",
    "b.test/b4",
    "b.test/b5",
    "c.test/",
    "c.test/c1",
    "c.test/c2",
    "c.test/c3",
    "c.test/c4",
}
# Crawlable links to allowed hosts on the 18 pages above (mailto: and "#x" are not links).
ALLOWED_LINKS = 35
OFFSITE_LINKS = 3


def multi_host_spider(server: SiteServer, **kwargs: Any) -> LinkSpider:
    return LinkSpider(
        start_urls=[server.url("a.test")], allowed_domains=["a.test", "b.test", "c.test"], **kwargs
    )


def fill_port(text: str, request: web.Request) -> str:
    """``{port}`` in a handler's output becomes the port the request came to."""
    return text.replace("{port}", str(request.url.port))


def redirect(location: str, status: int = 302) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": fill_port(location, request)})

    return handler


def set_cookie(title: str, links: list[str], *cookies: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        text = fill_port(html_page(title, links), request)
        response = web.Response(text=text, content_type="text/html")
        for cookie in cookies:
            response.headers.add("Set-Cookie", cookie)
        return response

    return handler
