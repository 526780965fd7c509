"""The Response handed to spider callbacks: body, decoded text, lazy HTML parsing, links."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

import orjson
from multidict import CIMultiDictProxy
from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError
from w3lib.encoding import html_to_unicode
from yarl import URL

from .errors import InvalidRequest
from .follow import follow_string, join_link, link_requests, plain_link
from .linkjoin import LinkBase
from .loglines import get_logger, short_url
from .nesting import cap_nesting
from .porting import check_request_kwargs, css_error, make_selector, selector_href
from .request import Request

if TYPE_CHECKING:
    from parsel import Selector, SelectorList

    from .stats import Stats

__all__ = ["RedirectHop", "Response", "ResponseLimits"]

logger = get_logger("crawler.response")

_BASE_OR_BODY = re.compile(rb"<(base|body)[\s/>]", re.IGNORECASE)
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class RedirectHop:
    """One hop of a redirect chain: the URL that answered, its status and headers."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """What one response may produce in a crawl; the worker hands every Response the crawl's.

    ``max_links``: links ``follow_all()`` looks at per response (0 = unlimited);
    refusals are counted in ``stats`` and logged with ``spider``'s name.
    ``skip_binary``: links to binary files are not followed (FOLLOW_BINARY_LINKS off).
    """

    max_links: int = 0
    stats: Stats | None = None
    spider: str = ""
    skip_binary: bool = True


_UNLIMITED = ResponseLimits()
# Codecs (as w3lib names them) that decode byte 0x3C, and only it, to "<".
_LT_SAFE = frozenset(("utf-8", "utf8", "ascii", "cp1252", "latin-1", "iso8859-15"))


class Response:
    """An HTTP response and the request that produced it.

    ``text`` is decoded once on first use (HTTP charset, then BOM and ``<meta>``
    sniffing; undecodable bytes are replaced, never raised). HTML is parsed with
    selectolax Lexbor once, on the first ``css()`` call (or ahead of the callback, in
    a thread, for a big page: see :meth:`prepare_html`); a page nested too deep is
    cut before the tag that nests too deep (see ``cap_nesting``).

    For code ported from Scrapy, ``sel`` and ``xpath()`` give parsel selectors
    (the ``parsel`` extra), built on first use; ``css()`` stays selectolax.
    """

    __slots__ = (
        "_base",
        "_binary",
        "_dropped",
        "_encoding",
        "_join",
        "_links",
        "_parser",
        "_sel",
        "_tags",
        "_text",
        "_url",
        "body",
        "cookies",
        "headers",
        "history",
        "limits",
        "raw_headers",
        "request",
        "status",
        "timings",
        "url",
    )
    _sel: Selector  # set on first use of `sel`

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
        self.limits = _UNLIMITED
        self._text: str | None = None
        self._encoding: str | None = None
        self._parser: LexborHTMLParser | None = None
        self._base: URL | None = None
        self._join: LinkBase | None = None
        self._links = 0  # links follow_all() has looked at
        self._dropped = 0  # links it refused (over limits.max_links)
        self._binary: set[str] | None = None  # binary links skipped (each counted once)
        self._tags: tuple[bytes, int] | None = None  # (body, its b"<" count) from the worker

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
        try:
            self._encoding, self._text = html_to_unicode(
                self.headers.get("Content-Type"), self.body
            )
        except (LookupError, ValueError):
            # The header or a <meta> names a codec that is no text encoding (base64, rot13,
            # idna, undefined...): Python's codecs raise instead of replacing.
            self._encoding, self._text = "utf-8", self.body.decode("utf-8", "replace")

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
            self._note_cut(self._parse())
        assert self._parser is not None
        return self._parser

    async def prepare_html(self) -> None:
        """Decode and parse now, in a thread, so the first ``css()`` does not block the loop.

        Lexbor parses without the GIL: a big page then costs the event loop next to nothing.
        """
        if self._parser is not None:
            return
        try:
            end = await asyncio.to_thread(self._parse)
        except Exception:  # the callback's first css() raises it again, where it is counted
            return
        self._note_cut(end)

    def _parse(self) -> int:
        """Parse the text (cut if it nests too deep); return where it was cut, or -1."""
        text = self.text
        # The worker's count of b"<" is the text's count of "<" when the codec maps byte
        # 0x3C to "<" and back only (UTF-8, ASCII, cp1252, ISO 8859-15): not counted twice.
        counted, tags = self._tags or (None, -1)
        if counted is not self.body or self._encoding not in _LT_SAFE:
            tags = -1
        end = cap_nesting(text, tags)
        self._parser = LexborHTMLParser(text if end < 0 else text[:end])
        return end

    def _note_cut(self, end: int) -> None:
        """Count and log a page that ``cap_nesting`` cut at ``end`` (-1: it was not cut)."""
        if end < 0:
            return
        limits = self.limits
        if limits.stats is not None:
            limits.stats.inc("responses/html_truncated")
        logger.warning(
            "[%s] %s nests too deep: parsed only its first %d of %d characters",
            limits.spider,
            self.url,
            end,
            len(self.text),
        )

    def css(self, selector: str) -> list[LexborNode]:
        """All nodes matching a CSS selector."""
        parser = self.selector
        try:
            return parser.css(selector)
        except SelectolaxError:  # its own message names neither the selector nor a fix
            raise SelectolaxError(css_error(selector)) from None

    def css_first(self, selector: str, default: Any = None) -> Any:
        """The first node matching a CSS selector, or ``default``."""
        parser = self.selector
        try:
            return parser.css_first(selector, default=default)
        except SelectolaxError:
            raise SelectolaxError(css_error(selector)) from None

    @property
    def sel(self) -> Selector:
        """A parsel ``Selector`` over :attr:`text`, built on first use (needs the parsel extra).

        For code ported from Scrapy: ``response.sel.css("a::attr(href)").getall()``.
        """
        try:
            return self._sel
        except AttributeError:  # left unset in __init__: no cost for the spiders that never ask
            self._sel = make_selector(self.text, self.url, self.headers.get("Content-Type"))
            return self._sel

    def xpath(self, query: str, **kwargs: Any) -> SelectorList[Selector]:
        """``response.sel.xpath(query)``: a parsel SelectorList (``.get()``, ``.getall()``...)."""
        return self.sel.xpath(query, **kwargs)

    @property
    def base_url(self) -> URL:
        """The URL relative links resolve against: ``<base href>`` if the page has one."""
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

    @property
    def link_base(self) -> LinkBase:
        """:attr:`base_url` split once for resolving this page's plain links as strings."""
        if self._join is None:
            self._join = LinkBase(self.base_url)
        return self._join

    def urljoin(self, href: str) -> str:
        """Resolve ``href`` against this page's URL (honouring ``<base href>``)."""
        return str(self.base_url.join(URL(href.strip())))

    def note_binary_link(self, url: str) -> None:
        """Count ``url`` as a binary link not followed (``links_dropped/binary``, once per URL)."""
        if self._binary is None:
            self._binary = set()
        elif url in self._binary:
            return
        self._binary.add(url)
        if self.limits.stats is not None:
            self.limits.stats.inc("links_dropped/binary")

    def follow(self, href: str | LexborNode | URL, **kwargs: Any) -> Request:
        """A Request for ``href`` relative to this page (a string, an ``<a>`` node).

        A parsel Selector of an ``<a>`` (or of an ``@href`` value) works too, for ported code.
        Unlike ``follow_all()``, one link asked for by name is returned even if it is a
        binary file: the caller chose it.
        """
        if href.__class__ is str:  # the README's loop: a plain link is built in one call
            try:
                request = follow_string(self._join or self.link_base, href, kwargs)
            except (ValueError, TypeError):
                request = None  # the full path below says what is wrong
            if request is not None:
                if self.request._url_auth is None:
                    return request
                return self.request.lend_url_credentials(request)
        elif isinstance(href, LexborNode):
            value = href.attributes.get("href")
            if value is None:
                raise InvalidRequest(f"node <{href.tag}> has no href attribute on {self.url}")
            href = value
        try:
            base = self._base or self.base_url
            url = base.join(href) if isinstance(href, URL) else join_link(base, href.strip())
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(
                f"malformed link {short_url(str(href))!r} on {short_url(self.url)}: {exc}"
            ) from None
        except AttributeError:  # no .strip(): a parsel Selector, handled off the common path
            return self.follow(selector_href(href, self.url), **kwargs)
        # A plain link (callback= at most) is built without re-validating, as follow_all() does.
        request = plain_link(url, kwargs) or self._request(url, kwargs)
        if self.request._url_auth is None:
            return request
        return self.request.lend_url_credentials(request)

    def _request(self, url: URL, kwargs: dict[str, Any]) -> Request:
        """``Request(url, **kwargs)``, an unknown argument named in the error."""
        try:
            return Request(url, **kwargs)  # type: ignore[arg-type]
        except TypeError:
            check_request_kwargs(kwargs, str(url))  # names an unknown argument (cb_kwargs...)
            raise

    def follow_all(
        self,
        hrefs: Iterable[str | LexborNode] | None = None,
        css: str = "a[href]",
        **kwargs: Any,
    ) -> list[Request]:
        """Requests for every link (``hrefs``, or the ``href`` of nodes matching ``css``).

        ``hrefs`` may be parsel selectors too, e.g. ``response.xpath("//a")`` (ported code).

        Links that cannot be crawled (``mailto:``, ``javascript:``, malformed) are skipped,
        and so are links to binary files (pdf, images... see ``crawler.linkextractor``),
        counted as ``links_dropped/binary``, unless FOLLOW_BINARY_LINKS is set. In a
        crawl, at most MAX_LINKS_PER_RESPONSE links of one response are looked at (over
        all calls); the rest are counted as ``links_dropped/too_many``.
        """
        links = self.css(css) if hrefs is None else hrefs
        if type(links) is not list:
            links = list(links)
        limit = self.limits.max_links
        if limit and self._links + len(links) > limit:
            links = self._within_limit(links, limit)
        self._links += len(links)
        try:
            return self._requests(links, kwargs)
        except AttributeError:  # no .strip(): parsel Selectors, handled off the common path
            plain = (str, LexborNode)
            hrefs = [x if isinstance(x, plain) else selector_href(x, self.url) for x in links]
            return self._requests(hrefs, kwargs)

    def _within_limit(self, links: list[Any], limit: int) -> list[Any]:
        """The links still allowed; the others are counted (and logged once per response)."""
        room = max(0, limit - self._links)
        dropped = len(links) - room
        limits = self.limits
        if limits.stats is not None:
            limits.stats.inc("links_dropped/too_many", dropped)
        if not self._dropped:
            logger.warning(
                "[%s] %s has more than MAX_LINKS_PER_RESPONSE=%d links: dropped %d",
                limits.spider,
                self.url,
                limit,
                dropped,
            )
        self._dropped += dropped
        return links[:room]

    def _requests(self, links: list[Any], kwargs: dict[str, Any]) -> list[Request]:
        """The per-link hot path of follow_all() (see ``crawler/follow.py``)."""
        return link_requests(self, links, kwargs)
