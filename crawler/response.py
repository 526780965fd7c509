"""The Response handed to spider callbacks: body, decoded text, lazy HTML parsing, links."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import orjson
from multidict import CIMultiDictProxy
from selectolax.lexbor import LexborHTMLParser, LexborNode
from w3lib.encoding import html_to_unicode
from yarl import URL

from .errors import InvalidRequest
from .request import Request

__all__ = ["RedirectHop", "Response"]

_SCHEMES = ("http", "https")

_BASE_OR_BODY = re.compile(rb"<(base|body)[\s/>]", re.IGNORECASE)
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class RedirectHop:
    """One hop of a redirect chain: the URL that answered, its status and headers."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]


class Response:
    """An HTTP response and the request that produced it.

    ``text`` is decoded once on first use (HTTP charset, then BOM and ``<meta>``
    sniffing; undecodable bytes are replaced, never raised). HTML is parsed with
    selectolax Lexbor once, on the first ``css()`` call.
    """

    __slots__ = (
        "_base",
        "_encoding",
        "_parser",
        "_text",
        "_url",
        "body",
        "cookies",
        "headers",
        "history",
        "raw_headers",
        "request",
        "status",
        "timings",
        "url",
    )

    def __init__(
        self,
        url: URL | str,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        request: Request,
        history: Sequence[RedirectHop] = (),
        raw_headers: tuple[tuple[bytes, bytes], ...] = (),
        cookies: SimpleCookie | None = None,
        timings: dict[str, float] | None = None,
    ) -> None:
        self._url = url if isinstance(url, URL) else URL(url)
        self.url: str = str(self._url)
        self.status = status
        self.headers = headers
        self.body = body
        self.request = request
        self.history: tuple[RedirectHop, ...] = tuple(history)
        self.raw_headers = raw_headers
        self.cookies: SimpleCookie = cookies if cookies is not None else SimpleCookie()
        self.timings: dict[str, float] = timings if timings is not None else {}
        self._text: str | None = None
        self._encoding: str | None = None
        self._parser: LexborHTMLParser | None = None
        self._base: URL | None = None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"

    @property
    def meta(self) -> dict[str, Any]:
        """The request's ``meta`` dict."""
        return self.request.meta

    @property
    def redirect_urls(self) -> list[str]:
        """Every URL from the first request to the final one (one entry if no redirect)."""
        return [hop.url for hop in self.history] + [self.url]

    @property
    def encoding(self) -> str:
        """The encoding used to decode :attr:`text`."""
        if self._encoding is None:
            self._decode()
        assert self._encoding is not None
        return self._encoding

    @property
    def text(self) -> str:
        """The body decoded to str."""
        if self._text is None:
            self._decode()
        assert self._text is not None
        return self._text

    def _decode(self) -> None:
        # Decoded once: the encoding and the text come from the same sniffing pass.
        self._encoding, self._text = html_to_unicode(self.headers.get("Content-Type"), self.body)

    def json(self) -> Any:
        """The body parsed as JSON (UTF-8; a BOM or another declared charset is decoded first)."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            if self.encoding == "utf-8" and not self.body.startswith(_UTF8_BOM):
                raise
            return orjson.loads(self.text)

    @property
    def selector(self) -> LexborHTMLParser:
        """The parsed HTML document (selectolax Lexbor), parsed on first use."""
        if self._parser is None:
            self._parser = LexborHTMLParser(self.text)
        return self._parser

    def css(self, selector: str) -> list[LexborNode]:
        """All nodes matching a CSS selector."""
        return self.selector.css(selector)

    def css_first(self, selector: str, default: Any = None) -> Any:
        """The first node matching a CSS selector, or ``default``."""
        return self.selector.css_first(selector, default=default)

    def _base_url(self) -> URL:
        if self._base is None:
            self._base = self._url
            # <base> lives in <head>: scan only up to <body> (cheap), however long <head> is.
            found = _BASE_OR_BODY.search(self.body) if self.body else None
            if found is not None and found.group(1).lower() == b"base":
                node = self.css_first("base[href]")
                href = node.attributes.get("href") if node is not None else None
                if href:
                    try:
                        self._base = self._url.join(URL(href.strip()))
                    except ValueError:
                        pass
        return self._base

    def urljoin(self, href: str) -> str:
        """Resolve ``href`` against this page's URL (honouring ``<base href>``)."""
        return str(self._base_url().join(URL(href.strip())))

    def follow(self, href: str | LexborNode | URL, **kwargs: Any) -> Request:
        """A Request for ``href`` relative to this page (a string or an ``<a>`` node)."""
        if isinstance(href, LexborNode):
            value = href.attributes.get("href")
            if value is None:
                raise InvalidRequest(f"node <{href.tag}> has no href attribute on {self.url}")
            href = value
        try:
            url = self._base_url().join(href if isinstance(href, URL) else URL(href.strip()))
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"malformed link {href!r} on {self.url}: {exc}") from None
        return Request(url, **kwargs)  # type: ignore[arg-type]

    def follow_all(
        self,
        hrefs: Iterable[str | LexborNode] | None = None,
        css: str = "a[href]",
        **kwargs: Any,
    ) -> list[Request]:
        """Requests for every link (``hrefs``, or the ``href`` of nodes matching ``css``).

        Links that cannot be crawled (``mailto:``, ``javascript:``, malformed) are skipped.
        """
        if hrefs is None:
            hrefs = [node.attributes.get("href") or "" for node in self.css(css)]
        base = self._base_url()
        # Plain link-following (no kwargs but a callback) skips re-validating each URL.
        fast = kwargs.keys() <= {"callback"}
        callback = kwargs.get("callback")
        requests = []
        for href in hrefs:
            if isinstance(href, LexborNode):
                href = href.attributes.get("href") or ""
            href = href.strip()
            if not href or href[0] == "#":
                continue
            try:
                url = base.join(URL(href))
                if url.scheme not in _SCHEMES or not url.raw_host:
                    continue
                if fast:
                    url.port  # noqa: B018 - raises ValueError for an out-of-range port
                    requests.append(Request._link(url, callback))
                else:
                    requests.append(Request(url, **kwargs))  # type: ignore[arg-type]
            except (ValueError, TypeError, InvalidRequest):
                continue
        return requests
