"""The job's state file (``<state dir>/state.db``): run metadata, stats and cookie jars.

The frontier keeps its own file beside it (``frontier.db``). Both refuse files
that are not ours, or from a newer schema, with a clear error instead of
silently starting over.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiosqlite
import orjson
from aiohttp.abc import AbstractCookieJar
from yarl import URL

from .errors import ConfigError

__all__ = ["StateStore", "dump_jar", "load_jar"]

APPLICATION_ID = 0x43524C53  # "CRLS": crawler state
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cookies (jar TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


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


class StateStore:
    """Run metadata, counters and cookie jars of one crawl job, in SQLite (aiosqlite)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open (or create) the file, refusing foreign or newer files."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            db = await aiosqlite.connect(self.path, timeout=0.5)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open crawl state {self.path}: {exc}") from None
        self._db = db
        try:
            app_id = (await (await db.execute("PRAGMA application_id")).fetchone() or (0,))[0]
            version = (await (await db.execute("PRAGMA user_version")).fetchone() or (0,))[0]
        except sqlite3.DatabaseError as exc:
            await self.close()
            raise ConfigError(
                f"{self.path} is not a crawl state database ({exc}); "
                "point --state at another folder or move this file away"
            ) from None
        if existed and app_id != APPLICATION_ID:
            await self.close()
            raise ConfigError(
                f"{self.path} is a SQLite database of another application (id {app_id:#x}); "
                "refusing to overwrite it"
            )
        if existed and version > SCHEMA_VERSION:
            await self.close()
            raise ConfigError(
                f"{self.path} has state schema version {version}, newer than this crawler's "
                f"{SCHEMA_VERSION}: upgrade crawler, or start a new --state folder"
            )
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("BEGIN IMMEDIATE")  # fails fast if another crawl holds the file
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                await db.execute(statement)
            await db.commit()
        except sqlite3.OperationalError as exc:
            await self.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise ConfigError(f"crawl state {self.path} is in use by another crawl") from None
            raise ConfigError(f"cannot use crawl state {self.path}: {exc}") from None
        await db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        await db.commit()

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        assert self._db is not None, "StateStore.open() first"
        return self._db

    async def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def get(self, key: str, default: str | None = None) -> str | None:
        """A metadata value."""
        row = await (await self.db.execute("SELECT value FROM meta WHERE key=?", (key,))).fetchone()
        return row[0] if row else default

    async def set_many(self, values: Mapping[str, str]) -> None:
        """Write metadata values (one transaction)."""
        await self.db.executemany(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            list(values.items()),
        )
        await self.db.commit()

    async def load_counters(self) -> dict[str, int]:
        """The counters saved by earlier runs."""
        rows = await (await self.db.execute("SELECT key, value FROM stats")).fetchall()
        return {key: int(value) for key, value in rows}

    async def load_cookies(self) -> dict[str, list[dict[str, Any]]]:
        """Saved cookie records by jar key."""
        rows = await (await self.db.execute("SELECT jar, data FROM cookies")).fetchall()
        return {jar: orjson.loads(data) for jar, data in rows}

    async def save(
        self,
        counters: Mapping[str, int],
        jars: Mapping[str, AbstractCookieJar],
        meta: Mapping[str, str] = {},
    ) -> None:
        """Checkpoint counters, cookie jars and metadata in one transaction."""
        db = self.db
        await db.execute("DELETE FROM stats")
        await db.executemany("INSERT INTO stats(key, value) VALUES(?, ?)", list(counters.items()))
        await db.executemany(
            "INSERT INTO cookies(jar, data) VALUES(?, ?) "
            "ON CONFLICT(jar) DO UPDATE SET data=excluded.data",
            [(key, orjson.dumps(dump_jar(jar))) for key, jar in jars.items()],
        )
        await db.executemany(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            list(meta.items()),
        )
        await db.commit()

    async def reset(self) -> None:
        """Forget everything (``--restart``)."""
        await self.db.executescript("DELETE FROM meta; DELETE FROM cookies; DELETE FROM stats;")
        await self.db.commit()
