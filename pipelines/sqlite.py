"""SQLite export: one table per spider, one row per distinct item, upserted."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from crawler.errors import ConfigError

from .jsonlines import dumps, to_dict

__all__ = ["SqliteExporter"]

logger = logging.getLogger("crawler.pipelines.sqlite")

BATCH_ITEMS = 500
"""Rows buffered before one executemany + commit: one transaction per batch, not per item."""

_COLUMNS = ["key", "url", "item", "first_seen", "last_seen"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def table_name(name: str) -> str:
    """``name`` reduced to ``[A-Za-z0-9_]`` (a safe SQL identifier); ``"items"`` if empty."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "items"


class SqliteExporter:
    """Upserts items into a SQLite database at ``path`` (``.db``/``.sqlite``/``.sqlite3``).

    The table is ``table``, else the spider's name (sanitized), with columns
    ``key`` (primary key), ``url``, ``item`` (JSON), ``first_seen`` and
    ``last_seen`` (UTC ISO 8601). ``key`` is the item's ``key_field`` value, or
    else a SHA-1 of its content, so the same item seen again updates its row
    instead of adding one. ``overwrite`` drops the table first. ``now`` is the
    timestamp source (injectable for tests).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        table: str | None = None,
        overwrite: bool = False,
        *,
        key_field: str | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.path = path
        self._table_option = table_name(table) if table is not None else None
        # The table written to; from the spider's name it is known only after open().
        self.table = self._table_option
        self.overwrite = overwrite
        self.key_field = key_field
        self._now = now
        self._db: aiosqlite.Connection | None = None
        self._rows: list[tuple[str, str | None, str, str, str]] = []
        self._upsert = ""
        self._warned_no_key = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {os.fspath(self.path)!r} table={self.table!r}>"

    async def open(self, spider: Any) -> None:
        """Connect, switch to WAL, and create (or, with overwrite, recreate) the table."""
        table = self._table_option or table_name(getattr(spider, "name", "") or "")
        self.table = table
        self._rows = []
        quoted = f'"{table}"'
        self._upsert = (
            f"INSERT INTO {quoted} (key, url, item, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET"
            " url=excluded.url, item=excluded.item, last_seen=excluded.last_seen"
        )
        path = os.fspath(self.path)
        db = None
        try:
            await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
            db = await aiosqlite.connect(path)
            # WAL: readers (e.g. `sqlite3 items.db` during a crawl) do not block our writes.
            # execute_fetchall: a PRAGMA left un-stepped would keep the table locked for DROP.
            await db.execute_fetchall("PRAGMA journal_mode=WAL")
            if self.overwrite:
                await db.execute(f"DROP TABLE IF EXISTS {quoted}")
            await db.execute(
                f"CREATE TABLE IF NOT EXISTS {quoted} (key TEXT PRIMARY KEY, url TEXT,"
                " item TEXT, first_seen TEXT, last_seen TEXT)"
            )
            columns = [row[1] for row in await db.execute_fetchall(f"PRAGMA table_info({quoted})")]
            await db.commit()
        except (OSError, sqlite3.Error) as exc:
            if db is not None:
                await db.close()
            raise ConfigError(f"cannot use SQLite output {path!r} table {table!r}: {exc}") from None
        if columns != _COLUMNS:
            await db.close()
            raise ConfigError(
                f"table {table!r} in {path!r} has columns {columns}, expected {_COLUMNS};"
                " use -O to overwrite it or choose another table"
            )
        self._db = db

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Buffer the item's row; upsert a batch every BATCH_ITEMS items."""
        data = to_dict(item)
        url = data.get("url")
        seen = self._now().isoformat()
        key = self._key(data, spider)
        self._rows.append(
            (key, None if url is None else str(url), dumps(data).decode(), seen, seen)
        )
        if len(self._rows) >= BATCH_ITEMS:
            await self._flush()
        return item

    def _key(self, data: dict[Any, Any], spider: Any) -> str:
        if self.key_field is not None:
            value = data.get(self.key_field)
            if value is not None:
                return str(value)
            if not self._warned_no_key:
                self._warned_no_key = True
                logger.warning(
                    "[%s] item without key field %r; keying such items by content",
                    getattr(spider, "name", ""),
                    self.key_field,
                )
        # Sorted keys: equal items give equal keys whatever their field order.
        return hashlib.sha1(dumps(data, sort_keys=True), usedforsecurity=False).hexdigest()

    async def _flush(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        if self._db is None:
            raise RuntimeError(f"{self!r} is not open: call open(spider) first")
        await self._db.executemany(self._upsert, rows)
        await self._db.commit()

    async def close(self, spider: Any) -> None:
        """Upsert the remaining rows and close the database."""
        try:
            await self._flush()
        finally:
            db, self._db = self._db, None
            if db is not None:
                await db.close()
