"""Retries of the SQLite frontier waiting out their delay in the file (DELAYED rows).

A retried request's row becomes DELAYED with its due time (``ready_at``) and its
request as it is now; once due, :meth:`DelayedRetries.promote` turns it PENDING
again, behind what was pushed meanwhile, and hands it to the frontier to queue.
How many are delayed and when the first is due are kept in memory, so an idle
frontier knows when to wake without a query.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...loglines import get_logger
from . import schema
from .file import StateFile

__all__ = ["DelayedRetries", "Requeue"]

logger = get_logger("crawler.frontier")

Requeue = Callable[[int, bytes, int, int, bytes, str], None]
"""(row id, key, priority, new seq, data, host): queue a promoted row again."""

_NEVER = float("inf")


class DelayedRetries:
    """The DELAYED rows of one state file: how many, and when the first is due."""

    def __init__(self, file: StateFile, path: Path) -> None:
        self.file = file
        self.path = path
        self.count = 0
        self.due_at = _NEVER  # earliest ready_at of a DELAYED row
        self.promoting = False

    def add(self, row_id: int, host: str, due: float, seq: int, data: bytes) -> None:
        """Buffer the change of leased row ``row_id`` to DELAYED until clock time ``due``."""
        self.count += 1
        self.due_at = min(self.due_at, due)
        self.file.unflushed_delay = min(self.file.unflushed_delay, due)
        self.file.change(row_id, host, schema.SET_DELAYED, (due, seq, data, row_id))

    def is_due(self, now: float) -> bool:
        """True if a retry is due at ``now`` and no promotion runs."""
        return bool(self.count) and not self.promoting and self.due_at <= now

    async def promote(self, now: float, new_seq: Callable[[], int], requeue: Requeue) -> int:
        """Make the retries due at ``now`` PENDING again and ``requeue`` each; how many.

        Call with the file's lock held, after a partial write (so every DELAYED row
        is readable).
        """
        file = self.file
        rows, next_at = await file.due_retries(now)
        for row_id, key, priority, _, data, host in rows:
            self.count -= 1
            seq = new_seq()  # back in the queue now: behind what was pushed meanwhile
            file.update(schema.SET_PENDING, (seq, row_id))
            requeue(row_id, key, priority, seq, data, host)
        self.due_at = min(file.unflushed_delay, _NEVER if next_at is None else next_at)
        if self.count and self.due_at == _NEVER:
            # Counted retries the database does not have: trust the database.
            logger.warning("frontier %s: %d retries lost", self.path, self.count)
            self.count = 0
        if not self.count:
            self.due_at = _NEVER
        return len(rows)
