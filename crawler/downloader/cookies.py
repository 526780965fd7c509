"""Cookie jars: strict, unsafe (IP hosts) or none; seeded with configured cookies.

Strict and unsafe jars are :class:`CrawlerCookieJar`: aiohttp's RFC 6265 jar plus
rules for the hostile web, applied to every cookie before aiohttp stores it:

* a ``Domain`` attribute that is a public suffix (``co.uk``, ``.com``, ``github.io``)
  is refused, or made host-only when it is the host itself (RFC 6265 §5.3 step 5);
* a cookie over ``max_cookie_bytes`` (name, value and attributes) is refused;
* each site (registrable domain) keeps at most ``max_per_domain`` cookies and the
  jar at most ``max_per_jar``: the least recently set ones are evicted.

Refusals and evictions are counted by reason (:meth:`CrawlerCookieJar.rejections`)
and logged at DEBUG with the cookie's name only: values are secrets.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import mktime_tz, parsedate_tz
from http.cookies import CookieError, Morsel, SimpleCookie
from types import MappingProxyType

import aiohttp
from aiohttp.abc import AbstractCookieJar, ClearCookiePredicate
from aiohttp.typedefs import LooseCookies
from yarl import URL

from ..loglines import get_logger
from .suffixes import is_ip, is_public_suffix, registered_domain

__all__ = [
    "CookieLimits",
    "CrawlerCookieJar",
    "check_cookies",
    "jar_cookies_for",
    "make_cookie_jar",
    "seed_cookies",
]

JAR_KINDS = ("strict", "unsafe", "none")

logger = get_logger("crawler.downloader.cookies")

_NO_URL = URL()
# A Max-Age beyond this is "forever" (and would overflow a float deadline).
_MAX_AGE_CAP_S = 10**10

CookieKey = tuple[str, str, str]  # (domain, path, name): aiohttp's identity of a cookie


@dataclass(frozen=True, slots=True)
class CookieLimits:
    """How much a jar holds. RFC 6265 §6.1 asks for at least 4096 bytes per cookie,
    50 cookies per domain and 3000 in all; we hold exactly that, so a hostile
    server cannot grow a crawl's memory with Set-Cookie headers."""

    max_cookie_bytes: int = 4096
    max_per_domain: int = 50
    max_per_jar: int = 3000


def make_cookie_jar(kind: str, limits: CookieLimits | None = None) -> AbstractCookieJar:
    """A cookie jar of the configured kind: strict, unsafe (IP hosts allowed) or none."""
    if kind == "none":
        return aiohttp.DummyCookieJar()
    return CrawlerCookieJar(unsafe=(kind == "unsafe"), limits=limits)


def _site(domain: str) -> str:
    """The registrable domain limits are counted by (as browsers do: per eTLD+1)."""
    return registered_domain(domain) if domain else domain


def _cookie_bytes(name: str, morsel: Morsel[str]) -> int:
    """Name, value and attribute lengths in UTF-8 bytes (RFC 6265 §6.1's measure)."""
    parts = [name, morsel.coded_value or morsel.value or ""]
    parts += [f"{attr}{value}" for attr, value in morsel.items() if value]
    return sum(len(part.encode("utf-8", "surrogatepass")) for part in parts)


