"""Record and replay (crawler/testing/replay.py): a spider tested offline against a recording.

The recording is made against a real loopback ``SiteServer``; the replays run after the
server is gone, so any request that reached the network would fail.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from conftest import HANG_GUARD_S, SiteFactory, build_settings
from engine_peers import LinkSpider

from crawler import ConfigError, Crawler, Response
from crawler.httpcache import HttpCache
from crawler.testing import html_page
from crawler.testing.replay import ReplayError, replay

PAGES = {
    "a.test": {
        "/": html_page("Home", ["/1", "/2"]),
        "/1": html_page("One", ["/2"]),
        "/2": html_page("Two", ["/"]),
        "/robots.txt": "User-agent: *\nAllow: /\n",
    }
}


async def record(site: SiteFactory, path: Path) -> tuple[str, list[Any]]:
    """Record a crawl of PAGES into ``path``, close the server; its start URL and items."""
    server = await site(PAGES)
    spider = LinkSpider(start_urls=[server.url("a.test")])
    settings = build_settings(spider, server, ROBOTSTXT_OBEY=True)
    cache = HttpCache(path, mode="record")
    async with asyncio.timeout(HANG_GUARD_S):
        result = await Crawler(spider, settings, http_cache=cache, collect_items=True).run()
    assert result.stats["httpcache/store"] == 4  # the pages and robots.txt
    await server.__aexit__(None, None, None)  # from now on, nothing answers
    return server.url("a.test"), result.items


def by_url(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: item["url"])


async def test_a_replay_gives_the_recorded_items_offline(site: SiteFactory, tmp_path: Path) -> None:
    start, recorded = await record(site, tmp_path / "site.sqlite")
    async with asyncio.timeout(HANG_GUARD_S):
        result = await replay(LinkSpider(start_urls=[start]), tmp_path / "site.sqlite")
    assert by_url(result.items) == by_url(recorded) and len(recorded) == 3
    assert result.stats["httpcache/hit"] == 3 and result.stats["failures"] == 0
    assert result.finish_reason == "finished"


async def test_a_request_not_recorded_fails_clearly(site: SiteFactory, tmp_path: Path) -> None:
    start, _ = await record(site, tmp_path / "site.sqlite")

    class Curious(LinkSpider):
        async def parse(self, response: Response) -> Any:
            async for output in super().parse(response):
                yield output
            yield response.follow("/never-recorded", callback=self.parse)

    with pytest.raises(ReplayError) as caught:
        async with asyncio.timeout(HANG_GUARD_S):
            await replay(Curious(start_urls=[start]), tmp_path / "site.sqlite")
    error = caught.value
    missing = f"{start}never-recorded"
    assert error.urls == [missing]
    assert missing in str(error) and str(tmp_path / "site.sqlite") in str(error)
    assert error.result.stats["failures/not_recorded"] == 1
    assert len(error.result.items) == 3  # the recorded pages were replayed all the same


async def test_replaying_a_missing_recording_is_a_config_error(tmp_path: Path) -> None:
    spider = LinkSpider(start_urls=["http://a.test/"])
    with pytest.raises(ConfigError, match=r"no recording to replay at .*missing\.sqlite"):
        await replay(spider, tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
