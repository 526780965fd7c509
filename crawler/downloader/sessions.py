"""Per-domain aiohttp sessions: one cookie jar and header set per registered domain.

Sessions share one connector, so opening one is cheap; at most ``max_open`` stay
open and the least recently used idle one is closed beyond that. A closed
session's cookie jar is kept, so cookies survive for the whole crawl. Hosts
mapped to a Unix socket get a session of their own on a ``UnixConnector``.

A request through a SOCKS proxy needs a connector for that proxy (``socks.py``),
and an aiohttp session is bound to one connector: such requests get a session per
(domain, SOCKS proxy), counted and evicted like the others, holding the domain's
own cookie jar object and headers, so cookies set through one proxy are sent
through another or directly (sticky rotation clears the jar for a new identity).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractCookieJar
from multidict import CIMultiDict, CIMultiDictProxy

from ..errors import SettingsError
from .cookies import jar_cookies_for, make_cookie_jar, seed_cookies
from .decoding import ACCEPT_ENCODING
from .proxies import is_socks
from .socks import SocksConnectors
from .suffixes import registered_domain

__all__ = [
    "CREDENTIAL_HEADERS",
    "SessionHook",
    "SessionOptions",
    "SessionPool",
    "merge_headers",
    "registered_domain",
    "split_headers",
]

_CACHED_CREDENTIALS = 4096  # domains whose merged credential headers are kept

# Headers that carry an identity: sent only to the origin they were meant for.
CREDENTIAL_HEADERS = frozenset(("authorization", "cookie", "proxy-authorization"))


def merge_headers(*layers: Mapping[str, str] | None) -> CIMultiDictProxy[str]:
    """Header layers merged in order, later ones winning whatever the name's case."""
    merged: CIMultiDict[str] = CIMultiDict()
    for layer in layers:
        for name, value in (layer or {}).items():
            merged[name] = value  # replaces every case variant of the name
    return CIMultiDictProxy(merged)


def split_headers(
    headers: Mapping[str, str], names: frozenset[str]
) -> tuple[CIMultiDictProxy[str], CIMultiDictProxy[str]]:
    """``headers`` as (the others, those named in lower-case ``names``), every duplicate kept."""
    others: CIMultiDict[str] = CIMultiDict()
    named: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():  # a multidict yields every duplicate here
        (named if name.lower() in names else others).add(name, value)
    return CIMultiDictProxy(others), CIMultiDictProxy(named)


