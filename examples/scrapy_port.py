"""A Scrapy spider for the demo bookstore, ported line by line (docs/coming-from-scrapy.md).

    python examples/demo_site.py --port 8000 &
    crawl run examples/scrapy_port.py -O books.jsonl

The guide shows the Scrapy original beside this file; tests/test_scrapy_compat.py
crawls it against the demo site and checks that the guide shows this very code.
"""

from __future__ import annotations

# --- the port: from here on, the guide shows this code verbatim ---
from typing import Any, ClassVar

from crawler import Request, Response, Spider


class BookstorePort(Spider):
    name = "bookstore_port"
    settings: ClassVar[dict[str, Any]] = {"CONCURRENCY": 8, "DOWNLOAD_DELAY": 0}
    start_url = "http://127.0.0.1:8000/"  # -a start_url=... as in Scrapy

    async def start(self) -> Any:
        yield Request(self.start_url, callback=self.parse)

    def parse(self, response: Response) -> Any:
        for a in response.css("li.book a"):
            yield response.follow(a, callback=self.parse_book, meta={"listing": response.url})
        yield from response.follow_all(css="nav a, a.next", callback=self.parse)

    def parse_book(self, response: Response) -> Any:
        stock = response.css_first("p.stock")
        yield {
            "url": response.url,
            "title": response.css_first("h1").text(),
            "price": float(response.css_first("p.price").text().lstrip("£")),
            "in_stock": stock is not None and stock.text() == "In stock",
            "genre": response.css_first("p.genre").text(strip=True),
            "listing": response.meta["listing"],
        }
