"""``links``: follow every link inside the start URLs' domains and record each page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from crawler import LinkExtractor, Response, Spider

_OPENING = {"{": "}", "[": "]", "(": ")"}


class LinkSpider(Spider):
    """Crawl a site by following links; one item per page (url, status, title, depth).

    Run it with ``crawl run links -a start_urls=https://example.com/``. Unless
    ``allowed_domains`` is given, links are followed only within the start
    URLs' hosts. ``-a allow=REGEX[,REGEX...]`` follows only links whose URL matches
    one of them, ``-a deny=REGEX[,REGEX...]`` none of those (a comma inside ``{}``,
    ``[]`` or ``()``, or escaped as ``\\,``, belongs to the regex).
    """

    name = "links"
    allow: str | Sequence[str] = ()
    deny: str | Sequence[str] = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Built once here: a bad regex fails before the crawl, naming the pattern.
        self.link_extractor = LinkExtractor(allow=_patterns(self.allow), deny=_patterns(self.deny))

    async def open(self) -> None:
        """Default ``allowed_domains`` to the start URLs' hosts."""
        if not self.start_urls:
            self.logger.error("the links spider needs -a start_urls=URL[,URL...]")
        if not self.allowed_domains:
            self.allowed_domains = sorted({urlsplit(u).hostname or "" for u in self.start_urls})

    def parse(self, response: Response) -> Any:
        """Yield the page's item and a request per link the extractor keeps."""
        title = response.css_first("title")
        yield {
            "url": response.url,
            "status": response.status,
            "title": title.text(strip=True) if title is not None else None,
            "depth": response.request.depth,
        }
        for link in self.link_extractor.extract_links(response):
            yield response.follow(link.url)


def _patterns(value: str | Sequence[str]) -> list[str]:
    """``-a allow=a,b`` as ["a", "b"]; commas inside brackets (``\\d{1,3}``) are kept."""
    if not isinstance(value, str):
        return list(value)
    patterns: list[str] = []
    current: list[str] = []
    closing: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            current.append(following if following == "," else char + following)
        elif char == "," and not closing:
            patterns.append("".join(current))
            current = []
        else:
            if char in _OPENING:
                closing.append(_OPENING[char])
            elif closing and char == closing[-1]:
                closing.pop()
            current.append(char)
    patterns.append("".join(current))
    return [p.strip() for p in patterns if p.strip()]
