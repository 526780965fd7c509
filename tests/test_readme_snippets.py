"""README.md's code works as written.

Every ```python block parses; representative spiders (headers and cookies, retries,
uploads) are taken from the README verbatim and crawled end to end against a local
SiteServer; the settings table lists every setting with its current default and doc.

``python tests/test_readme_snippets.py`` prints the settings tables to paste into the README.
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
HANG_GUARD_S = 20.0

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[str]:
    """The source of every ```python block of the README, in order."""
    return _PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))


def snippet(class_name: str) -> type[Spider]:
    """Execute the README block defining ``class_name`` and return that spider class."""
    [source] = [block for block in python_blocks() if f"\nclass {class_name}(" in block]
    namespace: dict[str, Any] = {"__name__": f"readme_{class_name.lower()}"}
    exec(compile(source, f"README.md ({class_name})", "exec"), namespace)
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
    assert len(python_blocks()) >= 10


def test_every_python_block_parses() -> None:
    for number, source in enumerate(python_blocks(), 1):
        ast.parse(source, filename=f"README.md python block {number}")


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


# -- the settings table ------------------------------------------------------------------------

SETTINGS_GROUPS: dict[str, tuple[str, ...]] = {
    "Concurrency and politeness": (
        "CONCURRENCY",
        "CONCURRENCY_PER_HOST",
        "DOWNLOAD_DELAY",
        "DOWNLOAD_DELAY_JITTER",
        "HOST_DELAYS",
        "AUTOTHROTTLE",
        "AUTOTHROTTLE_START_DELAY",
        "AUTOTHROTTLE_MAX_DELAY",
        "AUTOTHROTTLE_TARGET_CONCURRENCY",
    ),
    "robots.txt": (
        "ROBOTSTXT_OBEY",
        "ROBOTSTXT_RETRY_S",
        "ROBOTSTXT_MAX_FAILURES",
        "ROBOTSTXT_MAX_DELAY",
    ),
    "Retries": (
        "RETRY_TIMES",
        "RETRY_HTTP_CODES",
        "RETRY_BACKOFF_BASE",
        "RETRY_BACKOFF_MAX",
        "RETRY_AFTER_MAX",
        "RETRY_NON_IDEMPOTENT",
    ),
    "Crawl scope and stop conditions": (
        "DEPTH_LIMIT",
        "MAX_PAGES",
        "MAX_ITEMS",
        "MAX_DURATION",
        "MAX_ERRORS",
    ),
    "HTTP: headers, cookies, redirects, limits": (
        "USER_AGENT",
        "DEFAULT_HEADERS",
        "DOMAIN_HEADERS",
        "DOMAIN_COOKIES",
        "COOKIE_JAR",
        "REQUEST_TIMEOUT",
        "MAX_REDIRECTS",
        "TRACE_CONFIGS",
        "MAX_SESSIONS",
    ),
    "Safety limits (see [Safety limits](#safety-limits))": (
        "READ_TIMEOUT",
        "MAX_RESPONSE_SIZE",
        "MAX_LINKS_PER_RESPONSE",
        "BLOCK_PRIVATE_NETWORKS",
        "ALLOWED_NETWORKS",
    ),
    "Connections and DNS": (
        "RESOLVE",
        "DNS_CACHE",
        "DNS_CACHE_TTL",
        "DNS_NAMESERVERS",
        "UNIX_SOCKETS",
    ),
    "TLS": ("SSL_VERIFY", "SSL_CA_BUNDLE", "SSL_CLIENT_CERT", "SSL_CLIENT_KEY", "DOMAIN_SSL"),
    "Proxies": (
        "PROXY",
        "PROXIES",
        "PROXY_FILE",
        "PROXY_ROTATION",
        "BAN_STATUS_CODES",
        "BAN_BODY_PATTERNS",
        "BAN_ON_NETWORK_ERROR",
        "PROXY_BAN_COOLDOWN",
        "PROXY_MAX_BANS",
        "TRUST_ENV",
    ),
    "State, checkpoints and shutdown": (
        "STATE_DIR",
        "CHECKPOINT_INTERVAL",
        "SHUTDOWN_TIMEOUT",
        "FRONTIER_URL",
        "JOB",
        "LEASE_TIMEOUT",
    ),
    "HTTP cache (see [The HTTP cache](#the-http-cache))": (
        "HTTPCACHE_ENABLED",
        "HTTPCACHE_DIR",
        "HTTPCACHE_EXPIRATION_SECS",
        "HTTPCACHE_POLICY",
        "HTTPCACHE_IGNORE_HTTP_CODES",
    ),
    "Middlewares, pipelines and logging": (
        "DOWNLOADER_MIDDLEWARES",
        "PIPELINES",
        "PROGRESS_INTERVAL",
        "LOG_LEVEL",
    ),
}


def format_default(value: Any) -> str:
    """A setting's default as the README shows it."""
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value)
    elif value == "":
        text = '""'
    else:
        text = str(value)
    return f"`{text}`"


def settings_row(name: str, doc: str, default: Any) -> str:
    """One row of the README's settings table."""
    return f"| `{name}` | {format_default(default)} | {doc.replace('|', chr(92) + '|')} |"


def settings_tables() -> str:
    """The README's settings tables, grouped by topic (new settings land in "Other")."""
    rows = {name: settings_row(name, doc, default) for name, doc, default in Settings.describe()}
    groups = dict(SETTINGS_GROUPS)
    grouped = {name for names in groups.values() for name in names}
    others = tuple(name for name in rows if name not in grouped)
    if others:
        groups["Other"] = others
    parts = []
    for title, names in groups.items():
        lines = [f"**{title}**", "", "| setting | default | meaning |", "|---|---|---|"]
        lines += [rows[name] for name in names if name in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def test_the_settings_table_lists_every_setting_as_it_is() -> None:
    readme = README.read_text(encoding="utf-8")
    missing = [
        name
        for name, doc, default in Settings.describe()
        if f"\n{settings_row(name, doc, default)}\n" not in readme
    ]
    assert not missing, (
        f"README.md's settings table is missing or outdated for {missing}:"
        " regenerate it with `python tests/test_readme_snippets.py`"
    )


if __name__ == "__main__":
    print(settings_tables())
