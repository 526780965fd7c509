"""Per-domain aiohttp sessions: one cookie jar and header set per registered domain.

Sessions share one connector, so opening one is cheap; at most ``max_open`` stay
open and the least recently used idle one is closed beyond that. A closed
session's cookie jar is kept, so cookies survive for the whole crawl.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import aiohttp
from publicsuffixlist import PublicSuffixList

__all__ = ["SessionOptions", "SessionPool", "registered_domain"]

_PSL = PublicSuffixList()


@lru_cache(maxsize=65536)
def registered_domain(host: str) -> str:
    """The registrable domain of ``host`` (``a.example.co.uk`` -> ``example.co.uk``).

    IP addresses, single-label hosts and public suffixes are their own domain.
    """
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    return _PSL.privatesuffix(host) or host


def make_cookie_jar(kind: str) -> aiohttp.abc.AbstractCookieJar:
    """A cookie jar of the configured kind: strict, unsafe (IP hosts allowed) or none."""
    if kind == "none":
        return aiohttp.DummyCookieJar()
    return aiohttp.CookieJar(unsafe=(kind == "unsafe"))


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What every new session starts with."""

    headers: Mapping[str, str] = field(default_factory=dict)
    cookie_jar: str = "strict"
    timeout_s: float = 30.0
    max_open: int = 256


class _Entry:
    __slots__ = ("in_use", "session")

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.in_use = 0


class SessionPool:
    """Hands out the session of a host's registered domain, opening it on first use."""

    def __init__(self, connector: aiohttp.BaseConnector, options: SessionOptions) -> None:
        self._connector = connector
        self._options = options
        self._open: OrderedDict[str, _Entry] = OrderedDict()
        self._jars: dict[str, aiohttp.abc.AbstractCookieJar] = {}
        self._timeout = aiohttp.ClientTimeout(total=options.timeout_s)
        self._closing: list[aiohttp.ClientSession] = []

    def acquire(self, host: str) -> aiohttp.ClientSession:
        """The session for ``host``; pair every call with :meth:`release`."""
        domain = registered_domain(host)
        entry = self._open.get(domain)
        if entry is None:
            entry = self._open[domain] = _Entry(self._new_session(domain))
            if len(self._open) > self._options.max_open:
                self._evict_idle()
        else:
            self._open.move_to_end(domain)
        entry.in_use += 1
        return entry.session

    def release(self, host: str) -> None:
        """The request through ``host``'s session is finished."""
        entry = self._open.get(registered_domain(host))
        if entry is not None:
            entry.in_use -= 1

    def cookie_jar(self, host: str) -> aiohttp.abc.AbstractCookieJar:
        """The cookie jar of ``host``'s registered domain (created if missing)."""
        domain = registered_domain(host)
        jar = self._jars.get(domain)
        if jar is None:
            jar = self._jars[domain] = make_cookie_jar(self._options.cookie_jar)
        return jar

    @property
    def open_count(self) -> int:
        """How many sessions are open now."""
        return len(self._open)

    def _new_session(self, domain: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=self._connector,
            connector_owner=False,
            cookie_jar=self.cookie_jar(domain),
            headers=dict(self._options.headers),
            timeout=self._timeout,
            auto_decompress=True,
        )

    def _evict_idle(self) -> None:
        for domain, entry in self._open.items():
            if entry.in_use == 0:
                del self._open[domain]
                jar = self._jars.get(domain)
                if jar is not None and len(jar) == 0:  # type: ignore[arg-type]
                    del self._jars[domain]  # an empty jar costs memory and holds nothing
                self._closing.append(entry.session)
                return

    async def close_idle(self) -> None:
        """Close sessions evicted since the last call."""
        closing, self._closing = self._closing, []
        for session in closing:
            await session.close()

    async def close(self) -> None:
        """Close every session (the shared connector is closed by its owner)."""
        await self.close_idle()
        while self._open:
            _, entry = self._open.popitem()
            await entry.session.close()
