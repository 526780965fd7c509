"""The SQLite frontier: durable, resumable, and bounded in memory.

Every request lives in one row of a state file: what the file holds is in
:mod:`.schema`; opening it (locked: a second crawl on the same state fails with
``ConfigError``) and the buffered writes to it are in :mod:`.file`. Each host's
best pending requests are held in memory in a bounded *window* (:mod:`.windows`):
memory is O(max_loaded + hosts), never O(queue). Retries wait in the file
(:mod:`.retries`).

Writes are committed in batches (``flush_ops``, ``flush_interval_s``, ``flush()``,
``close()``). After ``kill -9`` (at-least-once): a request leased and not acked is
fetched again on resume, and so is one acked within the last ``flush_interval_s``
(or ``flush_ops`` changes) before the crash; requests pushed in that window may be
lost. On ``open()`` what was in flight or waiting to be retried is queued again.
Per-host delay overrides and holds are not stored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...clock import Clock, MonotonicClock
from ...fingerprint import fingerprint
from ...loglines import get_logger
from ...request import Request
from ..base import FrontierCounts, Lease, PolitenessPolicy
from ..codec import RequestCodec
from ..domains import HostReadiness
from ..leases import LeaseBook
from ..waiters import LeaseWaiters, LocalPoliteness
from . import schema
from .file import StateFile
from .retries import DelayedRetries
from .windows import HostWindows, Window

__all__ = ["SqliteFrontier"]

logger = get_logger("crawler.frontier")

_REFILL_CHUNK = 100  # hosts per refill query


class SqliteFrontier(LocalPoliteness):
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
        self._max_loaded = max_loaded
        self._file = StateFile(
            self.path,
            self.clock,
            flush_ops=flush_ops,
            flush_interval_s=flush_interval_s,
            busy_timeout_s=busy_timeout_s,
        )
        self._waiters = LeaseWaiters(self.clock)
        self._reset_state()

    def _reset_state(self) -> None:
        self.readiness = HostReadiness(self.policy, self.clock)
        self._windows = HostWindows(self.readiness, self._window_size, self._max_loaded)
        self._file.discard()
        self._seeded = False
        self._leases: LeaseBook[int] = LeaseBook(str(self.path))  # lease -> its row id
        self._retries = DelayedRetries(self._file, self.path)
        self._next_id = 1
        self._pending = self._in_flight = self._done = self._failed = 0
        self._refilling = self._stopped = False

    # -- open / close -------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the state file, lock it and re-queue what was in flight."""
        if self._file.db is not None:
            return
        self._reset_state()
        contents = await self._file.open()
        self._next_id = contents.next_id
        self._seeded = contents.seeded
        self._pending, self._done, self._failed = contents.pending, contents.done, contents.failed
        for host, count, head in contents.hosts:
            self._windows.add_cold(host, count, head)

    async def close(self) -> None:
        """Stop, write everything buffered and release the file."""
        self.stop()
        if self._file.db is None:
            return
        self._waiters.cancel_timer()
        await self._file.close()

    async def reset(self) -> None:
        """Forget every request and fingerprint (``--restart``); opens the file if needed."""
        if self._file.db is None:
            await self.open()
            try:
                await self.reset()
            finally:
                await self.close()
            return
        async with self._file.lock:
            await self._file.clear()
            stopped = self._stopped
            self._reset_state()
            self._stopped = stopped

    # -- the Frontier protocol --------------------------------------------------------

    async def push(self, requests: Sequence[Request]) -> list[bool]:
        """Queue new requests; duplicates (by fingerprint) are refused unless ``dont_filter``."""
        if not requests:
            return []
        fps = [fingerprint(request) for request in requests]
        state = self._file
        async with state.lock:
            state.require_open()
            unflushed, recent = state.unflushed, state.recent
            unknown = [fp for fp in dict.fromkeys(fps) if fp not in unflushed and fp not in recent]
            stored = await state.existing(unknown)
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
            state.remember(stored)
            state.remember(batch)
            for step in plan:
                if step is None:
                    continue
                request, fp, key, data = step
                row_id = self._new_id()
                host = request.host
                state.insert(
                    (row_id, key, host, request.priority, row_id, schema.PENDING, data), fp
                )
                self._pending += 1
                self._windows.place(host, (-request.priority, row_id, row_id, request, fp))
            self._windows.evict()
            state.arm()
            if state.is_full():
                await state.write(full=True)
        self._waiters.wake(len(requests))
        return [step is not None for step in plan]

    async def add_seen(self, fingerprint: bytes) -> bool:
        """Record a fingerprint; True if it was not seen before."""
        state = self._file
        async with state.lock:
            state.require_open()
            if fingerprint in state.unflushed or fingerprint in state.recent:
                return False
            if await state.existing([fingerprint]):
                state.remember((fingerprint,))
                return False
            row_id = self._new_id()
            state.insert((row_id, fingerprint, "", 0, row_id, schema.SEEN, None), fingerprint)
            state.remember((fingerprint,))
            state.arm()
            if state.is_full():
                await state.write(full=True)
            return True

    async def lease(self) -> Lease | None:
        """Wait until a request's host is ready and hand it out; None when exhausted."""
        while True:
            if self._stopped or self._file.db is None:
                return None
            if self._windows.needs_refill and not self._refilling:
                await self._refill_pending()
                continue
            if self._retries.is_due(self.clock.now()):
                await self._promote_due()
                continue
            host = self.readiness.pop_ready()
            if host is not None:
                window = self._windows.by_host[host]
                if not window.items:  # a cold host: load its best requests first
                    try:
                        async with self._file.lock:
                            await self._file.write(full=False)
                            await self._refill((host,))
                            self._windows.evict(keep=host)
                    except BaseException:
                        self.readiness.finished(host)
                        raise
                    if not window.items or self._stopped:
                        self.readiness.finished(host)
                        continue
                return self._take(host, window)
            if not (self._pending or self._in_flight or self._retries.count):
                self._waiters.wake_all()  # exhausted: release everybody
                return None
            await self._wait()

    async def ack(self, lease: Lease) -> None:
        """The request was handled."""
        row_id = self._release(lease, "ack")
        if row_id is not None:
            self._done += 1
            self._file.change(
                row_id, lease.host, schema.SET_STATE, (schema.DONE, row_id), final=True
            )
            await self._file.flush_if_full()

    async def fail(self, lease: Lease, reason: str) -> None:
        """The request finally failed for ``reason``."""
        row_id = self._release(lease, "fail")
        if row_id is not None:
            self._failed += 1
            self._file.change(row_id, lease.host, schema.SET_FAILED, (reason, row_id), final=True)
            await self._file.flush_if_full()

    async def retry(self, lease: Lease, delay_s: float) -> None:
        """Re-queue the request (as it is now, meta included) once ``delay_s`` seconds passed."""
        data = await self._codec.encode_retry(lease, self.fail)
        row_id = self._release(lease, "retry")
        if row_id is not None:
            due = self.clock.now() + delay_s
            self._retries.add(row_id, lease.host, due, self._new_id(), data)
            await self._file.flush_if_full()

    async def claim_seed(self) -> bool:
        """True until a ``seed_done`` was written: a crawl killed while seeding seeds again
        (the start requests it did store are refused as duplicates)."""
        return not self._seeded

    async def seed_done(self) -> None:
        """Record that the start requests are pushed (written with them, by the next flush)."""
        self._seeded = True
        self._file.update(schema.SEEDED, ())
        self._file.arm()

    def stop(self) -> None:
        """Make every current and future ``lease`` return None."""
        self._stopped = True
        self._waiters.wake_all()

    async def counts(self) -> FrontierCounts:
        """Queued / in flight / done / failed (kept in memory, exact)."""
        return FrontierCounts(
            self._pending + self._retries.count, self._in_flight, self._done, self._failed
        )

    # -- beyond the protocol ------------------------------------------------------------

    async def flush(self) -> None:
        """Write every buffered push and state change (DONE/FAILED included) in one transaction."""
        await self._file.flush()

    def set_marks(self, marks: Mapping[str, str]) -> None:
        """Buffer ``marks``; the next ``flush()`` writes them with the DONE marks, atomically."""
        self._file.marks.update(marks)

    async def load_marks(self) -> dict[str, str]:
        """The marks written by the last successful ``flush()`` (empty if none)."""
        async with self._file.lock:
            return await self._file.load_marks()

    async def is_finished(self) -> bool:
        """True if the state holds a finished crawl: nothing queued or in flight, some done."""
        idle = not (self._pending or self._in_flight or self._retries.count)
        return idle and self._done + self._failed > 0

    def loaded_count(self) -> int:
        """How many requests are held in memory now (the host windows)."""
        return self._windows.loaded

    # -- loading the windows --------------------------------------------------------------

    def _take(self, host: str, window: Window) -> Lease:
        _, _, row_id, request, fp = self._windows.take(host, window)
        self._pending -= 1
        self._in_flight += 1
        lease = Lease(request, host, fp)
        self._leases.add(lease, row_id)
        self._file.change(row_id, host, schema.SET_STATE, (schema.LEASED, row_id))
        if self._waiters and (self._windows.needs_refill or self.readiness.has_ready()):
            self._waiters.wake(1)  # more is ready (or a refill is due): the next idle worker
        return lease

    async def _refill_pending(self) -> None:
        self._refilling = True
        try:
            async with self._file.lock:
                await self._file.write(full=False)
                windows = self._windows
                hosts = list(windows.needs_refill)
                for start in range(0, len(hosts), _REFILL_CHUNK):
                    chunk = hosts[start : start + _REFILL_CHUNK]
                    chunk = [host for host in chunk if host in windows.needs_refill]
                    await self._refill(chunk)  # (a host evicted meanwhile loads when picked)
                    windows.needs_refill.difference_update(chunk)
                    windows.evict()
        finally:
            self._refilling = False
        self._waiters.wake(1)  # let a waiter re-check: more hosts may need a refill, or none remain

    async def _refill(self, hosts: Sequence[str]) -> None:
        """Load each host's next best pending requests after its window, in one query.

        Called with the lock held, right after a flush, so every pending row is readable.
        """
        loaded, lost = await self._windows.refill(hosts, self._file, self._decode)
        self._pending -= lost
        self._waiters.wake(loaded)

    async def _promote_due(self) -> None:
        """Move due retries (DELAYED rows) back into their hosts' queues."""
        retries = self._retries
        retries.promoting = True
        try:
            async with self._file.lock:
                await self._file.write(full=False)
                moved = await retries.promote(self.clock.now(), self._new_id, self._requeue)
                self._windows.evict()
                self._file.arm()
        finally:
            retries.promoting = False
        self._waiters.wake(max(1, moved))

    def _requeue(
        self, row_id: int, key: bytes, priority: int, seq: int, data: bytes, host: str
    ) -> None:
        request = self._decode(row_id, host, data)
        if request is not None:
            self._pending += 1
            fp = fingerprint(request) if request.dont_filter else key
            self._windows.place(host, (-priority, seq, row_id, request, fp))

    def _new_id(self) -> int:
        """A new row id or seq, above every one in the file."""
        self._next_id += 1
        return self._next_id - 1

    def _decode(self, row_id: int, host: str, data: bytes) -> Request | None:
        """The stored request, or None (and the row marked FAILED) if it cannot be rebuilt."""
        request = self._codec.decode_stored(data, str(self.path), row_id)
        if request is None:
            self._failed += 1
            self._file.change(row_id, host, schema.SET_FAILED, ("undecodable", row_id), final=True)
        return request

    # -- leases and waiting ---------------------------------------------------------------

    def _release(self, lease: Lease, how: str) -> int | None:
        row_id = self._leases.give_back(lease, how)
        if row_id is None:
            return None
        self._in_flight -= 1
        self.readiness.finished(lease.host)
        busy = self._pending or self._retries.count or self._in_flight
        if busy:
            self._waiters.wake(1)
        else:
            self._waiters.wake_all()
        return row_id

    async def _wait(self) -> None:
        wake_at = self.readiness.next_time()
        retries = self._retries
        if retries.count and (wake_at is None or retries.due_at < wake_at):
            wake_at = retries.due_at
        await self._waiters.wait(wake_at)
