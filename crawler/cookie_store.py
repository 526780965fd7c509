"""Saved cookie jars: a jar as plain records and back, and the table that keeps them.

Every file of ours that keeps cookie jars (the crawl's ``state.db``, a job's
``job.db``) uses these: :func:`dump_jar` / :func:`load_jar` turn a jar into
records (host-only flags and expiry kept) and back; :func:`save_cookies` /
:func:`restore_cookies` keep them in :data:`COOKIES_TABLE`, one row per jar.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from http.cookies import Morsel, SimpleCookie
from typing import Any, Protocol, runtime_checkable

import aiosqlite
import orjson
from aiohttp.abc import AbstractCookieJar
from yarl import URL

__all__ = [
    "COOKIES_TABLE",
    "CookiePool",
    "dump_jar",
    "load_cookies",
    "load_jar",
    "restore_cookies",
    "save_cookies",
]


# -- cookie records ----------------------------------------------------------------------


@runtime_checkable
class _KnowsExpiry(Protocol):
    """A jar that tells when each cookie expires (our CrawlerCookieJar does)."""

    def expires_at(self, domain: str, path: str, name: str) -> float | None: ...


def dump_jar(jar: AbstractCookieJar) -> list[dict[str, Any]]:
    """The cookies of ``jar`` as plain records (kept on the event loop thread: cheap).

    Host-only-ness comes from the jar's public ``host_only_cookies``, never from a
    morsel: aiohttp writes the host into a host-only cookie's ``domain``, so a
    record built from the morsel alone would come back as a domain cookie, sent to
    every subdomain.
    """
    host_only = jar.host_only_cookies
    expires_at = jar.expires_at if isinstance(jar, _KnowsExpiry) else None
    records = []
    for (domain, path), cookie in jar.cookies.items():
        for name, morsel in cookie.items():
            records.append(
                {
                    "name": name,
                    "value": morsel.value,
                    "domain": domain,
                    # The morsel keeps a trailing "/" the jar's key drops ("/a/" is not "/a").
                    "path": morsel["path"] or path or "/",
                    "secure": bool(morsel["secure"]),
                    "httponly": bool(morsel["httponly"]),
                    "host_only": (domain, path, name) in host_only,
                    "expires": expires_at(domain, path, name) if expires_at else None,
                }
            )
    return records


def _record_morsel(record: Mapping[str, Any], now: float) -> Morsel[str]:
    """The cookie a record describes, with the attributes that scope it."""
    morsel: Morsel[str] = Morsel()
    morsel.set(record["name"], record["value"], record["value"])
    morsel["path"] = record["path"]
    if record.get("secure"):
        morsel["secure"] = True
    if record.get("httponly"):
        morsel["httponly"] = True
    # No Domain attribute is what makes the jar file it as host-only again.
    if not record.get("host_only"):
        morsel["domain"] = record["domain"]
    if (expires := record.get("expires")) is not None:
        morsel["max-age"] = str(max(1, int(expires - now)))
    return morsel


def load_jar(jar: AbstractCookieJar, records: Iterable[Mapping[str, Any]]) -> int:
    """Put saved records back into ``jar`` (expired ones are skipped); returns how many.

    Each cookie is set as if its own host had set it, so the jar's rules (public
    suffixes, sizes, limits) apply to restored cookies too.
    """
    now = time.time()
    count = 0
    for record in records:
        expires = record.get("expires")
        if expires is not None and expires <= now:
            continue
        cookie: SimpleCookie = SimpleCookie()
        cookie[record["name"]] = _record_morsel(record, now)
        scheme = "https" if record.get("secure") else "http"
        # Shared cookies (no domain) were set without a URL; a host-less URL can't be built.
        domain = record["domain"]
        url = URL.build(scheme=scheme, host=domain) if domain else URL()
        jar.update_cookies(cookie, url)
        count += 1
    return count


# -- cookie jars in a table ---------------------------------------------------------------

COOKIES_TABLE = "CREATE TABLE IF NOT EXISTS cookies (jar TEXT PRIMARY KEY, data BLOB NOT NULL);"
"""The table every file that keeps cookie jars has: one row of records (JSON) per jar."""


class CookiePool(Protocol):
    """Where a crawl's jars live (the downloader's session pool), as persistence sees it."""

    def jar_for_key(self, key: str) -> AbstractCookieJar: ...


async def load_cookies(db: aiosqlite.Connection) -> dict[str, list[dict[str, Any]]]:
    """Saved cookie records by jar key."""
    rows = await db.execute_fetchall("SELECT jar, data FROM cookies")
    return {jar: orjson.loads(data) for jar, data in rows}


async def save_cookies(db: aiosqlite.Connection, jars: Mapping[str, AbstractCookieJar]) -> None:
    """Write the records of ``jars`` (call inside the caller's transaction).

    Jars not in ``jars`` keep what was saved for them.
    """
    await db.executemany(
        "INSERT INTO cookies(jar, data) VALUES(?, ?) "
        "ON CONFLICT(jar) DO UPDATE SET data=excluded.data",
        [(key, orjson.dumps(dump_jar(jar))) for key, jar in jars.items()],
    )


async def restore_cookies(db: aiosqlite.Connection, pool: CookiePool) -> int:
    """Put the saved jars back into ``pool``; returns how many cookies."""
    saved = await load_cookies(db)
    return sum(load_jar(pool.jar_for_key(key), records) for key, records in saved.items())
