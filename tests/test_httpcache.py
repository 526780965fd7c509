"""The HTTP cache (crawler/httpcache): a second run costs no network, the http policy,
expiry, ignored statuses, redirects, robots.txt, delays, and ``crawl run --cache``.

Every site is a ``SiteServer`` on loopback; the assertions read what the server really
received, the stats and the items. Time that matters is a ManualClock; no test sleeps.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import HANG_GUARD_S, SiteFactory, build_settings, run_spider
from engine_peers import LinkSpider, redirect

from crawler import ConfigError, Crawler, Response
from crawler.httpcache import HttpCache
from crawler.testing import ManualClock, SiteServer, html_page

HOME = html_page("Home", ["/1", "/2"])
PAGES = {"a.test": {"/": HOME, "/1": html_page("One", ["/2"]), "/2": html_page("Two", ["/"])}}


async def crawl_cached(
    spider: Any, server: SiteServer, cache: HttpCache, **settings: Any
) -> tuple[Any, list[Any]]:
    """One crawl of ``spider`` through ``cache``: the result and the items."""
    crawler = Crawler(
        spider, build_settings(spider, server, **settings), http_cache=cache, collect_items=True
    )
    async with asyncio.timeout(HANG_GUARD_S):
        result = await crawler.run()
    return result, result.items


async def crawl(*args: str, cwd: Path) -> tuple[int, str, str]:
    """``crawl ARGS`` in a subprocess (as tests/test_cli.py runs it): code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def titles(items: list[dict[str, Any]]) -> list[str]:
    return sorted(item["title"] for item in items)


async def test_a_second_run_costs_no_requests_and_an_edited_callback_still_runs(
    site: SiteFactory, tmp_path: Path
) -> None:
    server = await site(PAGES)
    path = tmp_path / "cache" / "links.sqlite"
    first, items = await crawl_cached(
        LinkSpider(start_urls=[server.url("a.test")]), server, HttpCache(path)
    )
    assert sorted(server.paths_seen("a.test")) == ["/", "/1", "/2"]
    assert first.stats["httpcache/miss"] == 3 and first.stats["httpcache/store"] == 3
    assert first.stats["httpcache/hit"] == 0

    class Edited(LinkSpider):  # the callback changed between the runs
        async def parse(self, response: Response) -> AsyncIterator[Any]:
            async for output in super().parse(response):
                if isinstance(output, dict):
                    output["title"] = output["title"].upper()
                yield output

    server.requests.clear()
    second, again = await crawl_cached(
        Edited(start_urls=[server.url("a.test")]), server, HttpCache(path)
    )
    assert server.requests == []
    assert second.stats["httpcache/hit"] == 3 and second.stats["httpcache/miss"] == 0
    assert second.stats["pages"] == 3 and second.stats["status/200"] == 3  # hits are pages
    assert titles(again) == [title.upper() for title in titles(items)]
    assert second.finish_reason == "finished"


def etag_page(seen: list[str | None]) -> Any:
    """A page with an ETag that must be revalidated; 304 when the client has it."""

    async def handler(request: web.Request) -> web.Response:
        asked = request.headers.get("If-None-Match")
        seen.append(asked)
        headers = {"ETag": '"v1"', "Cache-Control": "no-cache"}
        if asked == '"v1"':
            return web.Response(status=304, headers=headers)
        return web.Response(text=html_page("Tagged"), content_type="text/html", headers=headers)

    return handler


class Asking(LinkSpider):
    """Also tells which headers the request had when its callback ran."""

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        async for output in super().parse(response):
            if isinstance(output, dict):
                output["status"] = response.status
                output["asked"] = dict(response.request.headers or {})
            yield output


async def test_http_policy_revalidates_with_the_etag_and_serves_the_body_on_304(
    site: SiteFactory, tmp_path: Path
) -> None:
    seen: list[str | None] = []
    server = await site({"a.test": {"/": etag_page(seen)}})
    path = tmp_path / "http.sqlite"
    first, _ = await crawl_cached(
        Asking(start_urls=[server.url("a.test")]), server, HttpCache(path, "http")
    )
    assert first.stats["httpcache/store"] == 1
    second, items = await crawl_cached(
        Asking(start_urls=[server.url("a.test")]), server, HttpCache(path, "http")
    )
    assert seen == [None, '"v1"']  # the second run asked with the stored ETag
    assert second.stats["httpcache/revalidated"] == 1 and second.stats["status/304"] == 1
    # the callback got the stored page; the validators were for that one attempt only
    url = server.url("a.test")
    assert items == [{"url": url, "title": "Tagged", "depth": 0, "status": 200, "asked": {}}]


