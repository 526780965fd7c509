"""The README's first crawl: a bookstore spider over the demo site, all offline.

    crawl run examples/bookstore.py -O books.jsonl

The spider serves the demo site itself on 127.0.0.1 (see ``open``), so this
needs no network. Pass ``-a start_url=http://127.0.0.1:8000/`` to crawl a demo
site you started yourself with ``python examples/demo_site.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from crawler import Response, Spider

sys.path.append(str(Path(__file__).parent))
from demo_site import DemoSite


class BookstoreSpider(Spider):
    """Follows pagination and book links; yields one item per book page."""

    name = "bookstore"
    settings: ClassVar[dict[str, Any]] = {"CONCURRENCY": 8, "PROGRESS_INTERVAL": 5}
    start_url: str = ""

    async def open(self) -> None:
        """Start the demo site unless a start_url was given."""
        self._site: DemoSite | None = None
        if not self.start_url:
            self._site = await DemoSite().__aenter__()
            self.start_url = self._site.url
        self.start_urls = [self.start_url]
        self.logger.info("crawling the demo site at %s", self.start_url)

    async def close(self, reason: str) -> None:
        """Stop the demo site."""
        if self._site is not None:
            await self._site.__aexit__(None, None, None)

    def parse(self, response: Response) -> Any:
        """Listing pages: follow books, genres and the next page."""
        yield from response.follow_all(css="li.book a", callback=self.parse_book)
        yield from response.follow_all(css="nav a, a.next")

    def parse_book(self, response: Response) -> Any:
        """A book page: one item."""
        yield {
            "url": response.url,
            "title": response.css_first("h1").text(),
            "price": float(response.css_first("p.price").text().lstrip("£")),
            "in_stock": response.css_first("p.stock").text() == "In stock",
            "genre": response.css_first("p.genre").text(),
        }
