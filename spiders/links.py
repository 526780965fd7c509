"""``links``: follow every link inside the start URLs' domains and record each page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from crawler import Response, Spider


class LinkSpider(Spider):
    """Crawl a site by following links; one item per page (url, status, title, depth).

    Run it with ``crawl run links -a start_urls=https://example.com/``. Unless
    ``allowed_domains`` is given, links are followed only within the start
    URLs' hosts.
    """

    name = "links"

    async def open(self) -> None:
        """Default ``allowed_domains`` to the start URLs' hosts."""
        if not self.start_urls:
            self.logger.error("the links spider needs -a start_urls=URL[,URL...]")
        if not self.allowed_domains:
            self.allowed_domains = sorted({urlsplit(u).hostname or "" for u in self.start_urls})

    def parse(self, response: Response) -> Any:
        """Yield the page's item and a request per link."""
        title = response.css_first("title")
        yield {
            "url": response.url,
            "status": response.status,
            "title": title.text(strip=True) if title is not None else None,
            "depth": response.request.depth,
        }
        yield from response.follow_all()
