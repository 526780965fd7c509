"""The spider of the ``books`` job: book pages are fetched again only when they changed.

    cd examples/jobs && crawl jobs run books

It serves the demo site itself on 127.0.0.1:``port`` (the job's ``args``), as of
day ``$DEMO_SITE_DAY`` (default 1; on later days some books get cheaper). Listing
pages are fetched in full every run (a 304 has no links to follow); a book page is
asked for with the validators of the last successful run and the site answers 304
when it did not change, so its callback does not run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from crawler import Request, Response, Spider

sys.path.append(str(Path(__file__).resolve().parent.parent))  # examples/, for demo_site
from demo_site import DemoSite


class BooksJobSpider(Spider):
    """Listing pages every run, book pages only when changed."""

    name = "books-job"
    settings: ClassVar[dict[str, Any]] = {"CONCURRENCY": 8}
    start_url: str = ""
    port: int = 8765

    async def open(self) -> None:
        """Start the demo site (on a fixed port, for stable URLs) unless a start_url was given."""
        self._site: DemoSite | None = None
        if not self.start_url:
            day = int(os.environ.get("DEMO_SITE_DAY", "1"))
            try:
                self._site = await DemoSite(int(self.port), day=day).__aenter__()
            except OSError as exc:
                raise RuntimeError(
                    f"cannot serve the demo site on 127.0.0.1:{self.port} ({exc.strerror}):"
                    " set another port in the job's args in pyproject.toml"
                ) from None
            self.start_url = self._site.url

    async def close(self, reason: str) -> None:
        """Stop the demo site."""
        if self._site is not None:
            await self._site.__aexit__(None, None, None)

    async def start(self) -> Any:
        """The first listing page, fetched in full."""
        yield Request(self.start_url, callback=self.parse, meta={"incremental": False})

    def parse(self, response: Response) -> Any:
        """A listing page: conditional requests for books, the next page in full."""
        yield from response.follow_all(css="li.book a", callback=self.parse_book)
        yield from response.follow_all(css="a.next", meta={"incremental": False})

    def parse_book(self, response: Response) -> Any:
        """A book page that is new or changed since the last successful run."""
        yield {
            "url": response.url,
            "title": response.css_first("h1").text(),
            "price": float(response.css_first("p.price").text().lstrip("£")),
            "in_stock": response.css_first("p.stock").text() == "In stock",
        }
