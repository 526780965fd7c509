"""SQLite export: one table per spider, one row per distinct item, upserted."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from crawler import ConfigError, OutputError, item_key
from crawler.loglines import get_logger

from .faults import DEFAULT_RETRY, WriteRetry, output_failure, with_retries
from .jsonlines import dumps, dumps_item, to_dict

__all__ = ["SqliteExporter"]

logger = get_logger("crawler.pipelines.sqlite")

BATCH_ITEMS = 500
"""Rows buffered before one executemany + commit: one transaction per batch, not per item."""

_Row = tuple[str, str | None, str, str, str]

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
    ``last_seen`` (UTC ISO 8601). ``key`` is the item's ``key_field`` value;
    without one, the crawl's :func:`crawler.pipeline.item_key` (by default
    ``<request fingerprint>:<index of the item on its page>``); outside a
    crawl, a SHA-1 of the item's content. The same item seen again updates its
    row instead of adding one. ``overwrite`` drops the table first. ``now`` is
    the timestamp source (injectable for tests).

    Rows are upserted in batches of BATCH_ITEMS, each one committed (and, with
    ``synchronous=FULL``, synced) transaction; ``flush(spider)`` commits the
    pending batch. A busy or locked database (another connection writing;
    each try waits up to ``busy_timeout_s`` for its lock) is retried as
    ``retry`` says, rolling the batch back first (reconnecting if even that
    fails); any other failure, or a lock that outlasts the retries, raises
    :class:`~crawler.errors.OutputError`, and so does every later call.

    Resuming a crawl gives *exactly once*: items of requests in flight at the
    crash are produced again with the same keys and update their rows instead
    of duplicating them. So this output needs no saved position and is not a
    :class:`~crawler.pipeline.CheckpointedOutput`: whatever the last run
    committed after its last checkpoint is simply upserted again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        table: str | None = None,
        overwrite: bool = False,
        *,
        key_field: str | None = None,
        now: Callable[[], datetime] = _utc_now,
        retry: WriteRetry = DEFAULT_RETRY,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self.path = path
        self._table_option = table_name(table) if table is not None else None
        # The table written to; from the spider's name it is known only after open().
        self.table = self._table_option
        self.overwrite = overwrite
        self.key_field = key_field
        self.busy_timeout_s = busy_timeout_s
        self._now = now
        self._retry = retry
        self._db: aiosqlite.Connection | None = None
        self._rows: list[_Row] = []
        self._writing: asyncio.Task[None] | None = None
        self._upsert = ""
        self._warned_no_key = False
        self._failed: OutputError | None = None
        self._unclean = False  # the last try failed: roll back (or reconnect) first

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {os.fspath(self.path)!r} table={self.table!r}>"

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(os.fspath(self.path), timeout=self.busy_timeout_s)
        try:
            # WAL: readers (e.g. `sqlite3 items.db` during a crawl) do not block our writes.
            # execute_fetchall: a PRAGMA left un-stepped would keep the table locked for DROP.
            await db.execute_fetchall("PRAGMA journal_mode=WAL")
            # FULL: every commit is synced, so a flushed batch survives power loss too.
            await db.execute_fetchall("PRAGMA synchronous=FULL")
        except BaseException:
            await db.close()
            raise
        return db

    async def open(self, spider: Any) -> None:
        """Connect, switch to WAL, and create (or, with overwrite, recreate) the table."""
        table = self._table_option or table_name(getattr(spider, "name", "") or "")
        self.table = table
        self._rows = []
        self._writing = None
        self._failed = None
        self._unclean = False
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
            db = await self._connect()
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

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Buffer the item's row; upsert a batch every BATCH_ITEMS items.

        An item that cannot be encoded raises TypeError naming its field (the
        item is dropped); OutputError once a batch has failed for good.
        """
        self._raise_if_failed()
        data = to_dict(item)
        encoded = dumps_item(data).decode()
        url = data.get("url")
        seen = self._now().isoformat()
        key = self._key(data, spider)
        self._rows.append((key, None if url is None else str(url), encoded, seen, seen))
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
                    "[%s] item without key field %r; keying such items by crawl key or content",
                    getattr(spider, "name", ""),
                    self.key_field,
                )
        key = item_key()
        if key is not None:
            return key
        # Sorted keys: equal items give equal keys whatever their field order.
        return hashlib.sha1(dumps(data, sort_keys=True), usedforsecurity=False).hexdigest()

    async def _flush(self) -> None:
        """Upsert and commit the buffered rows, after any batch already being written.

        Waits even with no rows to write, so once this returns every row
        buffered so far is committed (a no-op commit is cheap). Raises
        OutputError if this or an earlier batch failed for good.
        """
        self._raise_if_failed()
        rows, self._rows = self._rows, []
        if self._db is None:
            if not rows:
                return
            raise RuntimeError(f"{self!r} is not open: call open(spider) first")
        self._writing = asyncio.create_task(self._write_after(self._writing, rows))
        # Shielded: cancelling the caller must not drop a batch it took from the buffer.
        await asyncio.shield(self._writing)
        self._raise_if_failed()

    async def _write_after(self, previous: asyncio.Task[None] | None, rows: list[_Row]) -> None:
        # Never raises: a batch that failed for good is kept in self._failed for every caller.
        # A transient failure retried to success leaves no trace for the batches after it.
        if previous is not None:
            await asyncio.wait([previous])
        if self._failed is not None:
            return
        try:
            await with_retries(
                lambda: self._write_rows(rows), self._retry, output=os.fspath(self.path)
            )
        except OutputError as exc:
            self._failed = exc
            db = self._db
            if db is not None:
                # Best effort: never leave half a batch for close() to keep.
                with contextlib.suppress(Exception):
                    await db.rollback()

    async def _write_rows(self, rows: list[_Row]) -> None:
        """One try at the batch, on a fresh writer if the last try failed."""
        if self._unclean or self._db is None:
            await self._fresh_writer()
        db = self._db
        assert db is not None
        self._unclean = True
        if rows:
            await db.executemany(self._upsert, rows)
        await db.commit()
        self._unclean = False

    async def _fresh_writer(self) -> None:
        """Roll back what a failed try left; if even that fails, reconnect."""
        db = self._db
        if db is not None:
            try:
                await db.rollback()
            except sqlite3.Error:
                self._db = None
                with contextlib.suppress(Exception):
                    await db.close()
            else:
                self._unclean = False
                return
        self._db = await self._connect()
        self._unclean = False

    async def flush(self, spider: Any) -> None:
        """Make every item processed so far durable: upsert and commit the pending batch."""
        await self._flush()

    async def close(self, spider: Any) -> None:
        """Upsert the remaining rows and close the database.

        Raises OutputError if a batch failed or the database cannot be closed;
        the connection is closed either way.
        """
        error: OutputError | None = None
        try:
            await self._flush()
        except OutputError as exc:
            error = exc
        finally:
            writing, self._writing = self._writing, None
            if writing is not None:
                await asyncio.wait([writing])
            db, self._db = self._db, None
            if db is not None:
                try:
                    await db.close()
                except (OSError, sqlite3.Error) as exc:
                    error = error or output_failure(os.fspath(self.path), exc, action="close")
        if error is not None:
            raise error
