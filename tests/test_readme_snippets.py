"""The code of README.md and of every page of docs/ works as written.

Every ```python block of README.md and docs/*.md parses; representative spiders (headers
and cookies, retries, uploads) are taken verbatim from whichever page holds them and
crawled end to end against a local SiteServer. The settings reference (docs/settings.md)
is checked in tests/test_docs.py and regenerated with ``python docs/gen_settings.py``.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from crawler import Crawler, CrawlResult, Settings, Spider
from crawler.testing import SiteServer, html_page

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
HANG_GUARD_S = 20.0

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def pages() -> list[Path]:
    """README.md and every page of docs/, in a stable order."""
    return [README, *sorted(DOCS.glob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    """The source of every ```python block of ``page``, in order."""
    return _PYTHON_BLOCK.findall(page.read_text(encoding="utf-8"))


def all_python_blocks() -> list[tuple[Path, int, str]]:
    """(page, block number from 1, source) for every ```python block of every page."""
    return [
        (page, number, source)
        for page in pages()
        for number, source in enumerate(python_blocks(page), 1)
    ]


def snippet(class_name: str) -> type[Spider]:
    """Execute the one block (on whichever page) defining ``class_name``; return that spider."""
    found = [
        (page, source)
        for page, _, source in all_python_blocks()
        if f"\nclass {class_name}(" in source
    ]
    assert len(found) == 1, f"class {class_name} is defined in {len(found)} blocks: {found}"
    [(page, source)] = found
    namespace: dict[str, Any] = {"__name__": f"docs_{class_name.lower()}"}
    exec(compile(source, f"{page.relative_to(ROOT)} ({class_name})", "exec"), namespace)
    spider_class = namespace[class_name]
    assert issubclass(spider_class, Spider)
    return spider_class


class Collect:
    """Keeps every item in a list, in order."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def process_item(self, item: Any, spider: Spider) -> Any:
        self.items.append(item)
        return item


async def crawl(
    spider: Spider, server: SiteServer, **settings: Any
) -> tuple[CrawlResult, list[Any]]:
    """Crawl with the spider's own settings, the test's (RESOLVE to ``server``) on top."""
    values = {"RESOLVE": server.resolve_map(), "PROGRESS_INTERVAL": 0, **settings}
    built = Settings.build(("spider settings", spider.settings), ("test", values))
    collect = Collect()
    async with asyncio.timeout(HANG_GUARD_S):
        result = await Crawler(spider, built, pipelines=[collect]).run()
    return result, collect.items


# -- every block parses ---------------------------------------------------------------------


def test_there_are_python_blocks() -> None:
    assert python_blocks(README), "README.md shows a spider"
    assert len(all_python_blocks()) >= 10


def test_every_python_block_parses() -> None:
    for page, number, source in all_python_blocks():
        ast.parse(source, filename=f"{page.relative_to(ROOT)} python block {number}")


# -- representative snippets, end to end -----------------------------------------------------


async def login(request: web.Request) -> web.Response:
    response = web.Response(text=html_page("Login"), content_type="text/html")
    response.set_cookie("session", "s-42", path="/")
    return response


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"headers": dict(request.headers), "cookies": dict(request.cookies)})


async def test_headers_and_cookies_snippet() -> None:
    spider_class = snippet("ShopSpider")
    pages = {"shop.test": {"/login": login, "/cart": echo}, "other.test": {"/": echo}}
    async with SiteServer(pages) as server:
        spider = spider_class(start_urls=[server.url("shop.test", "/login")])
        result, items = await crawl(spider, server)
        [login_seen, cart_seen] = server.requests
    assert result.stats["pages"] == 2
    assert items[0] == {"set_cookie": ["session=s-42; Path=/"], "session": "s-42"}
    assert items[1] == {
        "url": server.url("shop.test", "/cart"),
        "jar": {"consent": "yes", "region": "eu", "session": "s-42"},  # promo was not stored
    }
    assert login_seen.headers["User-Agent"] == "shopbot/1.0 (+https://example.com/bot)"
    headers = cart_seen.headers
    assert headers["User-Agent"] == "shopbot-cart/1.0"
    assert headers["Accept"] == "text/html"
    assert headers["Accept-Language"] == "en"
    assert headers["X-Api-Key"] == "k-123"
    cookies = dict(part.split("=", 1) for part in headers["Cookie"].split("; "))
    assert cookies == {"consent": "yes", "region": "eu", "session": "s-42", "promo": "spring"}


def sequence(*statuses: int) -> Any:
    """A handler answering each status in turn, then the last one forever."""
    remaining = list(statuses)

    async def handler(request: web.Request) -> web.Response:
        code = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        if code == 200:
            return web.Response(text=html_page(request.path), content_type="text/html")
        return web.Response(status=code, text="busy")

    return handler


async def test_retry_snippet() -> None:
    spider_class = snippet("Flaky")
    pages = {
        "shop.test": {
            "/busy": sequence(503, 503, 200),
            "/broken": sequence(500),
            "/report": sequence(503, 200),
            "/once": sequence(503, 200),
        }
    }
    async with SiteServer(pages) as server:
        spider = spider_class(site=server.url("shop.test", ""))
        result, items = await crawl(spider, server, RETRY_BACKOFF_BASE=0.01)
        seen = sorted(server.paths_seen("shop.test"))
        methods = {r.path_qs: r.method for r in server.requests}
    by_url = {item["url"].removeprefix(server.url("shop.test", "")): item for item in items}
    assert by_url == {
        "/busy": {"url": server.url("shop.test", "/busy"), "tries": 3},
        "/broken": {"url": server.url("shop.test", "/broken"), "error": "http_status", "tries": 2},
        "/report": {"url": server.url("shop.test", "/report"), "tries": 2},
        "/once": {"url": server.url("shop.test", "/once"), "error": "http_status", "tries": 1},
    }
    assert seen == ["/broken"] * 2 + ["/busy"] * 3 + ["/once"] + ["/report"] * 2
    assert methods["/report"] == "POST"
    stats = result.stats
    assert stats["retries"] == 4
    assert stats["retries/http_503"] == 3
    assert stats["retries/http_500"] == 1
    assert stats["failures/http_status"] == 2


async def upload_echo(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def test_uploads_snippet() -> None:
    spider_class = snippet("Uploads")
    paths = ("/raw", "/note", "/search", "/items", "/bulk")
    async with SiteServer({"api.test": dict.fromkeys(paths, upload_echo)}) as server:
        spider = spider_class(api=server.url("api.test", ""))
        result, items = await crawl(spider, server)
        seen = {r.path_qs: r for r in server.requests}
    assert sorted(item["url"] for item in items) == sorted(server.url("api.test", p) for p in paths)
    assert result.stats["status/200"] == 5
    assert (seen["/raw"].method, seen["/raw"].body) == ("POST", b"\x00\x01")
    assert seen["/raw"].headers["Content-Type"] == "application/octet-stream"
    assert (seen["/note"].method, seen["/note"].body) == ("PUT", "héllo".encode())
    assert seen["/note"].headers["Content-Type"].startswith("text/plain")
    assert seen["/search"].body == b"q=crawler&page=2"
    assert seen["/search"].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert json.loads(seen["/items"].body) == {"ids": [1, 2]}
    assert seen["/items"].headers["Content-Type"] == "application/json"
    bulk = seen["/bulk"]  # aiohttp's server undoes the one gzip layer
    assert bulk.headers["Content-Encoding"] == "gzip"
    assert bulk.headers["Content-Type"] == "application/json"
    assert json.loads(bulk.body) == {"ids": list(range(1000))}
