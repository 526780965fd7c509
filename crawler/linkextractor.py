"""Pick the links of a page to crawl: ``LinkExtractor`` and the ``Link`` values it returns.

``LinkExtractor(allow=r"/item/\\d+").extract_links(response)`` works like Scrapy's
LinkExtractor, on the page's selectolax (Lexbor) nodes and at the same per-link cost as
``response.follow_all()``: URLs are joined against the page (or its ``<base href>``) as
strings when they are plain (``crawler/linkjoin.py``), else with yarl; the file extension
is one frozenset lookup on the path's suffix, regexes are compiled once and not run at all
when none is given. ``crawler.spiders.RuleSpider`` builds
its requests from these links.

Also here: :data:`IGNORED_EXTENSIONS` and :func:`is_binary_path`, the binary-file test
``response.follow()``/``follow_all()`` apply unless ``FOLLOW_BINARY_LINKS`` is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from w3lib.url import canonicalize_url
from yarl import URL

from .errors import ConfigError

if TYPE_CHECKING:
    from selectolax.lexbor import LexborAttributes, LexborNode

    from .response import Response

__all__ = ["IGNORED_EXTENSIONS", "Link", "LinkExtractor", "is_binary_path"]

# Links to files a crawl should not download as pages (as Scrapy's IGNORED_EXTENSIONS,
# plus fonts and a few newer formats). Lower case, without the dot.
IGNORED_EXTENSIONS: frozenset[str] = frozenset(
    (
        # archives and disk images
        *("7z", "7zip", "bz2", "gz", "tgz", "rar", "tar", "xz", "zip", "zst", "iso", "dmg"),
        # images
        *("bmp", "gif", "jpg", "jpeg", "png", "webp", "avif", "heic", "tif", "tiff", "ico"),
        *("svg", "eps", "ps", "ai", "psd", "cdr", "drw", "dxf", "mng", "pct", "psp", "pst"),
        # audio
        *("mp3", "wma", "ogg", "oga", "wav", "flac", "aac", "m4a", "mid", "au", "aiff", "ra"),
        # video
        *("3gp", "asf", "asx", "avi", "mov", "mp4", "m4v", "mpg", "mpeg", "mkv", "qt", "rm"),
        *("swf", "wmv", "flv", "webm"),
        # office documents
        *("pdf", "doc", "docx", "docm", "dot", "dotx", "xls", "xlsx", "xlsm", "xltx", "ppt"),
        *("pptx", "pps", "ppsx", "odt", "ods", "odg", "odp", "rtf", "epub"),
        # executables and packages
        *("exe", "msi", "bin", "apk", "jar", "deb", "rpm", "sh"),
        # fonts, style sheets, feeds: not pages either
        *("woff", "woff2", "ttf", "otf", "eot", "css", "rss"),
    )
)

_SCHEMES = ("http", "https")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_:-]*\Z")
_NO_EXTENSIONS: frozenset[str] = frozenset()


def is_binary_path(path: str, extensions: frozenset[str] = IGNORED_EXTENSIONS) -> bool:
    """True if the URL path ``path`` ends in one of ``extensions`` (``/a/b.PDF``: ``pdf``).

    Only the last segment counts: the suffix after the last dot holds a ``/`` otherwise.
    """
    return path.rpartition(".")[2].lower() in extensions


@dataclass(frozen=True, slots=True)
class Link:
    """A link found on a page.

    ``url``: absolute, without its ``#fragment`` (kept apart in ``fragment``); ``text``:
    the link's text, whitespace-stripped; ``nofollow``: its ``rel`` says ``nofollow``
    (reported, not obeyed: leave such links out in ``process_links`` if you wish).
    """

    url: str
    text: str = ""
    fragment: str = ""
    nofollow: bool = False


Patterns = str | re.Pattern[str] | Iterable[str | re.Pattern[str]]


class LinkExtractor:
    """Which links of a page to follow: ``extract_links(response)`` returns them as Links.

    A link is kept if its URL (absolute, fragment removed) matches one of ``allow``
    (any URL when none is given) and none of ``deny`` (regexes, searched anywhere in
    the URL); its host is one of ``allow_domains`` (or a subdomain of one; any host
    when none is given) and none of ``deny_domains``; and its path does not end in
    one of ``deny_extensions``. ``deny_extensions=None`` (the default) means
    :data:`IGNORED_EXTENSIONS` (pdf, zip, images, media, office files...) unless the
    crawl sets ``FOLLOW_BINARY_LINKS``; ``deny_extensions=[]`` keeps every extension.
    Skipped binary links are counted as ``links_dropped/binary``.

    ``restrict_css``: only links inside nodes matching these selectors (the node
    itself included). ``tags``/``attrs``: the elements and attributes read
    (``a[href]`` and ``area[href]`` by default). ``process_value(value)`` may rewrite
    each attribute value before it is joined (return None to skip the link).
    ``unique``: each URL once (the first occurrence wins). ``canonicalize``: URLs in
    w3lib's canonical form (sorted query...; about 6 µs a link, off by default).

    Links that cannot be crawled (``mailto:``, ``javascript:``, malformed, a bare
    ``#fragment``) are skipped. In a crawl, at most MAX_LINKS_PER_RESPONSE nodes are
    read per call.
    """

    __slots__ = (
        "_allow",
        "_attrs",
        "_canonicalize",
        "_css",
        "_deny",
        "_deny_domains",
        "_domains",
        "_extensions",
        "_process_value",
        "_restrict",
        "_unique",
    )

    def __init__(
        self,
        allow: Patterns = (),
        deny: Patterns = (),
        *,
        allow_domains: str | Iterable[str] = (),
        deny_domains: str | Iterable[str] = (),
        restrict_css: str | Iterable[str] = (),
        tags: str | Iterable[str] = ("a", "area"),
        attrs: str | Iterable[str] = ("href",),
        deny_extensions: Iterable[str] | None = None,
        unique: bool = True,
        canonicalize: bool = False,
        process_value: Callable[[str], str | None] | None = None,
    ) -> None:
        self._allow = _matcher(allow, "allow")
        self._deny = _matcher(deny, "deny")
        self._domains = _domains(allow_domains, "allow_domains")
        self._deny_domains = _domains(deny_domains, "deny_domains")
        self._restrict = _strings(restrict_css)
        tag_names = [_name(t, "tags").lower() for t in _strings(tags)]
        self._attrs = tuple(_name(a, "attrs").lower() for a in _strings(attrs))
        if not tag_names or not self._attrs:
            raise ConfigError("LinkExtractor needs at least one tag and one attribute to read")
        # One selector for every (tag, attribute) pair: Lexbor matches it in one pass.
        self._css = ", ".join(f"{t}[{a}]" for t in tag_names for a in self._attrs)
        if deny_extensions is None:
            self._extensions: frozenset[str] | None = None  # the crawl's FOLLOW_BINARY_LINKS
        else:
            if isinstance(deny_extensions, str):
                deny_extensions = [deny_extensions]
            self._extensions = frozenset(e.lower().lstrip(".") for e in deny_extensions)
        self._unique = unique
        self._canonicalize = canonicalize
        if process_value is not None and not callable(process_value):
            raise ConfigError(f"LinkExtractor process_value must be callable: {process_value!r}")
        self._process_value = process_value

    def __repr__(self) -> str:
        return f"<LinkExtractor {self._css!r}>"

    def matches(self, url: str) -> bool:
        """True if ``url`` (absolute) passes ``allow``/``deny`` and the domain filters."""
        try:
            parsed = URL(url)
        except ValueError:
            return False
        return self._url_allowed(url) and self._host_allowed(parsed.raw_host or "")

    def extract_links(self, response: Response) -> list[Link]:
        """The links of ``response`` this extractor keeps, in document order."""
        nodes = self._nodes(response)
        limits = response.limits
        if limits.max_links and len(nodes) > limits.max_links:
            if limits.stats is not None:
                limits.stats.inc("links_dropped/too_many", len(nodes) - limits.max_links)
            nodes = nodes[: limits.max_links]
        extensions = self._extensions
        if extensions is None:
            extensions = IGNORED_EXTENSIONS if limits.skip_binary else _NO_EXTENSIONS
        links_base = response.link_base
        base = links_base.url
        seen: set[str] | None = set() if self._unique else None
        process = self._process_value
        attrs = self._attrs
        links: list[Link] = []
        for node in nodes:
            node_attrs = node.attrs
            for name in attrs:
                value = node_attrs.get(name)
                if value is None:
                    continue
                if process is not None:
                    value = process(value)
                    if value is None:
                        continue
                value = value.strip()
                if not value or value[0] == "#":  # the page itself
                    continue
                plain = links_base.resolve(value)  # crawler/linkjoin.py: no yarl for most
                if plain is not None:
                    text, host, path = plain
                    text, _, fragment = text.partition("#")
                    if not fragment:  # RuleSpider follows it next: not checked again
                        links_base.remember(plain)
                else:
                    try:
                        url = base.join(URL(value))
                        if url.scheme not in _SCHEMES or not url.raw_host:
                            continue
                        url.port  # noqa: B018 - raises ValueError for an out-of-range port
                    except (ValueError, TypeError):
                        continue
                    fragment = url.raw_fragment
                    if fragment:
                        url = url.with_fragment(None)
                    text, host, path = str(url), url.raw_host or "", url.raw_path
                link = self._link(node, node_attrs, text, host, fragment, seen)
                if link is None:
                    continue
                # Last, so only a link this extractor would have kept counts as skipped.
                if extensions and is_binary_path(path, extensions):
                    response.note_binary_link(link.url)
                    continue
                links.append(link)
        return links

    def _nodes(self, response: Response) -> list[LexborNode]:
        """The elements to read: all of the page's, or those inside ``restrict_css``."""
        if not self._restrict:
            return response.css(self._css)
        nodes = []
        for selector in self._restrict:
            for region in response.css(selector):
                nodes.extend(region.css(self._css))  # the region itself included
        return nodes

    def _link(
        self,
        node: LexborNode,
        node_attrs: LexborAttributes,
        text_url: str,
        host: str,
        fragment: str,
        seen: set[str] | None,
    ) -> Link | None:
        """The Link for ``text_url`` (on ``host``, without its ``fragment``) if it passes
        the filters (else None)."""
        if (self._domains or self._deny_domains) and not self._host_allowed(host):
            return None
        if self._canonicalize:
            text_url = canonicalize_url(text_url)
        if seen is not None:
            if text_url in seen:
                return None
            seen.add(text_url)
        if not self._url_allowed(text_url):
            return None
        rel = node_attrs.get("rel")
        nofollow = rel is not None and "nofollow" in rel.lower().split()
        return Link(text_url, node.text().strip(), fragment, nofollow)

    def _url_allowed(self, url: str) -> bool:
        allow, deny = self._allow, self._deny
        if allow is not None and not allow(url):
            return False
        return deny is None or not deny(url)

    def _host_allowed(self, host: str) -> bool:
        if self._domains is not None and not _in_domains(host, self._domains):
            return False
        return self._deny_domains is None or not _in_domains(host, self._deny_domains)


_Domains = tuple[frozenset[str], tuple[str, ...]]


def _in_domains(host: str, domains: _Domains) -> bool:
    exact, suffixes = domains
    return host in exact or host.endswith(suffixes)


def _strings(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(f"LinkExtractor {what} must be plain names like 'a' or 'href': {value!r}")
    return value


def _matcher(patterns: Patterns, what: str) -> Callable[[str], object] | None:
    """One ``search`` for the patterns (None: no pattern, so no regex work per link)."""
    items = (patterns,) if isinstance(patterns, (str, re.Pattern)) else tuple(patterns)
    compiled = []
    for pattern in items:
        try:
            compiled.append(pattern if isinstance(pattern, re.Pattern) else re.compile(pattern))
        except (re.error, TypeError) as exc:
            raise ConfigError(f"LinkExtractor {what} regex {pattern!r} is invalid: {exc}") from None
    if not compiled:
        return None
    if len(compiled) == 1:
        return compiled[0].search
    searches = tuple(c.search for c in compiled)
    return lambda url: any(search(url) for search in searches)


def _domains(value: str | Iterable[str], what: str) -> _Domains | None:
    """(exact hosts, ``.suffixes``) as yarl gives hosts (lower case, IDNA); None: no domain."""
    hosts = []
    for domain in _strings(value):
        name = domain.strip().lower().strip(".") if isinstance(domain, str) else ""
        if not name:
            raise ConfigError(f"LinkExtractor {what} holds an empty or non-text domain: {domain!r}")
        try:
            hosts.append(URL.build(scheme="http", host=name).raw_host or name)
        except (ValueError, UnicodeError) as exc:
            raise ConfigError(
                f"LinkExtractor {what}: {domain!r} is not a host name: {exc}"
            ) from None
    if not hosts:
        return None
    return frozenset(hosts), tuple("." + h for h in hosts)
