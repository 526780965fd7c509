"""The ack gate: acks wait while a checkpoint makes items durable, and stop when outputs fail.

:class:`AckGate` wraps the frontier: its ``ack``/``fail`` wait while a
checkpoint flushes the pipelines, and once sealed (an output failed) they never
reach the frontier again. It passes through exactly the optional capabilities
of the frontier it wraps. :class:`ItemBarrier` keeps checkpoints between
requests, never across one (see ``checkpoint.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from .frontier.base import (
    CheckpointMarks,
    Frontier,
    FrontierCounts,
    Lease,
    Resettable,
    StatsPublisher,
)
from .request import Request

__all__ = ["AckGate", "ItemBarrier"]


class ItemBarrier:
    """Keeps checkpoints between requests: none starts while a request that has put
    items into the pipelines has not been acked yet.

    A request takes a place (:meth:`try_enter` / :meth:`enter`) before its first
    item and gives it back (:meth:`leave`) once its ack or fail went through. A
    checkpoint :meth:`close` s the barrier: new requests' first items wait, and it
    waits until every place is given back; :meth:`open` lets them in again.
    """

    __slots__ = ("_active", "_closed", "_idle", "_open")

    def __init__(self) -> None:
        self._active = 0
        self._closed = False
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()

    def try_enter(self) -> bool:
        """Take a place now unless a checkpoint holds the barrier."""
        if self._closed:
            return False
        if not self._active:
            self._idle.clear()
        self._active += 1
        return True

    async def enter(self) -> None:
        """Take a place, waiting for a running checkpoint first."""
        while not self.try_enter():
            await self._open.wait()

    def leave(self) -> None:
        """Give the place back (the request's ack or fail went through)."""
        self._active -= 1
        if not self._active:
            self._idle.set()

    async def close(self) -> None:
        """Hold new first items; wait until every request holding a place has left."""
        self._closed = True
        self._open.clear()
        while self._active:
            await self._idle.wait()

    def open(self) -> None:
        """Let first items in again."""
        self._closed = False
        self._open.set()


class AckGate:
    """A frontier wrapper whose ack/fail wait while a checkpoint flushes the pipelines.

    :meth:`seal` (an output failed) closes it for good: from then on acks and
    failures are dropped, and the requests stay leased, to be fetched again.

    The gate has exactly the optional capabilities of the frontier it wraps
    (:class:`~crawler.frontier.base.Resettable`, ``CheckpointMarks``,
    ``StatsPublisher``): ``AckGate(frontier)`` builds the subclass that passes
    those through, so ``isinstance(gate, Resettable)`` answers for the frontier.
    """

    def __new__(cls, frontier: Frontier) -> AckGate:
        if cls is AckGate:
            cls = _gate_class(frontier)
        return super().__new__(cls)

    def __init__(self, frontier: Frontier) -> None:
        self.inner = frontier
        self.items = ItemBarrier()
        self._open = asyncio.Event()
        self._open.set()
        self._sealed = False

    def close_gate(self) -> None:
        """Hold new acks (a checkpoint is flushing items)."""
        self._open.clear()

    def open_gate(self) -> None:
        """Let acks through again (not once sealed: waiting acks are then dropped)."""
        self._open.set()

    def seal(self) -> None:
        """No ack or fail reaches the frontier again; acks waiting at the gate are dropped."""
        self._sealed = True
        self._open.set()  # wake the waiting workers: they drop their acks and go on

    @property
    def sealed(self) -> bool:
        """True once :meth:`seal` was called."""
        return self._sealed

    async def ack(self, lease: Lease) -> None:
        """Ack once no checkpoint is flushing items; dropped if the gate is sealed."""
        if not self._open.is_set():
            await self._open.wait()
        if not self._sealed:
            await self.inner.ack(lease)

    async def fail(self, lease: Lease, reason: str) -> None:
        """Fail once no checkpoint is flushing items (an errback may have produced some)."""
        if not self._open.is_set():
            await self._open.wait()
        if not self._sealed:
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
        """Stop leasing. A running checkpoint still holds the acks until its flushes end."""
        self.inner.stop()

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


class _ResettableGate(AckGate):
    async def reset(self) -> None:
        """Forget the wrapped frontier's stored crawl (``--restart``)."""
        inner = self.inner
        assert isinstance(inner, Resettable)
        await inner.reset()


class _MarksGate(AckGate):
    def set_marks(self, marks: Mapping[str, str]) -> None:
        """Buffer marks; the wrapped frontier's next flush writes them with its acks."""
        inner = self.inner
        assert isinstance(inner, CheckpointMarks)
        inner.set_marks(marks)

    async def load_marks(self) -> dict[str, str]:
        """The marks of the wrapped frontier's last flush."""
        inner = self.inner
        assert isinstance(inner, CheckpointMarks)
        return await inner.load_marks()


class _StatsGate(AckGate):
    async def publish_stats(self, counters: Mapping[str, int]) -> None:
        """Publish this process's counters through the wrapped (shared) frontier."""
        inner = self.inner
        assert isinstance(inner, StatsPublisher)
        await inner.publish_stats(counters)


_CAPABILITIES: tuple[tuple[type, type[AckGate]], ...] = (
    (Resettable, _ResettableGate),
    (CheckpointMarks, _MarksGate),
    (StatsPublisher, _StatsGate),
)
_GATES: dict[tuple[type[AckGate], ...], type[AckGate]] = {}


def _gate_class(frontier: Frontier) -> type[AckGate]:
    """The AckGate class with the optional capabilities ``frontier`` has."""
    bases = tuple(gate for cap, gate in _CAPABILITIES if isinstance(frontier, cap))
    if not bases:
        return AckGate
    gate = _GATES.get(bases)
    if gate is None:
        gate = _GATES[bases] = bases[0] if len(bases) == 1 else type("AckGate", bases, {})
    return gate
