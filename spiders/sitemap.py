"""``sitemap``: seed a crawl from sitemaps (robots.txt ``Sitemap:`` lines, indexes, .gz).

XML is parsed with defusedxml, so entity-expansion and external-entity tricks in
a hostile sitemap raise instead of eating memory or reading local files.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeElementTree
from protego import Protego

from crawler import InvalidRequest, Request, Response, Spider

__all__ = ["SitemapSpider", "parse_sitemap"]

_MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the sitemaps.org limit for an uncompressed sitemap


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _decompress(body: bytes) -> bytes:
    if body[:2] != b"\x1f\x8b":
        return body
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as stream:
            data = stream.read(_MAX_SITEMAP_BYTES + 1)
    except (OSError, EOFError, zlib.error):
        return b""
    return data[:_MAX_SITEMAP_BYTES]


def parse_sitemap(body: bytes) -> tuple[str, list[dict[str, Any]]]:
    """``("urlset" | "sitemapindex" | "", entries)``; each entry has ``loc`` and, if present,
    ``lastmod`` and ``alternates``. Malformed or hostile XML yields ``("", [])``."""
    data = _decompress(body)
    if not data.strip():
        return "", []
    try:
        root: Element = SafeElementTree.fromstring(data)
    except Exception:  # defusedxml raises several kinds; all mean "not a usable sitemap"
        return "", []
    kind = _local(root.tag)
    entries = []
    for child in root:
        entry: dict[str, Any] = {}
        alternates = []
        for field in child:
            name = _local(field.tag)
            if name == "loc" and field.text:
                entry["loc"] = field.text.strip()
            elif name == "lastmod" and field.text:
                entry["lastmod"] = field.text.strip()
            elif name == "link" and field.get("href"):
                alternates.append(field.get("href"))
        if "loc" in entry:
            if alternates:
                entry["alternates"] = alternates
            entries.append(entry)
    return kind, entries


class SitemapSpider(Spider):
    """Crawl the pages listed in sitemaps.

    ``sitemap_urls``: sitemap URLs, sitemap index URLs, or robots.txt URLs (their
    ``Sitemap:`` lines are used). ``sitemap_rules``: ``(regex, callback name)``
    pairs; a page goes to the first matching rule's callback (default: everything
    to ``parse``). ``sitemap_follow``: regexes of nested sitemaps to follow
    (default: all). ``sitemap_alternate_links``: also crawl ``xhtml:link`` alternates.
    From the CLI: ``crawl run sitemap -a sitemap_urls=http://site/robots.txt``.
    """

    name = "sitemap"
    sitemap_urls: Sequence[str] = ()
    sitemap_rules: Sequence[tuple[str, str]] = ((r"", "parse"),)
    sitemap_follow: Sequence[str] = (r"",)
    sitemap_alternate_links: bool = False

    def __init__(self, **kwargs: Any) -> None:
        urls = kwargs.pop("sitemap_urls", None)
        super().__init__(**kwargs)
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if urls is not None:
            self.sitemap_urls = urls
        self._rules = [(re.compile(pattern), name) for pattern, name in self.sitemap_rules]
        self._follow = [re.compile(pattern) for pattern in self.sitemap_follow]

    async def start(self) -> AsyncIterator[Request]:
        """Request every sitemap (or robots.txt) URL."""
        for url in self.sitemap_urls:
            callback = self._parse_robots if url.endswith("/robots.txt") else self._parse_sitemap
            yield Request(url, callback=callback, dont_filter=True)

    def _parse_robots(self, response: Response) -> Iterator[Request]:
        for url in Protego.parse(response.text).sitemaps:
            try:  # a relative Sitemap: line is resolved against robots.txt's URL
                yield response.follow(url, callback=self._parse_sitemap)
            except InvalidRequest as exc:
                self.logger.warning("bad Sitemap line in %s: %s", response.url, exc)

    def _parse_sitemap(self, response: Response) -> Iterator[Request]:
        kind, entries = parse_sitemap(response.body)
        if not kind:
            self.logger.warning("not a sitemap (or malformed): %s", response.url)
            return
        if kind == "sitemapindex":
            for entry in entries:
                if any(p.search(entry["loc"]) for p in self._follow):
                    yield Request(entry["loc"], callback=self._parse_sitemap)
            return
        for entry in entries:
            alternates = entry.get("alternates", []) if self.sitemap_alternate_links else []
            for url in [entry["loc"], *alternates]:
                callback = self._callback_for(url)
                if callback is not None:
                    meta = {"sitemap_lastmod": entry["lastmod"]} if "lastmod" in entry else {}
                    yield Request(url, callback=callback, meta=meta)

    def _callback_for(self, url: str) -> Any:
        for pattern, name in self._rules:
            if pattern.search(url):
                return getattr(self, name)
        return None

    def parse(self, response: Response) -> Any:
        """Default page callback: the page's URL, title and sitemap lastmod."""
        title = response.css_first("title")
        return {
            "url": response.url,
            "title": title.text(strip=True) if title is not None else None,
            "lastmod": response.meta.get("sitemap_lastmod"),
        }