def cache_control_page(value: str, title: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        page = html_page(title)
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": value})

    return handler


async def test_http_policy_serves_fresh_responses_and_never_stores_no_store(
    site: SiteFactory, tmp_path: Path
) -> None:
    pages = {
        "/": html_page("Home", ["/fresh", "/secret"]),
        "/fresh": cache_control_page("max-age=60", "Fresh"),
        "/secret": cache_control_page("private, no-store", "Secret"),
    }
    server = await site({"a.test": pages})
    path, clock = tmp_path / "http.sqlite", ManualClock()
    spider = LinkSpider(start_urls=[server.url("a.test")])
    first, _ = await crawl_cached(spider, server, HttpCache(path, "http", clock=clock))
    assert first.stats["httpcache/store"] == 2 and first.stats["httpcache/uncacheable"] == 1
    server.requests.clear()
    await clock.advance(59)
    second, items = await crawl_cached(
        LinkSpider(start_urls=[server.url("a.test")]), server, HttpCache(path, "http", clock=clock)
    )
    # "/" has no freshness and no validator: fetched again; /fresh is fresh; /secret never stored
    assert sorted(server.paths_seen("a.test")) == ["/", "/secret"]
    assert second.stats["httpcache/hit"] == 1
    assert titles(items) == ["Fresh", "Home", "Secret"]
    server.requests.clear()
    await clock.advance(1)  # /fresh is 60 s old now: stale, and without a validator
    await crawl_cached(
        LinkSpider(start_urls=[server.url("a.test")]), server, HttpCache(path, "http", clock=clock)
    )
    assert sorted(server.paths_seen("a.test")) == ["/", "/fresh", "/secret"]


async def test_entries_expire_after_expiration_s_on_the_cache_clock(
    site: SiteFactory, tmp_path: Path
) -> None:
    server = await site(PAGES)
    path, clock = tmp_path / "c.sqlite", ManualClock()

    def cache() -> HttpCache:
        return HttpCache(path, expiration_s=60.0, clock=clock)

    await crawl_cached(LinkSpider(start_urls=[server.url("a.test")]), server, cache())
    server.requests.clear()
    await clock.advance(59.9)
    result, _ = await crawl_cached(LinkSpider(start_urls=[server.url("a.test")]), server, cache())
    assert server.requests == [] and result.stats["httpcache/hit"] == 3
    await clock.advance(0.1)
    result, _ = await crawl_cached(LinkSpider(start_urls=[server.url("a.test")]), server, cache())
    assert sorted(server.paths_seen("a.test")) == ["/", "/1", "/2"]
    assert result.stats["httpcache/miss"] == 3 and result.stats["httpcache/store"] == 3


async def test_ignored_statuses_are_not_stored_but_recorded(
    site: SiteFactory, tmp_path: Path
) -> None:
    server = await site({"a.test": {"/": html_page("Home", ["/gone"])}})  # /gone is a 404
    path = tmp_path / "c.sqlite"

    async def run(mode: str) -> Any:
        spider = LinkSpider(start_urls=[server.url("a.test")])
        cache = HttpCache(path, mode, ignore_http_codes=[404])
        return (await crawl_cached(spider, server, cache))[0]

    first = await run("always")
    assert first.stats["httpcache/store"] == 1 and first.stats["httpcache/uncacheable"] == 1
    server.requests.clear()
    await run("always")
    assert server.paths_seen("a.test") == ["/gone"]  # asked again; the home page was not
    server.requests.clear()
    recorded = await run("record")  # a recording keeps everything, and always fetches
    assert sorted(server.paths_seen("a.test")) == ["/", "/gone"]
    assert recorded.stats["httpcache/store"] == 2
    server.requests.clear()
    await run("always")
    assert server.requests == []


async def test_a_cached_redirect_keeps_its_history_and_final_url(
    site: SiteFactory, tmp_path: Path
) -> None:
    server = await site(
        {"a.test": {"/": html_page("Home", ["/old"]), "/old": redirect("/new", 301), "/new": "x"}}
    )
    path = tmp_path / "c.sqlite"

    class Hops(LinkSpider):
        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"urls": response.redirect_urls, "hops": [h.status for h in response.history]}
            for request in response.follow_all():
                yield request

    _, first = await crawl_cached(Hops(start_urls=[server.url("a.test")]), server, HttpCache(path))
    server.requests.clear()
    second, items = await crawl_cached(
        Hops(start_urls=[server.url("a.test")]), server, HttpCache(path)
    )
    assert server.requests == []
    old, new = server.url("a.test", "/old"), server.url("a.test", "/new")
    assert {"urls": [old, new], "hops": [301]} in items
    assert sorted(map(str, items)) == sorted(map(str, first))
    assert second.stats["redirects/301"] == 1  # the Redirects middleware saw the history


