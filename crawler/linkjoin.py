"""Plain links resolved as strings: the common link in one regex match, no ``yarl.URL``.

A page's links are mostly plain: ``p7.html``, ``../d3/p9.html``, ``/about``,
``http://shop.example/item?id=4``, made of characters that need no quoting. For those,
:meth:`LinkBase.resolve` gives the exact string ``str(base.join(URL(href)))`` would, by
RFC 3986 string arithmetic (~1 µs instead of ~4 µs of parsing, joining and formatting
with yarl). Anything else (a ``%``, a space, IDNA, userinfo, an IPv6 host, an empty
``?``...) returns None and takes the yarl path. Most followed links are duplicates that
are dropped by fingerprint before anything needs a URL object, so the Request built
from a plain link parses its URL only when it is fetched (``Request.yarl_url``).
``tests/test_linkjoin.py`` checks every result against yarl on random links.
"""

from __future__ import annotations

import re

from yarl import URL

__all__ = ["LinkBase", "plain_absolute"]

# What yarl leaves as it is in a path, a query and a fragment (every other character is
# quoted, or changes meaning): RFC 3986 unreserved and sub-delims, ":" and "@".
_CHARS = r"A-Za-z0-9!$&'()*+,\-./:;=@_~"
# A relative reference: path, then a non-empty query and fragment (yarl drops empty ones).
_RELATIVE = re.compile(rf"([{_CHARS}]*)(?:\?([{_CHARS}?]+))?(?:#([{_CHARS}?]+))?")
# An absolute http(s) URL with a lower-case ASCII host name and a path.
_ABSOLUTE = re.compile(
    rf"(https?)://([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)(?::([1-9][0-9]{{0,4}}))?"
    rf"(/[{_CHARS}]*)(?:\?([{_CHARS}?]+))?(?:#([{_CHARS}?]+))?"
)
_MATCH_ABSOLUTE = _ABSOLUTE.fullmatch


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 as yarl does it: ``..`` above the root stays at the root, and a
    path ending in ``.`` or ``..`` ends with ``/``."""
    segments = path[1:].split("/")
    resolved: list[str] = []
    for segment in segments:
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment != ".":
            resolved.append(segment)
    if segments[-1] in (".", ".."):
        resolved.append("")
    return "/" + "/".join(resolved)


def _has_dot_segment(path: str) -> bool:
    return "/./" in path or "/../" in path or path.endswith(("/.", "/.."))


def _origin(scheme: str, host: str, port: str | None) -> str:
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def _joined(origin: str, path: str, query: str | None, fragment: str | None) -> str:
    """The URL text of these parts (a missing query or fragment leaves out its ``?``/``#``)."""
    url = origin + path
    if query is not None:
        url = f"{url}?{query}"
    if fragment is not None:
        url = f"{url}#{fragment}"
    return url


class LinkBase:
    """What links on one page resolve against: its URL (or ``<base href>``), split once.

    ``url`` is the yarl base for links that are not plain; ``plain`` says whether the base
    itself is plain enough for string resolution (else :meth:`resolve` always says None).
    """

    __slots__ = (
        "_directory",
        "_document",
        "_fragment",
        "_known",
        "_origin",
        "_path",
        "host",
        "plain",
        "url",
    )
    _directory: str  # the path up to its last "/": where a relative path starts from

    def __init__(self, url: URL) -> None:
        self.url = url
        self.host = ""
        self._known: dict[str, tuple[str, str, str]] | None = None
        text = str(url)
        found = _MATCH_ABSOLUTE(text)
        # A base that yarl shows unchanged is plain: its parts are what the join uses.
        self.plain = found is not None and "xn--" not in found.group(2)
        if found is None:
            return
        scheme, host, port, path, _, fragment = found.groups()
        self.host = host
        self._origin = _origin(scheme, host, port)
        self._path = path
        self._directory = path[: path.rfind("/") + 1]
        # The page without its fragment: "#top" on it is the page itself.
        self._document = text.partition("#")[0]
        self._fragment = fragment

    def resolve(self, href: str) -> tuple[str, str, str] | None:
        """``(url, host, path)`` of a stripped ``href`` on this page, or None: not plain
        (use ``url.join(URL(href))``). ``url`` is exactly what yarl's join would print."""
        if not self.plain:
            return None
        if href.startswith(("http://", "https://")):
            known = self._known
            if known is not None and href in known:
                return known[href]
            return plain_absolute(href)
        found = _RELATIVE.fullmatch(href)
        if found is None:
            return None
        path, query, fragment = found.groups()
        if not path:
            if query is None:
                if fragment is None:
                    return None  # "": the base as it is (rare: yarl says)
                return f"{self._document}#{fragment}", self.host, self._path
            # "?page=2": the page's path, a new query; yarl keeps the base's fragment
            # unless the link has its own.
            url = f"{self._origin}{self._path}?{query}"
            fragment = fragment or self._fragment
            return (f"{url}#{fragment}" if fragment else url), self.host, self._path
        if path[0] == "/":
            if path.startswith("//"):
                return None  # network-path reference: another host
        else:
            colon = path.find(":")
            if colon >= 0 and "/" not in path[:colon]:
                return None  # "mailto:x", "a:b": a scheme, not a path
            directory = self._directory
            while path.startswith("../"):  # the common dot segments, one string cut each
                path = path[3:]
                if directory != "/":
                    directory = directory[: directory.rindex("/", 0, -1) + 1]
            path = directory + path
        if "/." in path and _has_dot_segment(path):
            path = _remove_dot_segments(path)
        return _joined(self._origin, path, query, fragment), self.host, path

    def remember(self, resolved: tuple[str, str, str]) -> None:
        """Keep a :meth:`resolve` result (without a fragment) for this page: a LinkExtractor's
        Link URL followed next (RuleSpider) is then not checked a second time."""
        if self._known is None:
            self._known = {}
        self._known[resolved[0]] = resolved


def plain_absolute(href: str) -> tuple[str, str, str] | None:
    """``(url, host, path)`` of an absolute http(s) URL that is plain, ``url`` as yarl prints
    it (dot segments removed); None: not plain, parse it with yarl."""
    found = _MATCH_ABSOLUTE(href)
    if found is None:
        return None
    host, port, path = found.group(2, 3, 4)
    if "xn--" in host:
        return None  # yarl's host is the decoded name: let it say
    # yarl drops a default port and refuses one out of range (same-length digit strings
    # compare as numbers).
    if port is not None and (
        port == ("80" if href[4] == ":" else "443") or (len(port) == 5 and port > "65535")
    ):
        return None
    if "/." in path and _has_dot_segment(path):
        scheme, _, _, _, query, fragment = found.groups()
        path = _remove_dot_segments(path)
        href = _joined(_origin(scheme, host, port), path, query, fragment)
    return href, host, path
