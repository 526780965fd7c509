"""The SQLite frontier's state file: opening it locked, and the writes buffered for it.

``StateFile.open()`` creates the file (schema: :mod:`crawler.frontier.sqlite.schema`)
or checks that it is a crawl state file of this schema version, and locks it
(``locking_mode=EXCLUSIVE``) until ``close()``: a second crawl on the same state,
a database of another application or of another schema version, or no database
at all, fails with ``ConfigError`` instead of being corrupted. LEASED and DELAYED
rows become PENDING again, in their old queue position (clocks are not comparable
across processes: a retry delay is considered served).

Writes (new rows, lease/ack/fail/retry state changes) are buffered and written
in one transaction (``flush()``) when ``flush_ops`` are pending,
``flush_interval_s`` after the first unwritten change (on the injected clock),
and at ``close()``. A partial ``write()`` (what a refill or a due retry needs
before it reads) writes the pushes and leases, never DONE/FAILED marks: a caller
that makes its own output durable before calling ``flush()`` (the engine's
checkpoints) decides when "done" is. ``synchronous=NORMAL``: an OS crash or
power loss may lose the last transactions, never corrupt the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import aiosqlite

from ...clock import Clock, TimerHandle
from ...errors import ConfigError, CrawlerError
from ...loglines import get_logger
from ...storage import DatabaseKind, open_database
from ..domains import HeadKey
from ..seen import SeenCache
from .schema import (
    APPLICATION_ID,
    DELAYED,
    DONE,
    DUE,
    FAILED,
    HOSTS,
    INSERT,
    LEASED,
    NEXT_DUE,
    PENDING,
    SCHEMA,
    SCHEMA_VERSION,
)

__all__ = ["Contents", "StateFile"]

_MARK = "mark:"  # meta keys holding CheckpointMarks
SET_MARK = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
logger = get_logger("crawler.frontier")

_CACHE_KIB = 32 * 1024  # page cache: the hot part of the fingerprint index stays in memory
_CHECKPOINT_PAGES = 4096  # WAL pages between checkpoints (fewer rewrites of hot pages)
_RECENT_MAX = 32_768  # fingerprints remembered as stored, to skip known duplicates
_IN_CHUNK = 500
_DUE_CHUNK = 1000

Statement = tuple[str, tuple[Any, ...]]
"""(SQL, parameters): one buffered change."""


@dataclass(frozen=True, slots=True)
class Contents:
    """What an opened state file holds, once what was in flight is PENDING again."""

    next_id: int  # above every row id and seq in the file
    seeded: bool  # the start requests were all pushed (``seed_done``)
    pending: int
    done: int
    failed: int
    hosts: list[tuple[str, int, HeadKey]]  # (host, pending rows, key of its best one)


class StateFile:
    """The state file of one SqliteFrontier: its connection, lock and buffered writes.

    ``lock`` is held by whoever reads the file to change the frontier's memory,
    and by every write.
    """

    def __init__(
        self,
        path: Path,
        clock: Clock,
        *,
        flush_ops: int,
        flush_interval_s: float,
        busy_timeout_s: float,
    ) -> None:
        self.path = path
        self.clock = clock
        self.flush_ops = flush_ops
        self.flush_interval_s = flush_interval_s
        self.busy_timeout_s = busy_timeout_s
        self.db: aiosqlite.Connection | None = None
        self.lock = asyncio.Lock()
        self._flush_event = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._flush_timer: TimerHandle | None = None
        self.discard()

    def discard(self) -> None:
        """Forget every buffered write and every remembered fingerprint."""
        self.inserts: list[tuple[Any, ...]] = []
        self.updates: list[Statement] = []
        # DONE/FAILED marks: written only by a full flush (flush(), the interval, a full
        # buffer, close()), never by the partial flush a refill needs, so a caller that
        # checkpoints its own output first (the engine) decides when "done" becomes durable.
        self.finals: list[Statement] = []
        self.unflushed: set[bytes] = set()  # fingerprints of rows in inserts
        # Rows whose change away from PENDING is not written yet (row id -> host), and how many
        # per host: a refill query still reads them as PENDING and skips them.
        self.dirty: dict[int, str] = {}
        self.dirty_hosts: dict[str, int] = {}
        self.recent = SeenCache(_RECENT_MAX)  # fingerprints known to be stored
        self.unflushed_delay = float("inf")  # earliest ready_at among buffered retries
        # Marks (the outputs' durable positions) written with the next full flush's DONE marks.
        self.marks: dict[str, str] = {}

    # -- open / close -------------------------------------------------------------------

    async def open(self) -> Contents:
        """Open (or create) the file, lock it, re-queue what was in flight and say what it holds."""
        db = await _connect(self.path, self.busy_timeout_s)
        try:
            contents = await _read_contents(db)
        except BaseException:
            await db.close()
            raise
        self.db = db
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"flush {self.path.name}")
        return contents

    async def close(self) -> None:
        """Write what is buffered, except DONE/FAILED marks, and release the file.

        Requests become done only through an explicit ``flush()`` (the engine's
        checkpoint, after the items they produced are durable): a crawl stopped
        because an output failed must not mark their requests done on its way out.
        """
        db = self.db
        if db is None:
            return
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._flush_timer = None
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        try:
            async with self.lock:
                await self.write(full=False)
        finally:
            self.db = None
            await db.close()

    async def clear(self) -> None:
        """Delete every request, fingerprint and the seeded mark (call with the lock held)."""
        db = self.require_open()
        try:
            await db.execute("BEGIN")
            await db.execute("DELETE FROM requests")
            await db.execute("DELETE FROM meta WHERE key = 'seeded' OR key GLOB ?", (_MARK + "*",))
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise self.error(exc) from None

    # -- buffered writes ----------------------------------------------------------------

    def __len__(self) -> int:
        """How many writes are buffered."""
        return len(self.inserts) + len(self.updates) + len(self.finals)

    def is_full(self) -> bool:
        """True if ``flush_ops`` writes are buffered."""
        return len(self) >= self.flush_ops

    def insert(self, row: tuple[Any, ...], fp: bytes) -> None:
        """Buffer a new row (the INSERT's parameters) stored under fingerprint ``fp``."""
        self.inserts.append(row)
        self.unflushed.add(fp)

    def update(self, sql: str, params: tuple[Any, ...]) -> None:
        """Buffer a statement that takes no row away from PENDING."""
        self.updates.append((sql, params))

    def change(
        self, row_id: int, host: str, sql: str, params: tuple[Any, ...], final: bool = False
    ) -> None:
        """Buffer a change of a row away from PENDING; ``final``: a DONE/FAILED mark."""
        (self.finals if final else self.updates).append((sql, params))
        if row_id not in self.dirty:
            self.dirty[row_id] = host
            self.dirty_hosts[host] = self.dirty_hosts.get(host, 0) + 1
        self.arm()

    def remember(self, fps: Iterable[bytes]) -> None:
        """Remember fingerprints as stored (the most recent of them)."""
        self.recent.add(fps)

    def arm(self) -> None:
        """Start the flush interval, unless it runs already (or the file is closed)."""
        if self._flush_timer is None and self.db is not None:
            when = self.clock.now() + self.flush_interval_s
            self._flush_timer = self.clock.call_at(when, self._on_flush_timer)

    def _on_flush_timer(self) -> None:
        self._flush_timer = None
        self._flush_event.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_event.wait()
            self._flush_event.clear()
            try:
                await self.flush()
            except CrawlerError:
                logger.exception("frontier %s: writing the crawl state failed", self.path)

    async def flush(self) -> None:
        """Write every buffered write (DONE/FAILED included) in one transaction."""
        async with self.lock:
            await self.write(full=True)

    async def flush_if_full(self) -> None:
        """``flush()`` if ``flush_ops`` writes are buffered."""
        if self.is_full():
            await self.flush()

    async def write(self, full: bool) -> None:
        """Write the buffers in one transaction; a partial write keeps DONE/FAILED marks.

        Call with the lock held.
        """
        db = self.db
        marks = self.marks if full else {}
        if db is None or not (self.inserts or self.updates or (full and (self.finals or marks))):
            return
        inserts, updates, finals = self.inserts, self.updates, self.finals if full else []
        unflushed, dirty = self.unflushed, self.dirty
        self.inserts, self.updates, self.unflushed = [], [], set()
        if full:
            self.finals, self.marks = [], {}
        # Every row leased (or retried) is now written as such: none reads as PENDING.
        self.dirty, self.dirty_hosts = {}, {}
        self.unflushed_delay = float("inf")
        try:
            await db.execute("BEGIN")
            if inserts:
                await db.executemany(INSERT, inserts)
            # In order, runs of one statement batched. DONE/FAILED come last: they end a row.
            for sql, run in groupby((*updates, *finals), key=itemgetter(0)):
                await db.executemany(sql, [params for _, params in run])
            if marks:
                await db.executemany(SET_MARK, [(_MARK + k, v) for k, v in marks.items()])
            await db.execute("COMMIT")
        except BaseException as exc:
            # Keep the changes for the next flush (re-applying them is harmless: rows are
            # inserted with OR REPLACE, updates are replayed in order).
            self.inserts[:0] = inserts
            self.updates[:0] = updates
            if full:
                self.finals[:0] = finals
                self.marks = {**marks, **self.marks}  # newer marks set meanwhile win
            self.unflushed |= unflushed
            for row_id, host in dirty.items():
                if row_id not in self.dirty:
                    self.dirty[row_id] = host
                    self.dirty_hosts[host] = self.dirty_hosts.get(host, 0) + 1
            try:
                await db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # not in a transaction (it never began, or the COMMIT went through)
            if isinstance(exc, sqlite3.Error):
                raise self.error(exc) from None
            raise

    # -- reading ------------------------------------------------------------------------

    async def load_marks(self) -> dict[str, str]:
        """The marks the last full flush wrote."""
        rows = await self.query("SELECT key, value FROM meta WHERE key GLOB ?", (_MARK + "*",))
        return {key[len(_MARK) :]: value for key, value in rows}

    async def existing(self, fps: Sequence[bytes]) -> set[bytes]:
        """Those of ``fps`` stored in the file (buffered inserts not included)."""
        found: set[bytes] = set()
        for start in range(0, len(fps), _IN_CHUNK):
            chunk = fps[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT fp FROM requests WHERE fp IN ({marks})"
            found.update(fp for (fp,) in await self.query(sql, chunk))
        return found

    async def due_retries(self, now: float) -> tuple[list[Any], float | None]:
        """DELAYED rows due at ``now`` (the first 1000 by ready time), and when the next
        one is due (``now`` if more are; None if no other is delayed)."""
        rows = await self.query(DUE, (now, _DUE_CHUNK))
        if len(rows) < _DUE_CHUNK:
            (next_at,) = (await self.query(NEXT_DUE, (now,)))[0]
        else:
            next_at = now
        return rows, next_at

    async def query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """All rows of one query."""
        db = self.require_open()
        try:
            return list(await db.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def require_open(self) -> aiosqlite.Connection:
        """The connection; CrawlerError if the file is not open."""
        if self.db is None:
            raise CrawlerError(f"the frontier {self.path} is not open: await frontier.open() first")
        return self.db

    def error(self, exc: sqlite3.Error) -> CrawlerError:
        """A failed read or write of the open file, as the crawler reports it."""
        return CrawlerError(
            f"crawl state {self.path}: {exc} (is the disk full or the file damaged?)"
        )


# -- opening ------------------------------------------------------------------------------


FRONTIER_FILE = DatabaseKind(
    noun="crawl state file",
    application_id=APPLICATION_ID,
    version=SCHEMA_VERSION,
    schema=SCHEMA,
    tables=frozenset(("meta", "requests")),
    remedy="choose another state path",
)


async def _connect(path: Path, busy_timeout_s: float) -> aiosqlite.Connection:
    db = await open_database(path, FRONTIER_FILE, busy_timeout_s=busy_timeout_s, exclusive=True)
    try:
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        await db.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
    except BaseException as exc:
        await db.close()
        if isinstance(exc, sqlite3.Error):
            raise ConfigError(f"cannot open crawl state {path}: {exc}") from None
        raise
    return db


async def _read_contents(db: aiosqlite.Connection) -> Contents:
    by_state: dict[int, int] = {}
    top = 0
    for state, count, max_seq, max_id in await db.execute_fetchall(
        "SELECT state, COUNT(*), MAX(seq), MAX(id) FROM requests GROUP BY state"
    ):
        by_state[state] = count
        top = max(top, max_seq, max_id)
    seeded = bool(await db.execute_fetchall("SELECT 1 FROM meta WHERE key = 'seeded'"))
    if by_state.get(LEASED) or by_state.get(DELAYED):
        await db.execute("UPDATE requests SET state = 0, ready_at = 0 WHERE state IN (1, 4)")
    pending = by_state.get(PENDING, 0) + by_state.get(LEASED, 0) + by_state.get(DELAYED, 0)
    hosts = [
        (host, count, (-priority, seq))
        for host, count, priority, seq in await db.execute_fetchall(HOSTS)
    ]
    return Contents(top + 1, seeded, pending, by_state.get(DONE, 0), by_state.get(FAILED, 0), hosts)
