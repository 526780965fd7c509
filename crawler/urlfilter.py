"""URL filters: the spider's ``allow_urls`` / ``deny_urls`` and the ALLOW_URLS / DENY_URLS settings.

A URL is crawled when it matches (``re.search`` on the whole URL) at least one
pattern of every allow list that is set (the spider's and the settings') and no
pattern of either deny list. The check runs for every request before the
frontier's de-duplication: start requests, callback outputs and redirect targets
(before the redirect is followed). A refused URL counts as ``filtered/url_pattern``
and gets one DEBUG line.

The patterns are compiled once per crawl. Each list becomes one combined regex
(``(?:a)|(?:b)``), so a check costs one ``search`` per list whatever the number
of patterns; a pattern that cannot join an alternation (back-references, named
groups, global flags such as ``(?i)`` in the middle) is searched on its own.
With no pattern configured :meth:`UrlFilter.build` returns None and the callers
skip the check with one attribute test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from yarl import URL

from .errors import ConfigError, SettingsError
from .loglines import get_logger, short_url

__all__ = ["URL_PATTERN_STAT", "UrlFilter", "split_patterns"]

URL_PATTERN_STAT = "filtered/url_pattern"

logger = get_logger("crawler.worker")

# A back-reference or a named group changes meaning (or fails) inside a bigger alternation.
_NOT_JOINABLE = re.compile(r"\\[1-9]|\(\?P[<=]|\(\?<[A-Za-z_]")


class _Patterns:
    """One list of patterns: one combined regex, plus the few that cannot be combined."""

    __slots__ = ("combined", "single")

    def __init__(self, patterns: Sequence[re.Pattern[str]]) -> None:
        joinable = [p for p in patterns if not _NOT_JOINABLE.search(p.pattern)]
        single = [p for p in patterns if _NOT_JOINABLE.search(p.pattern)]
        combined: re.Pattern[str] | None = None
        if len(joinable) == 1:
            combined = joinable[0]
        elif joinable:
            try:
                combined = re.compile("|".join(f"(?:{p.pattern})" for p in joinable))
            except re.error:  # e.g. a global flag "(?i)" that must lead its pattern
                single = list(patterns)
        self.combined = combined
        self.single = tuple(single)

    def search(self, url: str) -> bool:
        """True if any pattern is found in ``url``."""
        combined = self.combined
        if combined is not None and combined.search(url) is not None:
            return True
        return bool(self.single) and any(p.search(url) is not None for p in self.single)


class UrlFilter:
    """The allow/deny patterns of one crawl (see the module docstring)."""

    __slots__ = ("_allow", "_deny")

    def __init__(self, allow: Sequence[_Patterns], deny: _Patterns | None) -> None:
        self._allow = tuple(allow)
        self._deny = deny

    @classmethod
    def build(cls, spider: Any, settings: Any = None) -> UrlFilter | None:
        """The filter of ``spider`` (``allow_urls``/``deny_urls``) and ``settings``.

        None when no pattern is set. Raises :class:`~crawler.errors.ConfigError`
        (:class:`~crawler.errors.SettingsError` for a setting) naming a pattern that
        does not compile, before anything is crawled.
        """
        name = type(spider).__name__
        spider_allow = _compile(getattr(spider, "allow_urls", ()), f"{name}.allow_urls")
        spider_deny = _compile(getattr(spider, "deny_urls", ()), f"{name}.deny_urls")
        settings_allow = _compile(getattr(settings, "ALLOW_URLS", ()), "ALLOW_URLS", True)
        settings_deny = _compile(getattr(settings, "DENY_URLS", ()), "DENY_URLS", True)
        allow = [_Patterns(p) for p in (spider_allow, settings_allow) if p]
        deny = [*spider_deny, *settings_deny]
        if not allow and not deny:
            return None
        return cls(allow, _Patterns(deny) if deny else None)

    def allows(self, url: str) -> bool:
        """True if ``url`` passes every allow list and no deny list."""
        deny = self._deny
        if deny is not None and deny.search(url):
            return False
        for patterns in self._allow:  # a loop, not all(): no generator per URL
            if not patterns.search(url):
                return False
        return True

    def check(self, url: str, stats: Any, spider_name: str) -> bool:
        """:meth:`allows`; a refused URL is counted and logged (:meth:`refuse`)."""
        if self.allows(url):
            return True
        self.refuse(url, stats, spider_name)
        return False

    def refuse(self, url: str, stats: Any, spider_name: str, what: str = "") -> None:
        """Count ``url`` as ``filtered/url_pattern`` and log one DEBUG line."""
        stats.inc(URL_PATTERN_STAT)
        logger.debug("[%s] filtered %s%s (URL patterns)", spider_name, what, short_url(url))

    def refused_redirect(self, response: Any) -> str | None:
        """The URL of ``response``'s redirect chain these patterns refuse, if any.

        A redirect the downloader did not follow: its Location (the downloader asks
        :meth:`allows` before it sends a hop). A chain that was followed: every hop after
        the first and the final URL (a fetch that did not ask is still not crawled).
        """
        status = response.status
        if 300 <= status < 400 and status != 304:
            location = response.headers.get("Location")
            if not location:
                return None
            try:
                target = str(URL(response.url).join(URL(location.strip())))
            except (ValueError, TypeError):
                return None  # unusable: not ours to count
            return None if self.allows(target) else target
        if not response.history:
            return None
        for hop in response.history[1:]:
            if not self.allows(hop.url):
                return str(hop.url)
        return None if self.allows(response.url) else str(response.url)


def split_patterns(value: str) -> list[str]:
    """A ``-a allow_urls=...`` value split on commas, as ``start_urls`` is.

    A comma inside ``{...}`` (a repeat such as ``\\d{1,3}``) or ``[...]``, or escaped
    as ``\\,``, belongs to its pattern.
    """
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    escaped = False
    for char in value:
        if escaped:
            current.append(char if char == "," else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            if char in "{[":
                depth += 1
            elif char in "}]" and depth:
                depth -= 1
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _compile(value: Any, where: str, setting: bool = False) -> list[re.Pattern[str]]:
    """Each pattern of ``value`` compiled; a bad one is a one-line ConfigError naming it."""
    if not value:
        return []
    patterns: Iterable[Any] = [value] if isinstance(value, str) else value
    compiled = []
    error = SettingsError if setting else ConfigError
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise error(f"bad value {where} entry {pattern!r}: expected a regex string")
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise error(
                f"bad value {where} entry {pattern!r:.200}: not a regular expression ({exc});"
                " escape special characters with a backslash"
            ) from None
    return compiled
