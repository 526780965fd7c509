"""The run history's file format and its rows: ``history.db``'s schema and :class:`RunRecord`.

:mod:`crawler.jobs.history` reads and writes them; the job locks stored in the same
file are described in :mod:`crawler.jobs.locks`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..storage import DatabaseKind

__all__ = ["HISTORY_FILE", "RUN_COLUMNS", "RunRecord", "iso", "new_run_id", "parse_iso"]

APPLICATION_ID = 0x43524C48  # "CRLH": crawler run history
SCHEMA_VERSION = 1

HISTORY_FILE = DatabaseKind(
    noun="job history",
    application_id=APPLICATION_ID,
    version=SCHEMA_VERSION,
    schema=f"""BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    spider TEXT NOT NULL,
    arguments TEXT NOT NULL,
    trigger TEXT NOT NULL,
    scheduled_for TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    finish_reason TEXT,
    exit_code INTEGER,
    stats TEXT,
    items INTEGER,
    item_counts TEXT,
    outputs TEXT,
    checks TEXT,
    error TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, started_at);
CREATE TABLE IF NOT EXISTS locks (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    run_id TEXT,
    acquired_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;""",
    tables=frozenset(("runs", "locks")),
    remedy="choose another --state-dir",
)

RUN_COLUMNS = (
    "run_id, job, spider, arguments, trigger, scheduled_for, started_at, ended_at,"
    " finish_reason, exit_code, stats, items, item_counts, outputs, checks, error, host, pid"
)


def iso(moment: datetime) -> str:
    """UTC, fixed width: ISO strings of this form sort like the times they name."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: str | None) -> datetime | None:
    """The datetime an :func:`iso` string names (None stays None)."""
    return datetime.fromisoformat(text) if text else None


def new_run_id(now: datetime) -> str:
    """A sortable, file-name-safe run id: ``20240102T030405Z-1a2b3c``."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass(slots=True)
class RunRecord:
    """One row of the history."""

    run_id: str
    job: str
    spider: str
    arguments: dict[str, Any]
    trigger: str
    scheduled_for: datetime | None
    started_at: datetime
    ended_at: datetime | None = None
    finish_reason: str | None = None
    exit_code: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    items: int | None = None
    item_counts: dict[str, int] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    host: str = ""
    pid: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RunRecord:
        """A record from a ``SELECT {RUN_COLUMNS}`` row."""
        (run_id, job, spider, arguments, trigger, scheduled_for, started_at, ended_at,
         finish_reason, exit_code, stats, items, item_counts, outputs, checks, error, host,
         pid) = row  # fmt: skip
        started = parse_iso(started_at)
        assert started is not None
        return cls(
            run_id=run_id,
            job=job,
            spider=spider,
            arguments=orjson.loads(arguments),
            trigger=trigger,
            scheduled_for=parse_iso(scheduled_for),
            started_at=started,
            ended_at=parse_iso(ended_at),
            finish_reason=finish_reason,
            exit_code=exit_code,
            stats=orjson.loads(stats) if stats else {},
            items=items,
            item_counts=orjson.loads(item_counts) if item_counts else {},
            outputs=orjson.loads(outputs) if outputs else [],
            checks=orjson.loads(checks) if checks else [],
            error=error,
            host=host,
            pid=pid,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601)."""
        data: dict[str, Any] = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__  # type: ignore[attr-defined]
        }
        for name in ("scheduled_for", "started_at", "ended_at"):
            value = data[name]
            data[name] = value.isoformat() if value is not None else None
        return data
