"""Crawl the book pages the demo site's sitemaps list: all offline.

    crawl run examples/sitemap_crawl.py -O books.jsonl

It starts from robots.txt: its ``Sitemap:`` line names a sitemap index, which lists
three sitemaps (one of them gzipped). Only the book sitemaps are followed and only
product pages are crawled, each once, with its ``<lastmod>``. The spider serves the
demo site itself on 127.0.0.1; pass ``-a start_url=http://127.0.0.1:8000/`` to use
one started with ``python examples/demo_site.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from crawler import Response
from crawler.spiders.sitemap import SitemapSpider

sys.path.append(str(Path(__file__).parent))
from demo_site import DemoSite


class BookSitemapSpider(SitemapSpider):
    """The built-in sitemap spider with a callback for product pages."""

    name = "book-sitemap"
    settings: ClassVar[dict[str, Any]] = {"CONCURRENCY": 8, "PROGRESS_INTERVAL": 0}
    start_url: str = ""
    # Nested sitemaps of the index to follow: the books ones (pages.xml is skipped).
    sitemap_follow = (r"/sitemaps/books-",)
    # Pages go to the first callback whose regex matches; others are not fetched.
    sitemap_rules = ((r"/book/\d+\.html$", "parse_book"),)

    async def open(self) -> None:
        """Start the demo site unless a start_url was given; robots.txt is the way in."""
        self._site: DemoSite | None = None
        if not self.start_url:
            self._site = await DemoSite().__aenter__()
            self.start_url = self._site.url
        self.sitemap_urls = [self.start_url.rstrip("/") + "/robots.txt"]

    async def close(self, reason: str) -> None:
        """Stop the demo site."""
        if self._site is not None:
            await self._site.__aexit__(None, None, None)

    def parse_book(self, response: Response) -> Any:
        """A product page found in a sitemap."""
        yield {
            "url": response.url,
            "title": response.css_first("h1").text(),
            "price": float(response.css_first("p.price").text().lstrip("£")),
            "lastmod": response.meta.get("sitemap_lastmod"),
        }
