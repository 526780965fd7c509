"""Checkpoints of a persistent crawl: items first, then the requests that produced them.

At every checkpoint the pipelines are flushed (items durable), then the
frontier (requests marked done, new requests queued and the outputs' durable
positions, in one transaction), then counters and cookie jars. While the
flushes run, acks wait at a gate, so a request can never be recorded as done
before its items are on disk: after a ``kill -9`` at any moment, a resumed
crawl re-fetches only requests that were in flight or finished since the last
checkpoint (at most ``CHECKPOINT_INTERVAL`` seconds of work), and loses nothing.

A checkpoint also happens *between* requests, never across one
(:class:`ItemBarrier`): it first waits until every request that put an item
into the pipelines has been acked, holding back the first item of any other.
So the outputs' positions it saves cover exactly the items of the requests it
marks done, and a file cut back to its position on resume holds each item once.

If an output cannot write (:class:`~crawler.errors.OutputError`), the gate is
*sealed*: no ack or failure reaches the frontier again, so every request whose
items may be missing is fetched again by the next run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError, OutputError
from .frontier.base import (
    CheckpointMarks,
    Frontier,
    FrontierCounts,
    Lease,
    Resettable,
    StatsPublisher,
)
from .loglines import get_logger
from .pipeline import PipelineChain
from .request import Request
from .storage import StateStore

__all__ = [
    "AckGate",
    "CrawlState",
    "ItemBarrier",
    "checkpoint",
    "flush_in_order",
    "open_outputs",
    "saved_positions",
]

_OUTPUTS_MARK = "outputs"
_FAILURES = ("output_failed", "checkpoint_failed")  # supervisor.FAILURES

logger = get_logger("crawler.checkpoint")


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


async def flush_in_order(gate: AckGate, pipelines: PipelineChain, spider: Any) -> bool:
    """Items, then the outputs' positions with the acks (see the module docstring).

    First every request that processed items is acked (:class:`ItemBarrier`); then
    acks wait at the gate until both flushes ended: an ack arriving after the item
    flush began may belong to an item that flush did not see. If the pipelines
    cannot flush (OutputError) the gate is sealed before this raises. False if the
    gate was sealed meanwhile (another output failed): then nothing was marked done.
    """
    try:
        await gate.items.close()  # every request with items processed has been acked
        gate.close_gate()
        try:
            await pipelines.flush(spider)
        except OutputError:
            gate.seal()
            raise
        if gate.sealed:
            return False  # an output failed meanwhile: nothing more is marked done
        inner = gate.inner
        if isinstance(inner, CheckpointMarks):
            # Written in the acks' transaction: a resume cuts each file back to this.
            inner.set_marks({_OUTPUTS_MARK: orjson.dumps(pipelines.positions()).decode()})
        await inner.flush()
    finally:
        gate.open_gate()
        gate.items.open()
    return True


async def checkpoint(
    gate: AckGate,
    state: CrawlState | None,
    pipelines: PipelineChain,
    spider: Any,
    counters: Mapping[str, int],
    jars: Mapping[str, Any],
    status: str = "running",
) -> None:
    """One checkpoint: :meth:`CrawlState.checkpoint`, or for a shared frontier without a
    state folder only :func:`flush_in_order` (items, then acks)."""
    if state is None:
        await flush_in_order(gate, pipelines, spider)
    else:
        await state.checkpoint(gate, pipelines, spider, counters, jars, status)


async def open_outputs(
    gate: AckGate | None, state: CrawlState | None, pipelines: PipelineChain, spider: Any
) -> None:
    """Open the outputs where the last checkpoint left them.

    With a state folder, the positions saved with the acks go back to every
    CheckpointedOutput (``resume_at``) before it opens. Once they are open their
    positions are saved at once (no ack with them), so that a run whose very first
    checkpoint fails is resumed from where its outputs started, not from nowhere.
    Raises OutputError if an output cannot resume or open.
    """
    inner = gate.inner if gate is not None and state is not None else None
    positions: dict[str, Any] = {}
    if inner is not None and state is not None and not state.restart:
        positions = await saved_positions(inner)
    pipelines.resume_at(positions, state is not None and state.resuming(positions))
    await pipelines.open(spider)
    if isinstance(inner, CheckpointMarks):
        inner.set_marks({_OUTPUTS_MARK: orjson.dumps(pipelines.positions()).decode()})
        await inner.flush()


async def saved_positions(frontier: Frontier) -> dict[str, Any]:
    """The outputs' positions saved by the last checkpoint (empty without any)."""
    if not isinstance(frontier, CheckpointMarks):
        return {}
    text = (await frontier.load_marks()).get(_OUTPUTS_MARK)
    if not text:
        return {}
    try:
        positions = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(
            f"the saved output positions are not JSON ({exc}): {text!r:.200}"
        ) from None
    if not isinstance(positions, dict):
        raise ConfigError(f"the saved output positions are not a JSON object: {text!r:.200}")
    return positions


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

    def resuming(self, positions: Mapping[str, Any]) -> bool:
        """True if this run continues an earlier one (not the first run, not ``--restart``).

        ``positions`` (from :func:`saved_positions`) count too: a checkpoint may have
        saved them even if it could not save the status after them.
        """
        return not self.restart and (self.previous_status is not None or bool(positions))

    async def restore_cookies(self, sessions: Any) -> int:
        """Put the saved cookie jars back into the session pool; returns the cookie count."""
        return await self.store.restore_cookies(sessions)

    async def checkpoint(
        self,
        gate: AckGate,
        pipelines: PipelineChain,
        spider: Any,
        counters: Mapping[str, int],
        jars: Mapping[str, Any],
        status: str = "running",
    ) -> None:
        """Items, then requests, then counters and cookies (see the module docstring)."""
        async with self._lock:
            if await flush_in_order(gate, pipelines, spider):
                await self.store.save(counters, jars, {"status": status, "spider": spider.name})

    async def record_end(self, reason: str) -> None:
        """Record how the run ended, if the last checkpoint did not (it said ``running``).

        ``finished`` (once the outputs are closed) raises if it cannot be saved; a
        failure's reason is best effort: the last good checkpoint left the state resumable.
        """
        if reason != "finished" and reason not in _FAILURES:
            return  # the last checkpoint recorded "interrupted"
        try:
            async with self._lock:
                await self.store.set_many({"status": reason})
        except Exception as exc:
            if reason == "finished":
                raise
            logger.warning("could not record %s in %s: %s", reason, self.folder, exc)

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()
