"""Run a spider offline against a recording: fast, deterministic spider tests.

Record once (``crawl parse URL --record FILE``, or a crawl with
``Crawler(..., http_cache=HttpCache(FILE, mode="record"))``), commit the file, then::

    async def test_books():
        result = await replay(BooksSpider(), "tests/recordings/books.sqlite")
        assert result.items[0]["title"] == "A Light in the Attic"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..engine import Crawler
from ..errors import CrawlerError
from ..httpcache import HttpCache
from ..result import CrawlResult
from ..settings import Settings
from ..spider import Spider

__all__ = ["ReplayError", "replay"]

# Nothing goes on the wire: no robots.txt to obey, no host to wait for between pages.
_OFFLINE = {"ROBOTSTXT_OBEY": False, "DOWNLOAD_DELAY": 0, "HOST_DELAYS": {}, "AUTOTHROTTLE": False}


class ReplayError(CrawlerError, AssertionError):
    """A replayed spider asked for pages the recording does not have (the URLs are listed).

    Also an ``AssertionError``, so pytest shows it as a failed test, not an error.
    """

    def __init__(self, recording: Path, urls: list[str], result: CrawlResult) -> None:
        listed = "\n  ".join(urls)
        super().__init__(
            f"{len(urls)} request(s) not in the recording {recording}; record them again"
            f" (crawl parse URL --record {recording}):\n  {listed}"
        )
        self.recording = recording
        self.urls = urls
        self.result = result  # the crawl as it went, items and stats included


async def replay(
    spider: Spider,
    recording: Path | str,
    settings: Settings | None = None,
    *,
    pipelines: tuple[Any, ...] = (),
) -> CrawlResult:
    """Crawl with ``spider`` answering every request from ``recording``; no network.

    ``settings`` default to the spider's own; robots.txt, delays and AutoThrottle are
    turned off (``RESOLVE`` does not matter). Returns the result with ``items`` (every
    item that passed ``pipelines``). Raises :class:`ReplayError` listing the URLs if any
    request was not recorded, and a ``ConfigError`` if ``recording`` does not exist.
    """
    base = settings or Settings.build(("spider settings", spider.settings))
    offline = base.merged(_OFFLINE, source="replay")
    cache = HttpCache(recording, mode="replay")
    crawler = Crawler(spider, offline, pipelines=pipelines, http_cache=cache, collect_items=True)
    result = await crawler.run()
    if cache.not_recorded:
        raise ReplayError(cache.path, cache.not_recorded, result)
    return result
