"""The SQLite frontier: durable, resumable, and bounded in memory.

Every request lives in one row of ``requests`` (one file, WAL journal, aiosqlite
so the event loop never blocks)::

    id INTEGER PRIMARY KEY, fp BLOB UNIQUE, host, priority, seq, state, ready_at, data, reason
    state: 0 PENDING  1 LEASED  2 DONE  3 FAILED  4 DELAYED (a retry waiting for ready_at)
           5 SEEN (a fingerprint only, from add_seen)

``data`` is the request as :mod:`crawler.frontier.codec` stores it (callbacks by
name, so they must be spider methods). The ``fp`` column is the de-duplication
set: a ``dont_filter`` duplicate is stored under its fingerprint plus 8 random
bytes. A partial index on ``(host, priority DESC, seq) WHERE state = 0`` makes
"the next best pending requests of a host" an O(log n) query; one on
``(ready_at, seq) WHERE state = 4`` finds due retries. ``PRAGMA application_id``,
``PRAGMA user_version`` and a ``meta`` table say what the file is.

Memory: each host keeps a *window* of at most ``window`` of its best pending
requests, a prefix of its queue (whatever stays in the database ranks after
it). When a window is half empty it is refilled, many hosts per indexed query;
``HostReadiness`` picks the host, by the best request of its window. Over
``max_loaded`` requests in memory, the windows of the least recently used hosts
are dropped: such a host stays scheduled by its best key and is reloaded when
picked. So memory is O(max_loaded + hosts), never O(queue). Keep ``window`` at
or above the per-host concurrency, or a host cannot reach it.

Writes (new rows, lease/ack/fail/retry state changes) are buffered and written
in one transaction (``flush()``) when ``flush_ops`` are pending,
``flush_interval_s`` after the first unwritten change (on the injected clock),
and at ``close()``. A refill or a due retry first writes the pushes and leases
it must read, but never DONE/FAILED marks: a caller that makes its own output
durable before calling ``flush()`` (the engine's checkpoints) decides when
"done" is. After ``kill -9`` (at-least-once): a request leased and not acked is
fetched again on resume, and so is one acked within the last
``flush_interval_s`` (or ``flush_ops`` changes) before the crash; requests pushed
in that window may be lost. ``synchronous=NORMAL``: an OS crash or power loss
may lose a little more (the last transactions), never corrupt the file.

On ``open()`` LEASED and DELAYED rows become PENDING again, in their old queue
position (clocks are not comparable across processes: a retry delay is
considered served). Per-host delay overrides and holds are not stored. The file
is locked (``locking_mode=EXCLUSIVE``) while open, so a second crawl on the same
state fails with ``ConfigError`` instead of corrupting it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from bisect import insort
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import aiosqlite

from ..clock import Clock, MonotonicClock, TimerHandle
from ..errors import ConfigError, CrawlerError
from ..fingerprint import fingerprint
from ..request import Request
from .base import FrontierCounts, Lease, PolitenessPolicy
from .codec import RequestCodec
from .domains import HeadKey, HostReadiness

__all__ = ["SqliteFrontier"]

logger = logging.getLogger("crawler.frontier")

APPLICATION_ID = 0x63726177  # "craw"
SCHEMA_VERSION = 1
PENDING, LEASED, DONE, FAILED, DELAYED, SEEN = range(6)

_SCHEMA = f"""
BEGIN;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('application', 'crawler frontier'), ('schema_version', '{SCHEMA_VERSION}');
CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    fp BLOB NOT NULL UNIQUE,
    host TEXT NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    state INTEGER NOT NULL,
    ready_at REAL NOT NULL DEFAULT 0,
    data BLOB,
    reason TEXT
);
CREATE INDEX requests_pending ON requests (host, priority DESC, seq) WHERE state = 0;
CREATE INDEX requests_delayed ON requests (ready_at, seq) WHERE state = 4;
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""
_INSERT = (
    "INSERT OR REPLACE INTO requests (id, fp, host, priority, seq, state, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# State changes touch as few columns as they can: each changed column costs index upkeep.
_SET_STATE = "UPDATE requests SET state = ? WHERE id = ?"
_SET_FAILED = "UPDATE requests SET state = 3, reason = ? WHERE id = ?"
_SET_DELAYED = "UPDATE requests SET state = 4, ready_at = ?, seq = ?, data = ? WHERE id = ?"
_SET_PENDING = "UPDATE requests SET state = 0, ready_at = 0, seq = ? WHERE id = ?"
_SEEDED = "INSERT OR REPLACE INTO meta (key, value) VALUES ('seeded', '1')"
_COLUMNS = "id, fp, priority, seq, data, host"
# One arm per host of the refill query (arms are joined with UNION ALL).
_BEST = (
    f"SELECT * FROM (SELECT {_COLUMNS} FROM requests WHERE state = 0 AND host = ?"
    " ORDER BY priority DESC, seq LIMIT ?)"
)
_AFTER = (
    f"SELECT * FROM (SELECT {_COLUMNS} FROM requests WHERE state = 0 AND host = ?"
    " AND (priority < ? OR (priority = ? AND seq > ?)) ORDER BY priority DESC, seq LIMIT ?)"
)
_DUE = (
    f"SELECT {_COLUMNS} FROM requests WHERE state = 4 AND ready_at <= ?"
    " ORDER BY ready_at, seq LIMIT ?"
)
_FIRST = "FROM requests WHERE state = 0 AND host = h.host ORDER BY priority DESC, seq"
_HOSTS = (  # per host with pending rows: how many, and the best one's priority and seq
    f"SELECT h.host, h.n, (SELECT priority {_FIRST}), (SELECT seq {_FIRST})"
    " FROM (SELECT host, COUNT(*) AS n FROM requests WHERE state = 0 GROUP BY host) AS h"
)
_CACHE_KIB = 32 * 1024  # page cache: the hot part of the fingerprint index stays in memory
_CHECKPOINT_PAGES = 4096  # WAL pages between checkpoints (fewer rewrites of hot pages)
_IN_CHUNK = 500
_REFILL_CHUNK = 100  # hosts per refill query
_DUE_CHUNK = 1000

Entry = tuple[int, int, int, Request, bytes]
"""(negated priority, seq, row id, request, fingerprint): a request held in memory."""


def _touch(path: Path) -> None:
    with path.open("ab"):
        pass


def _rank(row: Any) -> tuple[int, int]:
    return (-row[2], row[3])


@dataclass(slots=True)
class _Window:
    """The best pending requests of one host; ``outside`` more wait in the database."""

    items: list[Entry] = field(default_factory=list)  # best first
    outside: int = 0
    head: HeadKey | None = None  # the host's best key while items is empty and outside > 0


class SqliteFrontier:
    """Frontier stored in an SQLite file: survives restarts, holds a bounded window in memory.

    ``spider`` resolves stored callbacks by name (see :mod:`crawler.frontier.codec`).
    ``window``: requests kept in memory per host; ``max_loaded``: soft cap on all of
    them; ``flush_ops`` / ``flush_interval_s``: when buffered writes are committed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        policy: PolitenessPolicy | None = None,
        clock: Clock | None = None,
        *,
        spider: object | None = None,
        window: int = 16,
        max_loaded: int = 20_000,
        flush_ops: int = 256,
        flush_interval_s: float = 1.0,
        busy_timeout_s: float = 0.2,
    ) -> None:
        self.path = Path(path)
        self.policy = policy or PolitenessPolicy()
        self.clock: Clock = clock or MonotonicClock()
        self._codec = RequestCodec(spider)
        self._window_size = max(1, window)
        self._low = self._window_size // 2
        self._max_loaded = max_loaded
        self._flush_ops = flush_ops
        self._flush_interval_s = flush_interval_s
        self._busy_timeout_s = busy_timeout_s
        self._recent_max = 32_768
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._flush_event = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._flush_timer: TimerHandle | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.readiness = HostReadiness(self.policy, self.clock)
        self._windows: dict[str, _Window] = {}
        self._warm: dict[str, None] = {}  # hosts with requests in memory, least recently used first
        self._needs_refill: set[str] = set()
        self._loaded = 0
        self._inserts: list[tuple[Any, ...]] = []
        self._updates: list[tuple[str, tuple[Any, ...]]] = []  # (statement, parameters)
        # DONE/FAILED marks: written only by a full flush (flush(), the interval, a full
        # buffer, close()), never by the partial flush a refill needs, so a caller that
        # checkpoints its own output first (the engine) decides when "done" becomes durable.
        self._finals: list[tuple[str, tuple[Any, ...]]] = []
        self._seeded = False
        self._unflushed: set[bytes] = set()  # fingerprints of rows in _inserts
        # Rows whose change away from PENDING is not written yet (row id -> host), and how many
        # per host: a refill query still reads them as PENDING and skips them.
        self._dirty: dict[int, str] = {}
        self._dirty_hosts: dict[str, int] = {}
        self._recent: dict[bytes, None] = {}  # fingerprints known to be stored (a bounded cache)
        self._leases: dict[int, tuple[Lease, int]] = {}  # id(lease) -> (lease, row id)
        self._next_id = 1
        self._pending = self._in_flight = self._done = self._failed = self._delayed = 0
        self._delayed_at = float("inf")  # earliest ready_at of a DELAYED row
        self._unflushed_delay = float("inf")  # earliest ready_at among buffered retries
        self._refilling = self._promoting = self._stopped = False

    # -- open / close -------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the state file, lock it and re-queue what was in flight."""
        if self._db is not None:
            return
        self._reset_state()
        db = await self._connect()
        try:
            await self._load(db)
        except BaseException:
            await db.close()
            raise
        self._db = db
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"flush {self.path.name}")

    async def _connect(self) -> aiosqlite.Connection:
        where = str(self.path)
        try:
            # Create the file first: a path sqlite cannot open would leave aiosqlite's thread
            # finishing after the caller's event loop is gone; this also gives the OS's reason.
            await asyncio.to_thread(_touch, self.path)
        except OSError as exc:
            raise ConfigError(f"cannot open crawl state {where}: {exc.strerror or exc}") from None
        try:
            db = await aiosqlite.connect(where, timeout=self._busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open crawl state {where}: {exc}") from None
        try:
            await db.execute("PRAGMA locking_mode = EXCLUSIVE")
            await db.execute("BEGIN EXCLUSIVE")  # take the lock now; held until close
            (app_id,) = await self._one(db, "PRAGMA application_id")
            (version,) = await self._one(db, "PRAGMA user_version")
            rows = await db.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
            await db.execute("COMMIT")
            self._check(app_id, version, {name for (name,) in rows})
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            await db.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
            if app_id == 0:
                await db.executescript(_SCHEMA)
        except BaseException as exc:
            await db.close()
            if isinstance(exc, sqlite3.Error):
                raise self._open_error(exc) from None
            raise
        return db

    def _check(self, app_id: int, version: int, tables: set[str]) -> None:
        where = str(self.path)
        if app_id == 0 and not tables:
            return  # a new (or empty) file: ours to create
        if app_id != APPLICATION_ID:
            what = f"application_id {app_id:#010x}" if app_id else f"tables {sorted(tables)[:5]}"
            raise ConfigError(
                f"{where} is an SQLite database of another application ({what}), not a crawl"
                " state file; choose another state path"
            )
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"crawl state {where} has schema version {version}, newer than this crawler"
                f" understands ({SCHEMA_VERSION}): upgrade crawler, or choose another state path"
            )
        if version < SCHEMA_VERSION or not {"meta", "requests"} <= tables:
            raise ConfigError(
                f"crawl state {where} has schema version {version} and tables {sorted(tables)},"
                f" expected version {SCHEMA_VERSION}: it cannot be resumed; choose another path"
            )

    def _open_error(self, exc: sqlite3.Error) -> ConfigError:
        where = str(self.path)
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return ConfigError(
                f"crawl state {where} is in use by another crawl (the file is locked);"
                " wait for it to finish, or choose another state path"
            )
        if code == sqlite3.SQLITE_NOTADB:
            return ConfigError(
                f"{where} is not a crawl state file (not an SQLite database);"
                " choose another state path"
            )
        return ConfigError(f"cannot open crawl state {where}: {exc}")

    async def _load(self, db: aiosqlite.Connection) -> None:
        by_state: dict[int, int] = {}
        top = 0
        for state, count, max_seq, max_id in await db.execute_fetchall(
            "SELECT state, COUNT(*), MAX(seq), MAX(id) FROM requests GROUP BY state"
        ):
            by_state[state] = count
            top = max(top, max_seq, max_id)
        self._next_id = top + 1
        self._seeded = bool(await db.execute_fetchall("SELECT 1 FROM meta WHERE key = 'seeded'"))
        if by_state.get(LEASED) or by_state.get(DELAYED):
            await db.execute("UPDATE requests SET state = 0, ready_at = 0 WHERE state IN (1, 4)")
        self._pending = (
            by_state.get(PENDING, 0) + by_state.get(LEASED, 0) + by_state.get(DELAYED, 0)
        )
        self._done = by_state.get(DONE, 0)
        self._failed = by_state.get(FAILED, 0)
        for host, count, priority, seq in await db.execute_fetchall(_HOSTS):
            head = (-priority, seq)
            self._windows[host] = _Window([], count, head)  # cold: loaded when first picked
            self.readiness.set_head(host, head)

    async def close(self) -> None:
        """Stop, write everything buffered and release the file."""
        self.stop()
        db = self._db
        if db is None:
            return
        for timer in (self._flush_timer, self._timer):
            if timer is not None:
                timer.cancel()
        self._flush_timer = self._timer = None
        self._timer_at = None
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        try:
            await self.flush()
        finally:
            self._db = None
            await db.close()

    async def reset(self) -> None:
        """Forget every request and fingerprint (``--restart``); opens the file if needed."""
        db = self._db
        if db is None:
            await self.open()
            try:
                await self.reset()
            finally:
                await self.close()
            return
        async with self._lock:
            try:
                await db.execute("BEGIN")
                await db.execute("DELETE FROM requests")
                await db.execute("DELETE FROM meta WHERE key = 'seeded'")
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise self._error(exc) from None
            stopped = self._stopped
            self._reset_state()
            self._stopped = stopped

    # -- the Frontier protocol --------------------------------------------------------

    async def push(self, requests: Sequence[Request]) -> list[bool]:
        """Queue new requests; duplicates (by fingerprint) are refused unless ``dont_filter``."""
        if not requests:
            return []
        fps = [fingerprint(request) for request in requests]
        async with self._lock:
            self._require_open()
            unflushed, recent = self._unflushed, self._recent
            unknown = [fp for fp in dict.fromkeys(fps) if fp not in unflushed and fp not in recent]
            stored = await self._existing(unknown)
            plan: list[tuple[Request, bytes, bytes, bytes] | None] = []
            batch: set[bytes] = set()
            for request, fp in zip(requests, fps, strict=True):
                known = fp in batch or fp in unflushed or fp in recent or fp in stored
                if known and not request.dont_filter:
                    plan.append(None)
                    continue
                batch.add(fp)
                key = fp + os.urandom(8) if known else fp
                plan.append((request, fp, key, self._codec.encode(request)))
            # From here on nothing awaits: the batch is applied whole or not at all.
            self._remember(stored)
            self._remember(batch)
            for step in plan:
                if step is None:
                    continue
                request, fp, key, data = step
                row_id = self._next_id
                self._next_id += 1
                host = request.host
                self._inserts.append((row_id, key, host, request.priority, row_id, PENDING, data))
                unflushed.add(fp)
                self._pending += 1
                self._place(host, (-request.priority, row_id, row_id, request, fp))
            self._evict()
            self._arm_flush()
            if self._buffered() >= self._flush_ops:
                await self._flush_locked(full=True)
        self._wake(len(requests))
        return [step is not None for step in plan]

    async def add_seen(self, fingerprint: bytes) -> bool:
        """Record a fingerprint; True if it was not seen before."""
        async with self._lock:
            self._require_open()
            if fingerprint in self._unflushed or fingerprint in self._recent:
                return False
            if await self._existing([fingerprint]):
                self._remember((fingerprint,))
                return False
            row_id = self._next_id
            self._next_id += 1
            self._inserts.append((row_id, fingerprint, "", 0, row_id, SEEN, None))
            self._unflushed.add(fingerprint)
            self._remember((fingerprint,))
            self._arm_flush()
            if self._buffered() >= self._flush_ops:
                await self._flush_locked(full=True)
            return True

    async def lease(self) -> Lease | None:
        """Wait until a request's host is ready and hand it out; None when exhausted."""
        while True:
            if self._stopped or self._db is None:
                return None
            if self._needs_refill and not self._refilling:
                await self._refill_pending()
                continue
            if self._delayed and not self._promoting and self._delayed_at <= self.clock.now():
                await self._promote_due()
                continue
            host = self.readiness.pop_ready()
            if host is not None:
                window = self._windows[host]
                if not window.items:  # a cold host: load its best requests first
                    try:
                        async with self._lock:
                            await self._flush_locked(full=False)
                            await self._refill((host,))
                            self._evict(keep=host)
                    except BaseException:
                        self.readiness.finished(host)
                        raise
                    if not window.items or self._stopped:
                        self.readiness.finished(host)
                        continue
                return self._take(host, window)
            if not (self._pending or self._in_flight or self._delayed):
                self._wake(len(self._waiters))  # exhausted: release everybody
                return None
            await self._wait()

    async def ack(self, lease: Lease) -> None:
        """The request was handled."""
        row_id = self._release(lease)
        if row_id is not None:
            self._done += 1
            self._change(row_id, lease.host, _SET_STATE, (DONE, row_id), final=True)
            await self._flush_if_full()

    async def fail(self, lease: Lease, reason: str) -> None:
        """The request finally failed for ``reason``."""
        row_id = self._release(lease)
        if row_id is not None:
            self._failed += 1
            self._change(row_id, lease.host, _SET_FAILED, (reason, row_id), final=True)
            await self._flush_if_full()

    async def retry(self, lease: Lease, delay_s: float) -> None:
        """Re-queue the request (as it is now, meta included) once ``delay_s`` seconds passed."""
        try:
            data = self._codec.encode(lease.request)
        except CrawlerError:
            await self.fail(lease, "unstorable")
            raise
        row_id = self._release(lease)
        if row_id is not None:
            due = self.clock.now() + delay_s
            seq = self._next_id
            self._next_id += 1
            self._delayed += 1
            self._delayed_at = min(self._delayed_at, due)
            self._unflushed_delay = min(self._unflushed_delay, due)
            self._change(row_id, lease.host, _SET_DELAYED, (due, seq, data, row_id))
            await self._flush_if_full()

    async def set_host_delay(self, host: str, delay_s: float | None) -> None:
        """Override the delay between requests to ``host`` (None restores the policy's)."""
        self.readiness.set_delay(host, delay_s)

    async def hold_host(self, host: str, delay_s: float) -> None:
        """Start no request to ``host`` for ``delay_s`` seconds (not persisted)."""
        self.readiness.delay_host(host, self.clock.now() + delay_s)

    async def claim_seed(self) -> bool:
        """True until a ``seed_done`` was written: a crawl killed while seeding seeds again
        (the start requests it did store are refused as duplicates)."""
        return not self._seeded

    async def seed_done(self) -> None:
        """Record that the start requests are pushed (written with them, by the next flush)."""
        self._seeded = True
        self._updates.append((_SEEDED, ()))
        self._arm_flush()

    def stop(self) -> None:
        """Make every current and future ``lease`` return None."""
        self._stopped = True
        self._wake(len(self._waiters))

    async def counts(self) -> FrontierCounts:
        """Queued / in flight / done / failed (kept in memory, exact)."""
        return FrontierCounts(
            self._pending + self._delayed, self._in_flight, self._done, self._failed
        )

    # -- beyond the protocol ------------------------------------------------------------

    async def flush(self) -> None:
        """Write every buffered push and state change (DONE/FAILED included) in one transaction."""
        async with self._lock:
            await self._flush_locked(full=True)

    async def is_finished(self) -> bool:
        """True if the state holds a finished crawl: nothing queued or in flight, some done."""
        idle = not (self._pending or self._in_flight or self._delayed)
        return idle and self._done + self._failed > 0

    def loaded_count(self) -> int:
        """How many requests are held in memory now (the host windows)."""
        return self._loaded

    # -- windows ------------------------------------------------------------------------

    def _place(self, host: str, entry: Entry) -> None:
        """Add a new pending request to its host: into the window, or left in the database."""
        window = self._windows.get(host)
        if window is None:
            window = self._windows[host] = _Window()
        items = window.items
        key = (entry[0], entry[1])
        if items:
            worst = items[-1]
            fits = key < (worst[0], worst[1]) or (
                not window.outside and len(items) < self._window_size
            )
        else:
            fits = not window.outside or (window.head is not None and key < window.head)
        if not fits:
            window.outside += 1
            return
        insort(items, entry)
        self._loaded += 1
        window.head = None
        if len(items) > self._window_size:
            items.pop()
            self._loaded -= 1
            window.outside += 1
        if items[0] is entry:
            self.readiness.set_head(host, key)
        self._warm.pop(host, None)
        self._warm[host] = None

    def _take(self, host: str, window: _Window) -> Lease:
        _, _, row_id, request, fp = window.items.pop(0)
        self._loaded -= 1
        items = window.items
        if items:
            self.readiness.set_head(host, (items[0][0], items[0][1]))
            if window.outside and len(items) <= self._low:
                self._needs_refill.add(host)
        else:
            self.readiness.set_head(host, None)
            self._warm.pop(host, None)
            if window.outside:
                self._needs_refill.add(host)  # unknown head until refilled
            else:
                del self._windows[host]
        self._pending -= 1
        self._in_flight += 1
        lease = Lease(request, host, fp)
        self._leases[id(lease)] = (lease, row_id)
        self._change(row_id, host, _SET_STATE, (LEASED, row_id))
        if self._waiters and (self._needs_refill or self.readiness.has_ready()):
            self._wake(1)  # more is ready (or a refill is due): let the next idle worker take it
        return lease

    async def _refill_pending(self) -> None:
        self._refilling = True
        try:
            async with self._lock:
                await self._flush_locked(full=False)
                hosts = list(self._needs_refill)
                for start in range(0, len(hosts), _REFILL_CHUNK):
                    chunk = [
                        h for h in hosts[start : start + _REFILL_CHUNK] if h in self._needs_refill
                    ]
                    await self._refill(chunk)  # (a host evicted meanwhile loads when picked)
                    self._needs_refill.difference_update(chunk)
                    self._evict()
        finally:
            self._refilling = False
        self._wake(1)  # let a waiter re-check: more hosts may need a refill, or none remain

    async def _refill(self, hosts: Sequence[str]) -> None:
        """Load each host's next best pending requests after its window, in one query.

        Called with the lock held, right after a flush, so every pending row is readable.
        """
        plans: list[tuple[str, _Window, int, int]] = []
        parts: list[str] = []
        params: list[Any] = []
        for host in hosts:
            window = self._windows.get(host)
            if window is None or not window.outside:
                continue
            want = self._window_size - len(window.items)
            if want <= 0:
                continue
            # Rows leased/acked since the flush still read as PENDING: ask for extra, skip them.
            limit = want + self._dirty_hosts.get(host, 0)
            if window.items:
                neg, seq = window.items[-1][:2]
                parts.append(_AFTER)
                params += (host, -neg, -neg, seq, limit)
            else:
                parts.append(_BEST)
                params += (host, limit)
            plans.append((host, window, want, limit))
        if not plans:
            return
        rows_of: dict[str, list[Any]] = {host: [] for host, *_ in plans}
        for row in await self._query(" UNION ALL ".join(parts), params):
            rows_of[row[5]].append(row)
        for host, window, want, limit in plans:
            if self._windows.get(host) is window:
                self._merge(host, window, want, limit, sorted(rows_of[host], key=_rank))

    def _merge(self, host: str, window: _Window, want: int, limit: int, rows: list[Any]) -> None:
        """Append refilled rows (all ranked after the window, best first) to the window."""
        placed = consumed = kept = 0
        for row_id, key, priority, seq, data, _ in rows:
            if row_id in self._dirty:
                continue
            kept += 1
            if placed >= want:
                continue
            consumed += 1
            request = self._decode(row_id, host, data)
            if request is None:
                self._pending -= 1
                continue
            fp = fingerprint(request) if request.dont_filter else key
            window.items.append((-priority, seq, row_id, request, fp))
            placed += 1
        window.outside -= consumed
        self._loaded += placed
        if len(rows) < limit and window.outside != kept - consumed:
            # The database has fewer (or more) rows than counted: trust the database.
            diff = window.outside - (kept - consumed)
            logger.warning("frontier %s: host %s queue count off by %d", self.path, host, diff)
            window.outside -= diff
            self._pending -= diff
        if window.items:
            window.head = None
            self.readiness.set_head(host, (window.items[0][0], window.items[0][1]))
            self._warm.pop(host, None)
            self._warm[host] = None
            self._wake(placed)
        elif not window.outside:
            del self._windows[host]
            self.readiness.set_head(host, None)

    def _evict(self, keep: str | None = None) -> None:
        """Over ``max_loaded``: drop the windows of the least recently used hosts."""
        if self._loaded <= self._max_loaded:
            return
        target = self._max_loaded * 3 // 4
        victims = []
        excess = self._loaded - target
        for host in self._warm:
            if excess <= 0:
                break
            if host != keep:
                victims.append(host)
                excess -= len(self._windows[host].items)
        for host in victims:
            window = self._windows[host]
            items = window.items
            window.head = (items[0][0], items[0][1])
            window.outside += len(items)
            self._loaded -= len(items)
            items.clear()
            del self._warm[host]
            self._needs_refill.discard(host)

    async def _promote_due(self) -> None:
        """Move due retries (DELAYED rows) back into their hosts' queues."""
        self._promoting = True
        try:
            async with self._lock:
                await self._flush_locked(full=False)
                now = self.clock.now()
                rows = await self._query(_DUE, (now, _DUE_CHUNK))
                if len(rows) < _DUE_CHUNK:
                    (next_at,) = (
                        await self._query(
                            "SELECT MIN(ready_at) FROM requests WHERE state = 4 AND ready_at > ?",
                            (now,),
                        )
                    )[0]
                else:
                    next_at = now
                for row_id, key, priority, _, data, host in rows:
                    self._delayed -= 1
                    seq = self._next_id  # back in the queue now: behind what was pushed meanwhile
                    self._next_id += 1
                    self._updates.append((_SET_PENDING, (seq, row_id)))
                    request = self._decode(row_id, host, data)
                    if request is None:
                        continue
                    self._pending += 1
                    fp = fingerprint(request) if request.dont_filter else key
                    self._place(host, (-priority, seq, row_id, request, fp))
                self._delayed_at = min(
                    self._unflushed_delay, float("inf") if next_at is None else next_at
                )
                if self._delayed and self._delayed_at == float("inf"):
                    # Counted retries the database does not have: trust the database.
                    logger.warning("frontier %s: %d retries lost", self.path, self._delayed)
                    self._delayed = 0
                if not self._delayed:
                    self._delayed_at = float("inf")
                self._evict()
                self._arm_flush()
        finally:
            self._promoting = False
        self._wake(max(1, len(rows)))

    def _decode(self, row_id: int, host: str, data: bytes) -> Request | None:
        """The stored request, or None (and the row marked FAILED) if it cannot be rebuilt."""
        try:
            return self._codec.decode(data)
        except (CrawlerError, ValueError, TypeError, KeyError) as exc:
            logger.error("frontier %s: dropping stored request %d: %s", self.path, row_id, exc)
            self._failed += 1
            self._change(row_id, host, _SET_FAILED, ("undecodable", row_id), final=True)
            return None

    # -- leases and waiting ---------------------------------------------------------------

    def _release(self, lease: Lease) -> int | None:
        held = self._leases.pop(id(lease), None)
        if held is None or held[0] is not lease:
            logger.warning(
                "frontier %s: %s was not leased (acked twice?)", self.path, lease.request
            )
            return None
        self._in_flight -= 1
        self.readiness.finished(lease.host)
        busy = self._pending or self._delayed or self._in_flight
        self._wake(1 if busy else len(self._waiters))
        return held[1]

    def _wake(self, count: int) -> None:
        waiters = self._waiters
        while count > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    async def _wait(self) -> None:
        wake_at = self.readiness.next_time()
        if self._delayed and (wake_at is None or self._delayed_at < wake_at):
            wake_at = self._delayed_at
        if wake_at is not None and (self._timer_at is None or wake_at < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wake_at
            self._timer = self.clock.call_at(wake_at, self._on_timer)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._wake(1)

    # -- the database -------------------------------------------------------------------

    def _change(
        self, row_id: int, host: str, sql: str, params: tuple[Any, ...], final: bool = False
    ) -> None:
        (self._finals if final else self._updates).append((sql, params))
        if row_id not in self._dirty:
            self._dirty[row_id] = host
            self._dirty_hosts[host] = self._dirty_hosts.get(host, 0) + 1
        self._arm_flush()

    def _remember(self, fps: Iterable[bytes]) -> None:
        recent = self._recent
        recent.update(dict.fromkeys(fps))
        if len(recent) > self._recent_max:
            self._recent = dict.fromkeys(list(recent)[-(self._recent_max // 2) :])

    def _arm_flush(self) -> None:
        if self._flush_timer is None and self._db is not None:
            when = self.clock.now() + self._flush_interval_s
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

    def _buffered(self) -> int:
        return len(self._inserts) + len(self._updates) + len(self._finals)

    async def _flush_if_full(self) -> None:
        if self._buffered() >= self._flush_ops:
            await self.flush()

    async def _flush_locked(self, full: bool) -> None:
        """Write the buffers in one transaction; a partial flush keeps DONE/FAILED marks."""
        db = self._db
        if db is None or not (self._inserts or self._updates or (full and self._finals)):
            return
        inserts, updates, finals = self._inserts, self._updates, self._finals if full else []
        unflushed, dirty = self._unflushed, self._dirty
        self._inserts, self._updates, self._unflushed = [], [], set()
        if full:
            self._finals = []
        # Every row leased (or retried) is now written as such: none reads as PENDING.
        self._dirty, self._dirty_hosts = {}, {}
        self._unflushed_delay = float("inf")
        try:
            await db.execute("BEGIN")
            if inserts:
                await db.executemany(_INSERT, inserts)
            # In order, runs of one statement batched. DONE/FAILED come last: they end a row.
            for sql, run in groupby((*updates, *finals), key=itemgetter(0)):
                await db.executemany(sql, [params for _, params in run])
            await db.execute("COMMIT")
        except BaseException as exc:
            # Keep the changes for the next flush (re-applying them is harmless: rows are
            # inserted with OR REPLACE, updates are replayed in order).
            self._inserts[:0] = inserts
            self._updates[:0] = updates
            if full:
                self._finals[:0] = finals
            self._unflushed |= unflushed
            for row_id, host in dirty.items():
                if row_id not in self._dirty:
                    self._dirty[row_id] = host
                    self._dirty_hosts[host] = self._dirty_hosts.get(host, 0) + 1
            try:
                await db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # not in a transaction (it never began, or the COMMIT went through)
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc) from None
            raise

    async def _existing(self, fps: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(fps), _IN_CHUNK):
            chunk = fps[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT fp FROM requests WHERE fp IN ({marks})"
            found.update(fp for (fp,) in await self._query(sql, chunk))
        return found

    async def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        db = self._require_open()
        try:
            return list(await db.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    @staticmethod
    async def _one(db: aiosqlite.Connection, sql: str) -> Any:
        async with db.execute(sql) as cursor:
            return await cursor.fetchone()

    def _require_open(self) -> aiosqlite.Connection:
        if self._db is None:
            raise CrawlerError(f"the frontier {self.path} is not open: await frontier.open() first")
        return self._db

    def _error(self, exc: sqlite3.Error) -> CrawlerError:
        return CrawlerError(
            f"crawl state {self.path}: {exc} (is the disk full or the file damaged?)"
        )
