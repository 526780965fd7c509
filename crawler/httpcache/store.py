"""The cache file: one SQLite table of responses keyed by request fingerprint.

Opened through :func:`crawler.storage.open_database` (application id ``CRLC``), in WAL
mode with ``synchronous = NORMAL``: a development cache may lose its last entries on a
power cut, but no write waits for an fsync. What is stored per request: the status,
the headers (in order, repeats kept), the body as the callback got it (decoded), the
final URL and the redirect history. Never the request's own headers: its
``Authorization`` and ``Cookie`` stay out of the file (the fingerprint is made of the
method, the canonical URL and the body). Response headers are kept as the server sent
them, ``Set-Cookie`` included: protect the file like a cookie jar.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

import aiosqlite
import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from ..request import Request
from ..response import RedirectHop, Response
from ..storage import DatabaseKind, open_database

__all__ = ["CACHE_FILE", "CachedResponse", "ResponseStore"]

APPLICATION_ID = 0x43524C43  # "CRLC": crawler HTTP cache
SCHEMA_VERSION = 1
CACHE_FILE = DatabaseKind(
    noun="HTTP cache",
    application_id=APPLICATION_ID,
    version=SCHEMA_VERSION,
    schema=f"""BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS responses (
    fingerprint BLOB PRIMARY KEY,
    url TEXT NOT NULL,
    status INTEGER NOT NULL,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    history BLOB NOT NULL,
    stored_at REAL NOT NULL,
    fresh_until REAL NOT NULL
);
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;""",
    tables=frozenset(("responses",)),
    remedy="choose another cache folder (--cache DIR) or delete this file",
)

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One stored response.

    ``url`` is the final URL (after redirects); ``history`` the hops before it as
    ``(url, status, headers)``. ``stored_at`` and ``fresh_until`` are cache-clock times
    (see ``HttpCache``): when it was stored or last revalidated, and until when the
    ``http`` policy may serve it without asking the server.
    """

    url: str
    status: int
    headers: Headers
    body: bytes
    history: tuple[tuple[str, int, Headers], ...]
    stored_at: float
    fresh_until: float

    @classmethod
    def of(cls, response: Response, stored_at: float, fresh_until: float) -> CachedResponse:
        """What to store of ``response``."""
        history = tuple(
            (hop.url, hop.status, tuple(hop.headers.items())) for hop in response.history
        )
        return cls(
            response.url,
            response.status,
            tuple(response.headers.items()),
            response.body,
            history,
            stored_at,
            fresh_until,
        )

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    def refreshed(self, headers: Headers, stored_at: float, fresh_until: float) -> CachedResponse:
        """This response after a 304: the 304's headers replace the stored ones they name."""
        names = {key.lower() for key, _ in headers}
        kept = tuple((k, v) for k, v in self.headers if k.lower() not in names)
        return replace(self, headers=kept + headers, stored_at=stored_at, fresh_until=fresh_until)

    def to_response(self, request: Request) -> Response:
        """A Response for ``request``, as the downloader built it the first time."""
        # Without redirects the URL is the request's own: stored under a canonical
        # fingerprint, it may differ from it in query order.
        url = self.url if self.history else request.url
        history = [RedirectHop(u, s, _proxy(h)) for u, s, h in self.history]
        return Response(
            url,
            self.status,
            _proxy(self.headers),
            self.body,
            request,
            history,
            raw_headers=tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers),
            cookies=_cookies(self.headers),
        )


def _proxy(headers: Headers) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(headers))


def _cookies(headers: Headers) -> SimpleCookie:
    cookies: SimpleCookie = SimpleCookie()
    for key, value in headers:
        if key.lower() == "set-cookie":
            try:
                cookies.load(value)
            except CookieError:
                continue  # the downloader skipped it too
    return cookies


class ResponseStore:
    """The SQLite table of cached responses (aiosqlite: nothing blocks the event loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self, create: bool = True) -> None:
        """Open the file (creating it and its folders if ``create``); a ConfigError if it
        cannot be opened or is not an HTTP cache."""
        self._db = await open_database(
            self.path, CACHE_FILE, busy_timeout_s=5.0, make_parents=create
        )
        await self._db.execute_fetchall("PRAGMA synchronous = NORMAL")

    async def close(self) -> None:
        """Close the file."""
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        assert self._db is not None, "HttpCache.open() first"
        return self._db

    async def get(self, fingerprint: bytes) -> CachedResponse | None:
        """The response stored for ``fingerprint``, or None."""
        rows = list(
            await self.db.execute_fetchall(
                "SELECT url, status, headers, body, history, stored_at, fresh_until"
                " FROM responses WHERE fingerprint = ?",
                (fingerprint,),
            )
        )
        if not rows:
            return None
        url, status, headers, body, history, stored_at, fresh_until = rows[0]
        return CachedResponse(
            url,
            status,
            _pairs(orjson.loads(headers)),
            body,
            tuple((u, s, _pairs(h)) for u, s, h in orjson.loads(history)),
            stored_at,
            fresh_until,
        )

    async def put(self, fingerprint: bytes, entry: CachedResponse) -> None:
        """Store ``entry`` for ``fingerprint``, replacing what was there."""
        await self.db.execute(
            "INSERT OR REPLACE INTO responses"
            "(fingerprint, url, status, headers, body, history, stored_at, fresh_until)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                fingerprint,
                entry.url,
                entry.status,
                orjson.dumps(entry.headers),
                entry.body,
                orjson.dumps(entry.history),
                entry.stored_at,
                entry.fresh_until,
            ),
        )


def _pairs(items: list[list[str]]) -> Headers:
    return tuple((key, value) for key, value in items)