def _deadline(morsel: Morsel[str], now: float) -> float | None:
    """When the cookie expires (Unix time), or None for a session cookie; Max-Age wins."""
    max_age = morsel["max-age"]
    if max_age:
        try:
            return now + min(int(max_age), _MAX_AGE_CAP_S)
        except ValueError:
            pass  # aiohttp ignores a malformed Max-Age too
    parsed = parsedate_tz(morsel["expires"]) if morsel["expires"] else None
    try:
        return None if parsed is None else float(mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def _default_path(url: URL) -> str:
    """RFC 6265 §5.1.4: the request path up to, not including, its last '/'."""
    path = url.path
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[: path.rfind("/")]


def _key(name: str, morsel: Morsel[str], url: URL) -> CookieKey:
    """The (domain, path, name) aiohttp files ``morsel`` under when ``url`` sets it."""
    domain = morsel["domain"]
    domain = "" if domain.endswith(".") else domain.removeprefix(".")
    path = morsel["path"]
    if not path.startswith("/"):
        path = _default_path(url)
    return (domain or url.raw_host or "", path.rstrip("/"), name)


@dataclass(slots=True)
class _Admitted:
    """A cookie that passed the rules, on its way into the jar."""

    name: str
    morsel: Morsel[str]
    key: CookieKey
    site: str
    deadline: float | None


class _CookieBook:
    """What the jar knows beyond aiohttp's public view: set order, counts, deadlines."""

    __slots__ = ("deadlines", "order", "site_counts")

    def __init__(self) -> None:
        self.order: dict[CookieKey, str] = {}  # key -> site, least recently set first
        self.site_counts: Counter[str] = Counter()
        self.deadlines: dict[CookieKey, float] = {}

    def touch(self, key: CookieKey, site: str, deadline: float | None) -> None:
        """``key`` was (re)set just now."""
        if self.order.pop(key, None) is None:
            self.site_counts[site] += 1
        self.order[key] = site
        if deadline is None:
            self.deadlines.pop(key, None)  # a replacement doesn't inherit an expiry
        else:
            self.deadlines[key] = deadline

    def forget(self, key: CookieKey) -> None:
        """``key`` is no longer in the jar."""
        site = self.order.pop(key, None)
        if site is not None:
            self.site_counts[site] -= 1
            if not self.site_counts[site]:
                del self.site_counts[site]
        self.deadlines.pop(key, None)

    def resync(self, present: Iterable[CookieKey]) -> None:
        """Match the jar's real contents; cookies we never saw set count as the oldest."""
        present = set(present)
        order = {key: _site(key[0]) for key in present if key not in self.order}
        order.update((key, site) for key, site in self.order.items() if key in present)
        self.order = order
        self.site_counts = Counter(order.values())
        self.deadlines = {k: d for k, d in self.deadlines.items() if k in order}

    def within(self, limits: CookieLimits, sites: Iterable[str]) -> bool:
        """True if ``sites`` and the whole book are within ``limits``."""
        counts = self.site_counts
        return len(self.order) <= limits.max_per_jar and all(
            counts[site] <= limits.max_per_domain for site in sites
        )

    def pick_evictions(self, limits: CookieLimits) -> list[tuple[CookieKey, str]]:
        """The least recently set cookies to drop to get within ``limits``, with the reason."""
        per_site = limits.max_per_domain
        excess = Counter({s: n - per_site for s, n in self.site_counts.items() if n > per_site})
        jar_excess = len(self.order) - excess.total() - limits.max_per_jar
        picked: list[tuple[CookieKey, str]] = []
        for key, site in self.order.items():
            if excess[site] > 0:
                excess[site] -= 1
                picked.append((key, "domain_limit"))
            elif jar_excess > 0:
                jar_excess -= 1
                picked.append((key, "jar_limit"))
        return picked


class CrawlerCookieJar(aiohttp.CookieJar):
    """aiohttp's cookie jar with public-suffix, size and count rules (see the module doc).

    Every way in (``Set-Cookie`` headers, seeded cookies, restored state) goes
    through :meth:`update_cookies`, which filters the cookies and lets aiohttp
    store the rest. Over a count limit old cookies are evicted rather than new
    ones refused, as Chrome and Firefox do (per eTLD+1, like our count):
    refusing would let whatever came first, say a flood of junk, lock a site's
    fresh login cookie out for good, while eviction only lets a site push out
    its own cookies. Browsers evict the least recently *used*; a crawler sends
    a site all its cookies on every request, so we go by least recently *set*.
    """

    def __init__(self, *, unsafe: bool = False, limits: CookieLimits | None = None) -> None:
        # One attribute of ours per concern, named so aiohttp's own don't clash with them.
        self._crawler_limits = limits or CookieLimits()
        self._crawler_book = _CookieBook()
        self._crawler_rejections: Counter[str] = Counter()
        super().__init__(unsafe=unsafe)

    def rejections(self) -> Mapping[str, int]:
        """Cookies refused or evicted so far, by reason (``public_suffix``, ``too_large``,
        ``domain_limit``, ``jar_limit``): a snapshot."""
        return MappingProxyType(dict(self._crawler_rejections))

    def expires_at(self, domain: str, path: str, name: str) -> float | None:
        """Unix time the cookie filed under (domain, path, name) expires, None if never."""
        return self._crawler_book.deadlines.get((domain, path, name))

    def update_cookies_from_headers(self, headers: Sequence[str], response_url: URL) -> None:
        """Parse ``Set-Cookie`` headers and store them through :meth:`update_cookies`.

        aiohttp's jar stores parsed headers directly, past ``update_cookies``; the
        base class's version routes them through it, so our rules apply. A header
        is the cookie's name, value and attributes: one too long is refused here,
        counted, rather than silently skipped by aiohttp's parser.
        """
        limit, fitting = self._crawler_limits.max_cookie_bytes, []
        for header in headers:
            if len(header.encode("utf-8", "surrogatepass")) <= limit:
                fitting.append(header)
            else:
                name, sep, _ = header.partition(";")[0].partition("=")
                self._refuse(name.strip() if sep else "", response_url.raw_host, "too_large")
        AbstractCookieJar.update_cookies_from_headers(self, fitting, response_url)

    def update_cookies(self, cookies: LooseCookies, response_url: URL = _NO_URL) -> None:
        """Store the cookies ``response_url`` set that pass the rules; evict over the limits."""
        admitted = self._newest_per_site(self._admit(cookies, response_url))
        if admitted:
            super().update_cookies([(a.name, a.morsel) for a in admitted], response_url)
        self._record(admitted)
        self._enforce_limits({a.site for a in admitted})

    def clear(self, predicate: ClearCookiePredicate | None = None) -> None:
        """Remove every cookie, or those ``predicate`` picks (and the expired ones)."""
        super().clear(predicate)
        self._resync()

    def _admit(self, cookies: LooseCookies, url: URL) -> list[_Admitted]:
        host = url.raw_host
        now = time.time()
        items = cookies.items() if isinstance(cookies, Mapping) else cookies
        admitted = []
        for name, value in items:
            if not isinstance(value, Morsel):
                value = SimpleCookie({name: str(value)})[name]  # as aiohttp does
            morsel = self._checked(name, value, host)
            if morsel is not None:
                key = _key(name, morsel, url)
                admitted.append(_Admitted(name, morsel, key, _site(key[0]), _deadline(morsel, now)))
        return admitted

    def _checked(self, name: str, morsel: Morsel[str], host: str | None) -> Morsel[str] | None:
        """``morsel`` as the jar may store it, or None if a rule refuses it."""
        if _cookie_bytes(name, morsel) > self._crawler_limits.max_cookie_bytes:
            self._refuse(name, host, "too_large")
            return None
        domain = morsel["domain"].lower().removeprefix(".")
        # aiohttp makes a trailing-dot domain host-only; an IP only ever matches itself.
        if not domain or domain.endswith(".") or is_ip(domain):
            return morsel
        if not is_public_suffix(domain):
            return morsel
        if host is None or domain != host.lower():
            self._refuse(name, host, "public_suffix")
            return None
        host_only = morsel.copy()  # the caller's morsel stays as it was
        host_only["domain"] = ""
        return host_only

    def _refuse(self, name: str, host: str | None, reason: str) -> None:
        self._crawler_rejections[reason] += 1
        # The name only, shortened: a value is a secret, and a name can be 4 KB.
        logger.debug("cookie %.80r from %s refused: %s", name, host, reason)

    def _newest_per_site(self, admitted: list[_Admitted]) -> list[_Admitted]:
        """Only what could survive eviction: the last set of each key, the newest
        ``max_per_domain`` per site (deletions always pass: they free room)."""
        limit = self._crawler_limits.max_per_domain
        if len(admitted) <= limit:
            return admitted
        now = time.time()
        kept: list[_Admitted] = []
        seen: set[CookieKey] = set()
        per_site: Counter[str] = Counter()
        for cookie in reversed(admitted):
            if cookie.key in seen:
                continue  # a later Set-Cookie in the same batch replaces it
            seen.add(cookie.key)
            if cookie.deadline is None or cookie.deadline > now:
                per_site[cookie.site] += 1
                if per_site[cookie.site] > limit:
                    self._crawler_rejections["domain_limit"] += 1
                    continue
            kept.append(cookie)
        if dropped := len(seen) - len(kept):
            logger.debug("dropped %d cookie(s) over %d per domain", dropped, limit)
        kept.reverse()
        return kept

    def _record(self, admitted: list[_Admitted]) -> None:
        """Note what aiohttp really stored (it may refuse, or a cookie may delete itself)."""
        cookies, book = self.cookies, self._crawler_book
        for cookie in admitted:
            bucket = cookies.get(cookie.key[:2])
            if bucket is not None and cookie.key[2] in bucket:
                book.touch(cookie.key, cookie.site, cookie.deadline)
            else:
                book.forget(cookie.key)

    def _enforce_limits(self, sites: set[str]) -> None:
        book, limits = self._crawler_book, self._crawler_limits
        if len(self) != len(book.order):
            self._resync()  # aiohttp expired cookies meanwhile (or stored one we missed)
        elif book.within(limits, sites):
            return
        if picked := book.pick_evictions(limits):
            self._evict(picked)

    def _resync(self) -> None:
        cookies = self.cookies.items()
        self._crawler_book.resync((d, p, name) for (d, p), bucket in cookies for name in bucket)

    def _evict(self, picked: list[tuple[CookieKey, str]]) -> None:
        cookies, book = self.cookies, self._crawler_book
        doomed: set[int] = set()
        for key, reason in picked:
            bucket = cookies.get(key[:2])
            morsel = None if bucket is None else bucket.get(key[2])
            if morsel is not None:
                doomed.add(id(morsel))  # the stored object: exact, whatever its attributes
            book.forget(key)
            self._crawler_rejections[reason] += 1
        super().clear(lambda morsel: id(morsel) in doomed)
        logger.debug("evicted %d least recently set cookie(s) over the limits", len(picked))


def check_cookies(cookies: Mapping[str, str], where: str) -> dict[str, str]:
    """``cookies`` as a dict, or a SettingsError naming the cookie that cannot be sent."""
    from ..errors import SettingsError

    if not isinstance(cookies, Mapping):
        raise SettingsError(f"bad value {where}: expected {{name: value}}, got {cookies!r:.80}")
    morsels: SimpleCookie = SimpleCookie()
    for name, value in cookies.items():
        try:
            if not isinstance(name, str) or not isinstance(value, str):
                raise CookieError("names and values must be strings")
            morsels[name] = value
        except CookieError as exc:
            raise SettingsError(
                f"bad value {where}: cookie {name!r:.60} cannot be sent ({exc})"
            ) from None
    return dict(cookies)


def seed_cookies(jar: AbstractCookieJar, domain: str, cookies: Mapping[str, str]) -> None:
    """Put ``cookies`` in ``jar`` for ``domain`` and its subdomains, as if the domain set them."""
    if not cookies:
        return
    morsels: SimpleCookie = SimpleCookie()
    for name, value in cookies.items():
        morsels[name] = value
        morsels[name]["path"] = "/"
        if not is_ip(domain):
            morsels[name]["domain"] = domain
    jar.update_cookies(morsels, URL.build(scheme="http", host=domain))


def jar_cookies_for(jar: AbstractCookieJar, url: str | URL) -> dict[str, str]:
    """The cookies ``jar`` would send with a request to ``url``, as name -> value."""
    return {name: morsel.value for name, morsel in jar.filter_cookies(URL(url)).items()}
