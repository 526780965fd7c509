"""The run history (``<jobs dir>/history.db``): every run of every job, and the job locks.

One SQLite file (aiosqlite, WAL) shared by ``crawl jobs run``, every
``crawl scheduler`` and cron/systemd invocations of the project.

The lock of a job is a row in ``locks`` (holder token, pid, host name,
heartbeat), taken in a ``BEGIN IMMEDIATE`` transaction together with the new
``runs`` row, so two processes can never both start the job. A lock is stale,
and is taken over, when its heartbeat is older than ``stale_s`` or its pid is
dead on this host; the run it belonged to is then marked ``crashed``. A claim
for a due time (``scheduled_for``) also fails when a run at or after that due
time is already recorded, so two schedulers run each due time once.

The file format and :class:`RunRecord` live in :mod:`crawler.jobs.records`, the
lock values in :mod:`crawler.jobs.locks`; their public names are importable from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from ..storage import open_database
from .locks import Claim, Holder, LockInfo, stale_reason
from .records import HISTORY_FILE, RUN_COLUMNS, RunRecord, iso, new_run_id, parse_iso
from .scheduler import utc_now

__all__ = ["HISTORY_FILE", "Claim", "Holder", "LockInfo", "RunHistory", "RunRecord", "new_run_id"]


class RunHistory:
    """Run history and job locks in one SQLite file; use ``async with RunHistory(path)``.

    ``now`` is the wall clock (injectable); ``stale_s`` is how old a lock's
    heartbeat may get before the lock counts as abandoned.
    """

    def __init__(
        self,
        path: Path,
        *,
        now: Callable[[], datetime] = utc_now,
        stale_s: float = 60.0,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = path
        self.now = now
        self.stale_s = stale_s
        self.busy_timeout_s = busy_timeout_s
        self._db: aiosqlite.Connection | None = None
        # One connection serves every job of a process: one transaction at a time on it.
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> RunHistory:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open (or create) the history file, refusing foreign or newer files."""
        self._db = await open_database(
            self.path, HISTORY_FILE, busy_timeout_s=self.busy_timeout_s, make_parents=True
        )

    async def close(self) -> None:
        """Close the file."""
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("RunHistory is not open: use `async with RunHistory(path)`")
        return self._db

    # -- locks ---------------------------------------------------------------------------

    async def lock_info(self, job: str) -> LockInfo | None:
        """The lock row of ``job`` (held or abandoned), if any."""
        rows = list(
            await self.db.execute_fetchall(
                "SELECT job, holder, pid, host, run_id, acquired_at, heartbeat_at"
                " FROM locks WHERE job=?",
                (job,),
            )
        )
        return LockInfo(*rows[0]) if rows else None

    async def claim(
        self,
        job: str,
        spider: str,
        arguments: Mapping[str, Any],
        holder: Holder,
        *,
        scheduled_for: datetime | None = None,
    ) -> Claim:
        """Take ``job``'s lock and record a new run, atomically.

        ``scheduled_for`` is the due time of a scheduled run (None: a manual run,
        recorded as scheduled at its start). Fails (``run_id`` None) if a live
        holder has the lock, or if the due time has already been run.
        """
        async with self._lock:
            return await self._claim(job, spider, arguments, holder, scheduled_for)

    async def _claim(
        self,
        job: str,
        spider: str,
        arguments: Mapping[str, Any],
        holder: Holder,
        scheduled_for: datetime | None,
    ) -> Claim:
        now = self.now()
        now_s = now.timestamp()
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            lock = await self.lock_info(job)
            stolen = None
            if lock is not None:
                why = stale_reason(lock, holder, now_s, self.stale_s)
                if why is None:
                    await db.execute("ROLLBACK")
                    return Claim(None, f"job {job!r} is already running ({lock.describe()})")
                stolen = lock
                if lock.run_id:
                    await db.execute(
                        "UPDATE runs SET ended_at=?, finish_reason='crashed', error=?"
                        " WHERE run_id=? AND ended_at IS NULL",
                        (iso(now), f"lock taken over: {why}", lock.run_id),
                    )
            if scheduled_for is not None:
                done = await db.execute_fetchall(
                    "SELECT run_id FROM runs WHERE job=? AND scheduled_for>=? LIMIT 1",
                    (job, iso(scheduled_for)),
                )
                if list(done):
                    await db.execute("ROLLBACK")
                    due = scheduled_for.isoformat(timespec="seconds")
                    return Claim(None, f"job {job!r} already ran for {due}")
            run_id = new_run_id(now)
            await db.execute(
                "INSERT INTO runs (run_id, job, spider, arguments, trigger, scheduled_for,"
                " started_at, host, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    job,
                    spider,
                    orjson.dumps(dict(arguments), default=str).decode(),
                    "manual" if scheduled_for is None else "schedule",
                    iso(scheduled_for or now),
                    iso(now),
                    holder.host,
                    holder.pid,
                ),
            )
            await db.execute(
                "INSERT INTO locks (job, holder, pid, host, run_id, acquired_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(job) DO UPDATE SET"
                " holder=excluded.holder, pid=excluded.pid, host=excluded.host,"
                " run_id=excluded.run_id, acquired_at=excluded.acquired_at,"
                " heartbeat_at=excluded.heartbeat_at",
                (job, holder.token, holder.pid, holder.host, run_id, now_s, now_s),
            )
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        return Claim(run_id, stolen_from=stolen)

    async def heartbeat(self, job: str, holder: Holder) -> bool:
        """Refresh the lock; False if it is no longer ours (it was taken over)."""
        async with self._lock:
            cursor = await self.db.execute(
                "UPDATE locks SET heartbeat_at=? WHERE job=? AND holder=?",
                (self.now().timestamp(), job, holder.token),
            )
            return cursor.rowcount == 1

    async def release(self, job: str, holder: Holder) -> None:
        """Drop the lock if we still hold it."""
        async with self._lock:
            await self.db.execute("DELETE FROM locks WHERE job=? AND holder=?", (job, holder.token))

    # -- runs ----------------------------------------------------------------------------

    async def finish(self, record: RunRecord) -> None:
        """Store a run's outcome (end time, reason, exit code, stats, counts, outputs, checks)."""
        async with self._lock:
            await self._finish(record)

    async def _finish(self, record: RunRecord) -> None:
        await self.db.execute(
            "UPDATE runs SET spider=?, ended_at=?, finish_reason=?, exit_code=?, stats=?,"
            " items=?, item_counts=?, outputs=?, checks=?, error=? WHERE run_id=?",
            (
                record.spider,
                iso(record.ended_at or self.now()),
                record.finish_reason,
                record.exit_code,
                orjson.dumps(record.stats, default=str).decode(),
                record.items,
                orjson.dumps(record.item_counts).decode(),
                orjson.dumps(record.outputs).decode(),
                orjson.dumps(record.checks, default=str).decode(),
                record.error,
                record.run_id,
            ),
        )

    async def get(self, run_id: str) -> RunRecord | None:
        """One run."""
        rows = list(
            await self.db.execute_fetchall(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id=?", (run_id,)
            )
        )
        return RunRecord.from_row(rows[0]) if rows else None

    async def runs(self, job: str, limit: int = 20) -> list[RunRecord]:
        """The latest ``limit`` runs of ``job``, newest first."""
        rows = await self.db.execute_fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE job=? ORDER BY started_at DESC, run_id DESC"
            " LIMIT ?",
            (job, limit),
        )
        return [RunRecord.from_row(row) for row in rows]

    async def last_run(self, job: str) -> RunRecord | None:
        """The newest run of ``job``."""
        runs = await self.runs(job, 1)
        return runs[0] if runs else None

    async def last_success(self, job: str) -> RunRecord | None:
        """The newest run of ``job`` that exited 0."""
        rows = list(
            await self.db.execute_fetchall(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE job=? AND exit_code=0"
                " ORDER BY started_at DESC, run_id DESC LIMIT 1",
                (job,),
            )
        )
        return RunRecord.from_row(rows[0]) if rows else None

    async def last_scheduled(self, job: str) -> datetime | None:
        """The latest due time run (a manual run counts at its start time)."""
        rows = list(
            await self.db.execute_fetchall(
                "SELECT MAX(scheduled_for) FROM runs WHERE job=?", (job,)
            )
        )
        return parse_iso(rows[0][0]) if rows else None
