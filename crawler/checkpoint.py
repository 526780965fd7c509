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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from .ackgate import AckGate, ItemBarrier
from .errors import ConfigError, OutputError
from .frontier.base import (
    CheckpointMarks,
    Frontier,
)
from .loglines import get_logger
from .pipeline import PipelineChain
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
