"""Checkpoints of a persistent crawl: items first, then the requests that produced them.

At every checkpoint the pipelines are flushed (items durable), then the
frontier (requests marked done, new requests queued, in one transaction), then
counters and cookie jars. While the flushes run, acks wait at a gate, so a
request can never be recorded as done before its items are on disk: after a
``kill -9`` at any moment, a resumed crawl re-fetches only requests that were in
flight or finished since the last checkpoint (at most ``CHECKPOINT_INTERVAL``
seconds of work), and loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .frontier.base import Frontier, FrontierCounts, Lease
from .loglines import get_logger
from .request import Request
from .storage import StateStore, load_jar

__all__ = ["AckGate", "CrawlState"]

logger = get_logger("crawler.checkpoint")


class AckGate:
    """A frontier wrapper whose ack/fail wait while a checkpoint flushes the pipelines."""

    def __init__(self, frontier: Frontier) -> None:
        self.inner = frontier
        self._open = asyncio.Event()
        self._open.set()

    def close_gate(self) -> None:
        """Hold new acks (a checkpoint is flushing items)."""
        self._open.clear()

    def open_gate(self) -> None:
        """Let acks through again."""
        self._open.set()

    async def ack(self, lease: Lease) -> None:
        """Ack once no checkpoint is flushing items."""
        if not self._open.is_set():
            await self._open.wait()
        await self.inner.ack(lease)

    async def fail(self, lease: Lease, reason: str) -> None:
        """Fail once no checkpoint is flushing items (an errback may have produced some)."""
        if not self._open.is_set():
            await self._open.wait()
        await self.inner.fail(lease, reason)

    # Everything else goes straight through.
    async def open(self) -> None:
        """Open the wrapped frontier."""
        await self.inner.open()

    async def close(self) -> None:
        """Close the wrapped frontier."""
        await self.inner.close()

    async def push(self, requests: Sequence[Request]) -> list[bool]:
        """Queue requests."""
        return await self.inner.push(requests)

    async def add_seen(self, fingerprint: bytes) -> bool:
        """Record a fingerprint."""
        return await self.inner.add_seen(fingerprint)

    async def lease(self) -> Lease | None:
        """Lease the next ready request."""
        return await self.inner.lease()

    async def retry(self, lease: Lease, delay_s: float) -> None:
        """Re-queue after a delay."""
        await self.inner.retry(lease, delay_s)

    async def set_host_delay(self, host: str, delay_s: float | None) -> None:
        """Per-host delay override."""
        await self.inner.set_host_delay(host, delay_s)

    async def hold_host(self, host: str, delay_s: float) -> None:
        """Hold a host."""
        await self.inner.hold_host(host, delay_s)

    def stop(self) -> None:
        """Stop leasing."""
        self.inner.stop()
        self._open.set()  # never leave a worker stuck at the gate during shutdown

    async def claim_seed(self) -> bool:
        """Whether to seed."""
        return await self.inner.claim_seed()

    async def seed_done(self) -> None:
        """Seeding finished."""
        await self.inner.seed_done()

    async def flush(self) -> None:
        """Flush the wrapped frontier."""
        await self.inner.flush()

    async def counts(self) -> FrontierCounts:
        """Counts of the wrapped frontier."""
        return await self.inner.counts()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CrawlState:
    """The ``STATE_DIR`` of a crawl: its state store, checkpoints and resume logic."""

    def __init__(self, folder: Path, interval_s: float, restart: bool = False) -> None:
        self.folder = folder
        self.interval_s = interval_s
        self.restart = restart
        self.store = StateStore(folder / "state.db")
        self.previous_status: str | None = None
        self.previous_counters: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the store; remember how the previous run ended (``--restart`` forgets it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        await self.store.open()
        if self.restart:
            await self.store.reset()
        self.previous_status = await self.store.get("status")
        self.previous_counters = await self.store.load_counters()
        if self.previous_status:
            logger.info(
                "resuming crawl state %s (previous run: %s, %d pages)",
                self.folder,
                self.previous_status,
                self.previous_counters.get("pages", 0),
            )

    @property
    def finished(self) -> bool:
        """True if an earlier run of this state finished the crawl."""
        return self.previous_status == "finished"

    async def restore_cookies(self, sessions: Any) -> int:
        """Put the saved cookie jars back into the session pool; returns the cookie count."""
        total = 0
        for key, records in (await self.store.load_cookies()).items():
            total += load_jar(sessions.jar_for_key(key), records)
        return total

    async def checkpoint(
        self,
        gate: AckGate,
        pipelines: Any,
        spider: Any,
        counters: Mapping[str, int],
        jars: Mapping[str, Any],
        status: str = "running",
    ) -> None:
        """Items, then requests, then counters and cookies (see the module docstring)."""
        async with self._lock:
            # Acks wait until both flushes are done: an ack arriving after the item flush
            # began may belong to an item that flush did not see.
            gate.close_gate()
            try:
                await pipelines.flush(spider)
                await gate.inner.flush()
            finally:
                gate.open_gate()
            await self.store.save(counters, jars, {"status": status, "spider": spider.name})

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()