@pytest.mark.parametrize("frontier", ["memory", "sqlite"])
async def test_hits_do_not_wait_for_the_download_delay(
    site: SiteFactory, tmp_path: Path, frontier: str
) -> None:
    server = await site(PAGES)
    path = tmp_path / "c.sqlite"
    await crawl_cached(LinkSpider(start_urls=[server.url("a.test")]), server, HttpCache(path))
    server.requests.clear()
    clock = ManualClock()
    spider = LinkSpider(start_urls=[server.url("a.test")])
    # --state: the SQLite frontier behind the ack gate; the delay is given back all the same
    state = {"STATE_DIR": str(tmp_path / "state")} if frontier == "sqlite" else {}
    settings = build_settings(spider, server, DOWNLOAD_DELAY=1000.0, **state)
    crawler = Crawler(spider, settings, clock=clock, http_cache=HttpCache(path, clock=clock))
    async with asyncio.timeout(HANG_GUARD_S):
        result = await crawler.run()  # the clock never moves: a single wait would hang here
    assert result.stats["httpcache/hit"] == 3 and result.finish_reason == "finished"
    assert server.requests == [] and clock.now() == 1000.0


async def test_robots_txt_goes_through_the_cache(site: SiteFactory, tmp_path: Path) -> None:
    pages = {**PAGES["a.test"], "/robots.txt": "User-agent: *\nDisallow: /2\n"}
    server = await site({"a.test": pages})
    path = tmp_path / "c.sqlite"
    for _ in range(2):
        result, items = await crawl_cached(
            LinkSpider(start_urls=[server.url("a.test")]),
            server,
            HttpCache(path),
            ROBOTSTXT_OBEY=True,
        )
        assert titles(items) == ["Home", "One"] and result.stats["robots/disallowed"] == 1
    assert len(server.robots_requests) == 1
    assert sorted(server.paths_seen("a.test")) == ["/", "/1"]


async def test_the_settings_build_the_cache_and_a_bad_path_is_a_config_error(
    site: SiteFactory, tmp_path: Path
) -> None:
    server = await site(PAGES)
    folder = tmp_path / "cache"
    for _ in range(2):
        result, _ = await run_spider(
            LinkSpider(start_urls=[server.url("a.test")]),
            server,
            HTTPCACHE_ENABLED=True,
            HTTPCACHE_DIR=str(folder),
        )
    assert (folder / "links.sqlite").is_file()
    assert len(server.requests) == 3 and result.stats["httpcache/hit"] == 3
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"cannot open HTTP cache .*file/links\.sqlite"):
        await run_spider(
            LinkSpider(start_urls=[server.url("a.test")]),
            server,
            HTTPCACHE_ENABLED=True,
            HTTPCACHE_DIR=str(tmp_path / "file"),
        )
    (tmp_path / "other.sqlite").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ConfigError, match=r"other\.sqlite is not a HTTP cache"):
        async with HttpCache(tmp_path / "other.sqlite"):
            pass


CLI_SPIDER = textwrap.dedent(
    """
    from crawler import Spider

    class Pages(Spider):
        name = "pages"

        def parse(self, response):
            yield {"url": response.url, "title": response.css_first("title").text()}
            yield from response.follow_all()
    """
)


