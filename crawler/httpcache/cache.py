"""HttpCache: answers requests from the cache file or through the network, per its mode."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Protocol

from multidict import CIMultiDict

from ..errors import ConfigError, FetchError
from ..fingerprint import fingerprint
from ..loglines import get_logger
from ..request import Request
from ..response import Response
from ..settings import Settings
from ..stats import Stats
from . import freshness
from .store import CachedResponse, ResponseStore

logger = get_logger("crawler.httpcache")

__all__ = ["MODES", "CacheClock", "HttpCache", "NotRecorded", "WallClock", "cache_key"]

MODES = ("always", "http", "record", "replay")

Fetch = Callable[[Request], Awaitable[Response]]


class CacheClock(Protocol):
    """What the cache reads the time from: ``now()`` in seconds (a ``Clock`` fits)."""

    def now(self) -> float:
        """Seconds; differences between two calls are ages."""


class WallClock:
    """Calendar time (``time.time``): stored entries outlive the process that wrote them."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()


class NotRecorded(FetchError):
    """Replaying offline: the request is not in the recording (``failures/not_recorded``)."""

    kind = "not_recorded"


class HttpCache:
    """Responses kept in an SQLite file at ``path``, keyed by request fingerprint.

    ``mode``:

    - ``always``: serve every stored response as it is; fetch and store the others.
    - ``http``: honour ``Cache-Control`` (``no-store``, ``no-cache``, ``max-age``) and
      ``Expires``; revalidate a stale response that has an ``ETag`` / ``Last-Modified``
      (``If-None-Match`` / ``If-Modified-Since``) and serve the stored body on a 304.
    - ``record``: always fetch, store every response (a recording for ``replay``).
    - ``replay``: offline; serve only stored responses. Any other request fails
      (:class:`NotRecorded`) and its URL is added to :attr:`not_recorded`.

    ``expiration_s`` (0 = forever) ages entries on ``clock`` (anything with ``now()``;
    default calendar time, as stored entries outlive the process; a test passes its
    ``ManualClock``). Replay ignores it. Statuses in ``ignore_http_codes`` are not stored
    (except when recording). Open it with ``async with`` (the crawl's engine does).
    """

    def __init__(
        self,
        path: Path | str,
        mode: str = "always",
        *,
        expiration_s: float = 0.0,
        ignore_http_codes: Iterable[int] = (),
        clock: CacheClock | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"bad HTTP cache mode {mode!r}: expected one of {', '.join(MODES)}")
        self.path = Path(path)
        self.mode = mode
        self.expiration_s = expiration_s
        self.ignore_http_codes = frozenset(ignore_http_codes)
        self.clock: CacheClock = clock or WallClock()
        self.not_recorded: list[str] = []  # replay: URLs asked for that were not recorded
        self._warned: set[tuple[str, str]] = set()
        self._store = ResponseStore(self.path)

    @classmethod
    def from_settings(
        cls, settings: Settings, spider_name: str, *, clock: CacheClock | None = None
    ) -> HttpCache:
        """The cache the HTTPCACHE_* settings describe: ``<HTTPCACHE_DIR>/<spider>.sqlite``."""
        return cls(
            Path(settings.HTTPCACHE_DIR) / f"{spider_name or 'spider'}.sqlite",
            settings.HTTPCACHE_POLICY,
            expiration_s=settings.HTTPCACHE_EXPIRATION_SECS,
            ignore_http_codes=settings.HTTPCACHE_IGNORE_HTTP_CODES,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"<HttpCache {self.mode} {self.path}>"

    async def open(self) -> None:
        """Open (or create) the file; a one-line ConfigError naming it if it cannot be used.

        A recording to replay must exist: replay never creates a file.
        """
        if self.mode == "replay" and not await asyncio.to_thread(self.path.is_file):
            raise ConfigError(f"no recording to replay at {self.path}: record it first")
        await self._store.open(create=self.mode != "replay")

    async def close(self) -> None:
        """Close the file."""
        await self._store.close()

    async def __aenter__(self) -> HttpCache:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def fetch(
        self,
        request: Request,
        call_next: Fetch,
        stats: Stats | None = None,
        *,
        required: bool = True,
    ) -> tuple[Response, bool]:
        """The response to ``request``, from the cache or from ``call_next`` (and stored).

        Returns it and whether ``call_next`` was used (the network, unless a middleware
        inside answered). Counts ``httpcache/hit``, ``httpcache/miss``, ``httpcache/store``,
        ``httpcache/revalidated``, ``httpcache/uncacheable`` and ``httpcache/not_recorded``
        in ``stats``. In replay, a request not recorded raises :class:`NotRecorded`; if
        ``required`` it is also listed in :attr:`not_recorded`.
        """
        count = stats.inc if stats is not None else _uncounted
        key = cache_key(request)
        if self.mode == "record":
            response = await call_next(request)
            await self._put(key, response, count)
            return response, True
        entry = await self._get(key, count)
        now = self.clock.now()
        if self.mode == "replay":
            if entry is None:
                count("httpcache/not_recorded")
                if required:
                    self.not_recorded.append(request.url)
                raise NotRecorded(
                    f"{request.method} {request.url} is not in the recording {self.path}",
                    request.url,
                )
            count("httpcache/hit")
            return entry.to_response(request), False
        if entry is not None and self._expired(entry, now):
            entry = None
        if entry is not None and self._usable(entry, request, now):
            count("httpcache/hit")
            return entry.to_response(request), False
        count("httpcache/miss")
        conditions = self._conditions(entry, request)
        if conditions:
            # For this attempt only: a retry or a later run starts from the spider's headers.
            own = request.headers
            request.headers = {**(own or {}), **conditions}
            try:
                response = await call_next(request)
            finally:
                request.headers = own
        else:
            response = await call_next(request)
        if entry is not None and conditions and response.status == 304:
            count("httpcache/revalidated")
            return await self._refresh(key, entry, response, request), True
        if self._storable(request, response):
            await self._put(key, response, count)
        else:
            count("httpcache/uncacheable")
        return response, True

    def _expired(self, entry: CachedResponse, now: float) -> bool:
        return 0 < self.expiration_s <= now - entry.stored_at

    def _usable(self, entry: CachedResponse, request: Request, now: float) -> bool:
        """Served without asking the server: always, or (http) while fresh."""
        if self.mode == "always":
            return True
        return now < entry.fresh_until and not freshness.must_revalidate(request)

    def _storable(self, request: Request, response: Response) -> bool:
        status = response.status
        if status in self.ignore_http_codes or status == 304:
            return False  # a 304 answers the request's own validators: no body to keep
        if self.mode == "http":
            return (
                status != 304  # an answer to the request's own validators: no body to keep
                and request.method in freshness.CACHEABLE_METHODS
                and not freshness.no_store(request, response.headers)
            )
        return True

    def _conditions(self, entry: CachedResponse | None, request: Request) -> dict[str, str]:
        """http: the headers that revalidate a stale ``entry`` (none if the spider has its own)."""
        if entry is None or self.mode != "http":
            return {}
        if any(name.lower().startswith("if-") for name in request.headers or ()):
            return {}  # the spider's own conditional request: its 304 is for it to handle
        return freshness.validators(CIMultiDict(entry.headers))

    async def _refresh(
        self, key: bytes, entry: CachedResponse, answer: Response, request: Request
    ) -> Response:
        """The server says ``entry`` did not change (304): store its new headers, serve it."""
        updates = tuple((k, v) for k, v in answer.headers.items() if k.lower() not in _KEEP_STORED)
        now = self.clock.now()
        merged = entry.refreshed(updates, now, now)
        lifetime = freshness.lifetime_s(CIMultiDict(merged.headers))
        merged = merged.refreshed((), now, now + lifetime)
        await self._store.put(key, merged)
        return merged.to_response(request)

    async def _get(self, key: bytes, count: Callable[[str], None]) -> CachedResponse | None:
        """The stored entry, or None; an unreadable one is a miss (a dev cache never fails
        a request: the page is fetched again and the entry rewritten)."""
        try:
            return await self._store.get(key)
        except Exception as exc:
            count("httpcache/errors")
            self._warn("read", exc)
            return None

    async def _put(self, key: bytes, response: Response, count: Callable[[str], None]) -> None:
        now = self.clock.now()
        lifetime = freshness.lifetime_s(response.headers) if self.mode == "http" else 0.0
        try:
            await self._store.put(key, CachedResponse.of(response, now, now + lifetime))
        except Exception as exc:  # the response is still good: hand it on, uncached
            count("httpcache/errors")
            self._warn("write", exc)
            return
        count("httpcache/store")

    def _warn(self, what: str, exc: Exception) -> None:
        """One warning per kind of failure (a broken file would otherwise log every request)."""
        key = (what, type(exc).__name__)
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning(
            "HTTP cache %s cannot %s an entry (%s: %.200s); going on without it",
            self.path,
            what,
            type(exc).__name__,
            exc,
        )


# Headers of a 304 that describe its own (empty) body, not the stored one (RFC 9111 4.3.4).
_KEEP_STORED = frozenset(
    ("content-length", "content-type", "content-encoding", "transfer-encoding")
)


def cache_key(request: Request) -> bytes:
    """The request's fingerprint, mixed with its credentials when it has any: a page fetched
    as one user (Authorization, URL credentials, request cookies) is never served to another.
    Only a hash of them is kept."""
    key = fingerprint(request)
    headers = request.headers
    auth = None
    if headers:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    cookies = request.cookies
    if auth is None and not cookies:
        return key
    identity = hashlib.sha256(key)
    identity.update((auth or "").encode())
    for name, value in sorted((cookies or {}).items()):
        identity.update(f"\0{name}={value}".encode())
    return identity.digest()[: len(key)]


def _uncounted(_key: str) -> None:
    """No stats to count in."""