def split_credentials(
    headers: Mapping[str, str],
) -> tuple[CIMultiDictProxy[str], CIMultiDictProxy[str]]:
    """``headers`` as (everything else, the credential headers)."""
    return split_headers(headers, CREDENTIAL_HEADERS)


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What every new session starts with."""

    headers: Mapping[str, str] = field(default_factory=dict)
    domain_headers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    domain_cookies: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    cookie_jar: str = "strict"
    timeout_s: float = 30.0
    read_timeout_s: float | None = None
    max_open: int = 256
    unix_sockets: Mapping[str, str] = field(default_factory=dict)
    trust_env: bool = False
    trace_configs: Sequence[aiohttp.TraceConfig] = ()


class _Entry:
    __slots__ = ("in_use", "jar_key", "session", "socks")

    def __init__(self, session: aiohttp.ClientSession, jar_key: str, socks: str | None) -> None:
        self.session = session
        self.in_use = 0
        self.jar_key = jar_key  # the domain's session key, under which its jar is kept
        self.socks = socks  # the SOCKS proxy URL whose connector the session is on


class SessionPool:
    """Hands out the session of a host's registered domain, opening it on first use."""

    def __init__(
        self,
        connector: aiohttp.BaseConnector,
        options: SessionOptions,
        socks: SocksConnectors | None = None,
    ) -> None:
        self._connector = connector
        self._options = options
        self._socks = socks  # its owner (the downloader) closes it after this pool
        self._open: OrderedDict[str, _Entry] = OrderedDict()
        self._jars: dict[str, AbstractCookieJar] = {}
        read = min(options.read_timeout_s or options.timeout_s, options.timeout_s)
        self._timeout = aiohttp.ClientTimeout(total=options.timeout_s, sock_read=read)
        self._closing: list[_Entry] = []
        self._jar_users: dict[str, int] = {}  # open sessions per jar key (direct and SOCKS)
        self._unix = {h.lower(): path for h, path in options.unix_sockets.items()}
        self._unix_connectors: dict[str, aiohttp.UnixConnector] = {}
        self._credentials: dict[str, CIMultiDictProxy[str]] = {}
        self._home: set[str] = set()  # registered domains of the start requests

    def add_home(self, host: str) -> None:
        """Make ``host``'s registered domain one the crawl started on (see :meth:`credentials`)."""
        domain = registered_domain(host)
        if domain not in self._home:
            self._home.add(domain)
            self._credentials.pop(domain, None)

    def credentials(self, host: str) -> CIMultiDictProxy[str]:
        """The configured credential headers (Authorization, Cookie, Proxy-Authorization)
        for ``host``'s domain.

        Those of DEFAULT_HEADERS and the spider's ``headers`` go only to the
        domains the start requests are on (as Scrapy scopes ``http_user`` to the
        first request's domain); DOMAIN_HEADERS go to their own domain. Sessions
        never send these by themselves: the downloader adds them to a request only
        while it stays on the origin it was sent to.
        """
        domain = registered_domain(host)
        found = self._credentials.get(domain)
        if found is None:
            if domain in self._home:
                _, found = split_credentials(self._layered_headers(domain))
            else:
                _, found = split_credentials(
                    merge_headers(self._options.domain_headers.get(domain))
                )
            if len(self._credentials) >= _CACHED_CREDENTIALS:
                self._credentials.pop(next(iter(self._credentials)))
            self._credentials[domain] = found
        return found

    def _layered_headers(self, domain: str) -> CIMultiDictProxy[str]:
        options = self._options
        return merge_headers(
            {"Accept-Encoding": ACCEPT_ENCODING},
            options.headers,
            options.domain_headers.get(domain),
        )

    def key(self, host: str) -> str:
        """The session key of ``host``: its registered domain (or ``unix:<host>``)."""
        if self._unix and host in self._unix:
            return f"unix:{host}"
        return registered_domain(host)

    def acquire(self, host: str, proxy: str | None = None) -> aiohttp.ClientSession:
        """The session for ``host`` (through ``proxy`` if that is a SOCKS proxy: an HTTP
        proxy is a per-request choice aiohttp makes); pair every call with :meth:`release`.

        Raises SettingsError for a SOCKS proxy when the pool was built without SOCKS
        connectors.
        """
        key = jar_key = self.key(host)
        socks = None
        # a host mapped to a Unix socket (UNIX_SOCKETS) is reached there, SOCKS proxy or not
        if proxy is not None and is_socks(proxy) and not key.startswith("unix:"):
            if self._socks is None:
                raise SettingsError("this session pool was built without SOCKS connectors")
            socks, key = proxy, f"{jar_key} {proxy}"  # a URL holds no space
        entry = self._open.get(key)
        if entry is None:
            entry = self._open[key] = self._new_entry(jar_key, host, socks)
            if len(self._open) > self._options.max_open:
                self._evict_idle()
        else:
            self._open.move_to_end(key)
        entry.in_use += 1
        return entry.session

    def release(self, host: str, proxy: str | None = None) -> None:
        """The request through ``host``'s session (and ``proxy``, as acquired) is finished."""
        key = self.key(host)
        if proxy is not None and is_socks(proxy) and not key.startswith("unix:"):
            key = f"{key} {proxy}"
        entry = self._open.get(key)
        if entry is not None:
            entry.in_use -= 1

    def cookie_jar(self, host: str) -> AbstractCookieJar:
        """The cookie jar of ``host``'s registered domain (created and seeded if missing)."""
        key = self.key(host)
        jar = self._jars.get(key)
        if jar is None:
            jar = self._jars[key] = make_cookie_jar(self._options.cookie_jar)
            domain = registered_domain(host)
            if domain in self._home:  # the spider's cookies, like its credentials, stay home
                seed_cookies(jar, domain, self._options.cookies)
            seed_cookies(jar, domain, self._options.domain_cookies.get(domain, {}))
        return jar

    def cookies_for(self, url: str) -> dict[str, str]:
        """The cookies the crawl would send with a request to ``url``."""
        from yarl import URL

        return jar_cookies_for(self.cookie_jar(URL(url).host or ""), url)

    def clear_cookies(self, host: str) -> None:
        """Forget the cookies of ``host``'s domain (a new identity after a proxy change)."""
        self.cookie_jar(host).clear()

    def jar_for_key(self, key: str) -> AbstractCookieJar:
        """The jar stored under session key ``key`` (as :meth:`jars` names them)."""
        host = key.removeprefix("unix:")
        return self.cookie_jar(host)

    def jars(self) -> dict[str, AbstractCookieJar]:
        """Every cookie jar by session key (for persisting them)."""
        return dict(self._jars)

    @property
    def open_count(self) -> int:
        """How many sessions are open now."""
        return len(self._open)

    def _new_entry(self, key: str, host: str, socks: str | None) -> _Entry:
        options = self._options
        headers, _ = split_credentials(self._layered_headers(registered_domain(host)))
        connector: aiohttp.BaseConnector = self._connector
        if socks is not None and self._socks is not None:
            connector = self._socks.acquire(socks)
        elif key.startswith("unix:"):
            connector = self._unix_connectors.get(host) or self._unix_connectors.setdefault(
                host, aiohttp.UnixConnector(path=self._unix[host])
            )
        session = aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            cookie_jar=self.cookie_jar(host),
            headers=headers,
            timeout=self._timeout,
            # an explicit SOCKS proxy wins over HTTP(S)_PROXY, as aiohttp's proxy= does
            trust_env=options.trust_env and socks is None,
            trace_configs=list(options.trace_configs) or None,
            # we decode ourselves, in bounded steps under MAX_RESPONSE_SIZE (decoding.py)
            auto_decompress=False,
        )
        self._jar_users[key] = self._jar_users.get(key, 0) + 1
        return _Entry(session, key, socks)

    def _evict_idle(self) -> None:
        for key, entry in self._open.items():
            if entry.in_use == 0:
                del self._open[key]
                self._let_go(entry)
                return

    def _let_go(self, entry: _Entry) -> None:
        """``entry`` left the open sessions: it is closed by :meth:`close_idle`."""
        jar_key = entry.jar_key
        users = self._jar_users[jar_key] = self._jar_users.get(jar_key, 1) - 1
        if users <= 0:
            del self._jar_users[jar_key]
            jar = self._jars.get(jar_key)
            if jar is not None and len(jar) == 0:  # type: ignore[arg-type]
                del self._jars[jar_key]  # an empty jar costs memory and holds nothing
        self._closing.append(entry)

    @property
    def has_evicted(self) -> bool:
        """True if sessions were evicted and wait for :meth:`close_idle` to close them."""
        return bool(self._closing)

    async def close_idle(self) -> None:
        """Close sessions evicted since the last call (and SOCKS connectors left idle)."""
        closing, self._closing = self._closing, []
        for entry in closing:
            await entry.session.close()
            if entry.socks is not None and self._socks is not None:
                self._socks.release(entry.socks)
        if self._socks is not None:
            await self._socks.close_idle()

    async def close(self) -> None:
        """Close every session and the Unix connectors (the shared one and the SOCKS
        ones are their owner's)."""
        while self._open:
            _, entry = self._open.popitem()
            self._closing.append(entry)  # jars stay: a hook may still read them
        await self.close_idle()
        for connector in self._unix_connectors.values():
            await connector.close()
        self._unix_connectors.clear()


class SessionHook(Protocol):
    """Code that sees a crawl's session pool: once it is open and once before it closes.

    Pass hooks to ``Crawler(session_hooks=[...])``; a job keeps its cookie jars
    between runs this way (``crawler.jobs.CookieKeeper``).
    """

    async def sessions_opened(self, pool: SessionPool) -> None:
        """The pool is open; no request has been sent yet."""

    async def sessions_closing(self, pool: SessionPool) -> None:
        """The crawl has ended (its outputs are closed); the pool is still open."""