async def test_crawl_run_cache_twice_costs_no_requests_the_second_time(
    site: SiteFactory, tmp_path: Path
) -> None:
    server = await site(PAGES)
    (tmp_path / "pages.py").write_text(CLI_SPIDER)
    args = ["run", "pages.py", "-a", f"start_urls={server.url('a.test')}"]
    args += ["-s", "RESOLVE=a.test:127.0.0.1", "-s", "PROGRESS_INTERVAL=0", "-o", "-"]
    outputs = []
    for _ in range(2):
        code, out, err = await crawl(*args, "--cache", "cache", cwd=tmp_path)
        assert code == 0, err
        outputs.append(sorted(out.splitlines()))
        if len(outputs) == 1:
            assert len(server.requests) == 3 and len(server.robots_requests) == 1
    assert len(server.requests) == 3 and len(server.robots_requests) == 1
    assert outputs[0] == outputs[1] and len(outputs[0]) == 3
    assert (tmp_path / "cache" / "pages.sqlite").is_file()


async def test_crawl_run_with_an_unopenable_cache_exits_2_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "pages.py").write_text(CLI_SPIDER)
    code, _, err = await crawl(
        "run",
        "pages.py",
        "-a",
        "start_urls=http://a.test/",
        "--cache",
        "pages.py/cache",
        cwd=tmp_path,
    )
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot open HTTP cache pages.py/cache/pages.sqlite")
    assert "Traceback" not in err and "crawl started" not in err


async def test_a_broken_entry_is_a_miss_and_a_failed_write_still_hands_the_page_on(
    site: SiteFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    server = await site(PAGES)
    path = tmp_path / "links.sqlite"
    await crawl_cached(LinkSpider(start_urls=[server.url("a.test")]), server, HttpCache(path))
    with sqlite3.connect(path) as db:  # every stored entry becomes unreadable
        db.execute("UPDATE responses SET headers = x'7b7b'")
    result, items = await crawl_cached(
        LinkSpider(start_urls=[server.url("a.test")]), server, HttpCache(path)
    )
    assert titles(items) == ["Home", "One", "Two"]  # fetched again, nothing lost
    assert result.stats["httpcache/errors"] == 3 and result.stats["internal_errors"] == 0
    with sqlite3.connect(path) as db:  # ...and a store that refuses writes
        db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON responses BEGIN"
            " SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
        db.execute("DELETE FROM responses")
    result, items = await crawl_cached(
        LinkSpider(start_urls=[server.url("a.test")]), server, HttpCache(path)
    )
    assert titles(items) == ["Home", "One", "Two"]
    assert result.stats["httpcache/errors"] == 3 and result.stats["httpcache/store"] == 0
    warnings = [r for r in caplog.records if "cannot write an entry" in r.getMessage()]
    assert len(warnings) == 1  # once per kind of failure, not once per request


async def test_pages_fetched_with_credentials_are_kept_apart(
    site: SiteFactory, tmp_path: Path
) -> None:
    from crawler import Request, Spider

    async def whoami(request: web.Request) -> web.Response:
        who = request.headers.get("Authorization", "nobody")
        return web.Response(text=html_page(who), content_type="text/html")

    server = await site({"a.test": {"/me": whoami}})
    path = tmp_path / "who.sqlite"

    class Who(Spider):
        name = "who"
        auth: str | None = None

        async def start(self) -> AsyncIterator[Request]:
            headers = {"Authorization": self.auth} if self.auth else None
            yield Request(server.url("a.test", "/me"), headers=headers, callback=self.parse)

        async def parse(self, response: Response) -> AsyncIterator[Any]:
            yield {"title": response.css_first("title").text()}

    seen = []
    for auth in ("Bearer alice", "Bearer bob", None, "Bearer alice"):
        _, items = await crawl_cached(Who(auth=auth), server, HttpCache(path))
        seen.append(items[0]["title"])
    assert seen == ["Bearer alice", "Bearer bob", "nobody", "Bearer alice"]
    assert len(server.paths_seen("a.test")) == 3  # alice's page came from the cache once
    assert (path.stat().st_mode & 0o777) == 0o600  # it holds Set-Cookie values: owner only
