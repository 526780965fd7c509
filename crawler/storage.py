"""Our SQLite files: the one opener they all go through, saved cookie jars, the crawl state.

:func:`open_database` opens every SQLite file of ours (``state.db`` here, ``frontier.db``,
the jobs' ``history.db`` and ``job.db``), described by a :class:`DatabaseKind`, with the
same checks and pragmas: see its docstring. Connections are in autocommit mode; writes of
more than one statement use :func:`transaction`.

Cookie jars are kept the same way wherever they are saved (``state.db``, ``job.db``): see
:mod:`crawler.cookie_store` (re-exported here). :class:`StateStore` is a crawl's
``<state dir>/state.db``: run metadata, stats, cookie jars.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
from aiohttp.abc import AbstractCookieJar

from .cookie_store import (
    COOKIES_TABLE,
    CookiePool,
    dump_jar,
    load_cookies,
    load_jar,
    restore_cookies,
    save_cookies,
)
from .errors import ConfigError

__all__ = ["COOKIES_TABLE", "STATE_FILE", "CookiePool", "DatabaseKind", "StateStore"]
__all__ += ["dump_jar", "load_cookies", "load_jar", "restore_cookies", "save_cookies"]
__all__ += ["open_database", "transaction"]


# -- opening ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatabaseKind:
    """One kind of our SQLite files: what it is called, its id, version and schema.

    ``noun`` names it in messages ("crawl state database"); ``remedy`` is what the
    user can do with a refused file ("choose another --state-dir"). ``schema`` is one
    script that creates the tables and sets ``application_id`` and ``user_version``
    in one transaction (``BEGIN IMMEDIATE; ... COMMIT;``), idempotent (``IF NOT
    EXISTS``) if several processes may create the file at once. ``tables``: those a
    file of this kind has. ``adopt_unstamped``: a file with no application id and
    exactly ``tables`` (written before the kind had an id) is ours; the schema stamps it.
    """

    noun: str
    application_id: int
    version: int
    schema: str
    tables: frozenset[str]
    remedy: str
    adopt_unstamped: bool = False


async def open_database(
    path: Path,
    kind: DatabaseKind,
    *,
    busy_timeout_s: float,
    exclusive: bool = False,
    make_parents: bool = False,
) -> aiosqlite.Connection:
    """Open one of our SQLite files in WAL mode, or create it with ``kind.schema``.

    A ``ConfigError`` naming the file and what to do refuses, without writing to
    it, a file that is not SQLite or is damaged, one of another application (another
    ``application_id``, another of our kinds included, or foreign tables without
    one), of a newer schema version, or of an older or incomplete one; and reports
    a file another crawl holds (busy after ``busy_timeout_s``) as in use.
    ``exclusive`` locks the file (``locking_mode=EXCLUSIVE``) until the connection
    closes. ``make_parents`` creates missing folders. The connection is in
    autocommit mode.
    """
    where = str(path)
    try:
        # Create the file first: a path sqlite cannot open would leave aiosqlite's thread
        # finishing after the caller's event loop is gone; this also gives the OS's reason.
        await asyncio.to_thread(_touch, path, make_parents)
    except OSError as exc:
        raise ConfigError(f"cannot open {kind.noun} {where}: {exc.strerror or exc}") from None
    for attempt in range(_SETUP_TRIES):
        try:
            return await _open_once(where, kind, busy_timeout_s, exclusive)
        except _SetupRace:
            # Several processes created the same new file at once: the loser's WAL switch
            # or CREATE TABLE met the winner's; the next try sees the finished file.
            await asyncio.sleep(0.02 * (attempt + 1))
    return await _open_once(where, kind, busy_timeout_s, exclusive, last=True)


_SETUP_TRIES = 8


class _SetupRace(Exception):
    """Setting up a new file collided with another opener doing the same."""


async def _open_once(
    where: str, kind: DatabaseKind, busy_timeout_s: float, exclusive: bool, last: bool = False
) -> aiosqlite.Connection:
    try:
        db = await aiosqlite.connect(where, timeout=busy_timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open {kind.noun} {where}: {exc}") from None
    checked = False
    try:
        if exclusive:
            await db.execute_fetchall("PRAGMA locking_mode = EXCLUSIVE")
        # One read transaction (EXCLUSIVE: take the lock now; it is held until close).
        await db.execute("BEGIN EXCLUSIVE" if exclusive else "BEGIN")
        [(app_id,)] = await db.execute_fetchall("PRAGMA application_id")
        [(version,)] = await db.execute_fetchall("PRAGMA user_version")
        rows = await db.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        await db.execute("COMMIT")
        create = _check(where, kind, app_id, version, {name for (name,) in rows})
        checked = True
        # Pragmas that answer a row are fetched: an unread row keeps a statement busy.
        await db.execute_fetchall("PRAGMA journal_mode = WAL")
        if create:
            await db.executescript(kind.schema)
    except BaseException as exc:
        await db.close()
        if isinstance(exc, sqlite3.OperationalError) and checked and not last:
            raise _SetupRace() from None
        if isinstance(exc, sqlite3.Error):
            raise _open_error(where, kind, exc) from None
        raise
    return db


def _touch(path: Path, make_parents: bool) -> None:
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    # Our files hold cookies, Set-Cookie headers and queued URLs: readable by the owner only
    # (SQLite gives its -wal and -shm files the same mode). An existing file keeps its mode.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))


def _check(where: str, kind: DatabaseKind, app_id: int, version: int, tables: set[str]) -> bool:
    """Refuse a file that is not ``kind``; True if it is new (the schema must be created)."""
    if app_id == 0 and not tables:
        return True  # a new (or empty) file: ours to create
    if app_id == 0 and kind.adopt_unstamped and tables == kind.tables:
        return True  # ours, from before the kind had an application id
    if app_id != kind.application_id:
        what = f"application_id {app_id:#010x}{_tag(app_id)}"
        if app_id == 0:
            what = f"tables {sorted(tables)[:5]}"
        raise ConfigError(
            f"{where} is an SQLite database of another application ({what}), not a {kind.noun};"
            f" {kind.remedy}"
        )
    if version > kind.version:
        raise ConfigError(
            f"{kind.noun} {where} has schema version {version}, newer than this crawler"
            f" understands ({kind.version}): upgrade crawler, or {kind.remedy}"
        )
    if version < kind.version or not kind.tables <= tables:
        raise ConfigError(
            f"{kind.noun} {where} has schema version {version} and tables {sorted(tables)},"
            f" expected version {kind.version}: it cannot be used; {kind.remedy}"
        )
    return False


def _tag(app_id: int) -> str:
    """`` 'CRLS'``: the four letters our ids (and many others) spell."""
    text = app_id.to_bytes(4, "big", signed=True).decode("latin-1")
    return f" {text!r}" if text.isprintable() and text.isascii() else ""


def _open_error(where: str, kind: DatabaseKind, exc: sqlite3.Error) -> ConfigError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return ConfigError(
            f"{kind.noun} {where} is in use by another crawl (the file is locked);"
            f" wait for it to finish, or {kind.remedy}"
        )
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return ConfigError(f"{where} is not a {kind.noun} ({exc}); {kind.remedy}")
    return ConfigError(f"cannot open {kind.noun} {where}: {exc}")


@contextlib.asynccontextmanager
async def transaction(
    db: aiosqlite.Connection, begin: str = "BEGIN"
) -> AsyncIterator[aiosqlite.Connection]:
    """``BEGIN`` ... ``COMMIT`` on an autocommit connection; ``ROLLBACK`` if the body fails."""
    await db.execute(begin)
    try:
        yield db
        await db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
        raise


# -- the crawl's state file ---------------------------------------------------------------

APPLICATION_ID = 0x43524C53  # "CRLS": crawler state
SCHEMA_VERSION = 1
STATE_FILE = DatabaseKind(
    noun="crawl state database",
    application_id=APPLICATION_ID,
    version=SCHEMA_VERSION,
    schema=f"""BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
{COOKIES_TABLE}
CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;""",
    tables=frozenset(("meta", "cookies", "stats")),
    remedy="point --state at another folder or move this file away",
)


class StateStore:
    """Run metadata, counters and cookie jars of one crawl job, in SQLite (aiosqlite)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open (or create) the file, refusing foreign or newer files."""
        self._db = await open_database(self.path, STATE_FILE, busy_timeout_s=0.5, make_parents=True)

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        assert self._db is not None, "StateStore.open() first"
        return self._db

    async def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def get(self, key: str, default: str | None = None) -> str | None:
        """A metadata value."""
        rows = list(await self.db.execute_fetchall("SELECT value FROM meta WHERE key=?", (key,)))
        return rows[0][0] if rows else default

    async def set_many(self, values: Mapping[str, str]) -> None:
        """Write metadata values (one transaction)."""
        async with transaction(self.db) as db:
            await _set_meta(db, values)

    async def load_counters(self) -> dict[str, int]:
        """The counters saved by earlier runs."""
        rows = await self.db.execute_fetchall("SELECT key, value FROM stats")
        return {key: int(value) for key, value in rows}

    async def load_cookies(self) -> dict[str, list[dict[str, Any]]]:
        """Saved cookie records by jar key."""
        return await load_cookies(self.db)

    async def restore_cookies(self, pool: CookiePool) -> int:
        """Put the saved jars back into ``pool``; returns how many cookies."""
        return await restore_cookies(self.db, pool)

    async def save(
        self,
        counters: Mapping[str, int],
        jars: Mapping[str, AbstractCookieJar],
        meta: Mapping[str, str] = {},
    ) -> None:
        """Checkpoint counters, cookie jars and metadata in one transaction."""
        async with transaction(self.db) as db:
            await db.execute("DELETE FROM stats")
            await db.executemany(
                "INSERT INTO stats(key, value) VALUES(?, ?)", list(counters.items())
            )
            await save_cookies(db, jars)
            await _set_meta(db, meta)

    async def reset(self) -> None:
        """Forget everything (``--restart``)."""
        async with transaction(self.db) as db:
            for table in ("meta", "cookies", "stats"):
                await db.execute(f"DELETE FROM {table}")


async def _set_meta(db: aiosqlite.Connection, values: Mapping[str, str]) -> None:
    await db.executemany(
        "INSERT INTO meta(key, value) VALUES(?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        list(values.items()),
    )
