"""Background work of a crawl, supervised: checkpoints, progress lines, stats publishing.

Every loop runs in the engine's TaskGroup beside the workers and ends once they
have all ended (:meth:`Supervisor.watch`), after the round it is in: a
checkpoint is never cut in half. A round that fails is logged with its
traceback and tried again after a back-off (the interval, doubled for every
failure in a row, at most a minute). Nothing fails silently.

The supervisor also holds the crawl's one fatal failure (the first one wins):

- ``output_failed`` (``crawl run`` exits 7): an output cannot write, i.e. an
  :class:`~crawler.errors.OutputError` from ``process_item``, ``flush`` or
  ``close``, or any exception from a pipeline's ``flush`` or ``close``;
- ``checkpoint_failed`` (exit 8): ``MAX_CHECKPOINT_FAILURES`` checkpoints in a
  row failed (the frontier or the state store could not be written), periodic
  and final ones counted together;
- ``state_lost`` (exit 11): the shared frontier's server lost the crawl's state
  (:class:`~crawler.frontier.base.StateLost`, e.g. Redis restarted empty);
- ``frontier_unavailable`` (exit 12): the shared frontier's server stayed
  unreachable longer than ``REDIS_UNAVAILABLE_TIMEOUT``
  (:class:`~crawler.frontier.base.FrontierUnavailable`).

A frontier with the :class:`~crawler.frontier.base.HealthReports` capability reports
the last two itself (:meth:`Supervisor.watch_frontier`), and says while it waits for
its server (:meth:`Supervisor.notes`, shown in progress lines).

Whatever the failure, nothing more is leased and the ack gate is sealed: requests in
flight may finish, but none is marked done after the last good checkpoint, and
the next run with the same state fetches every request whose items may be missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .clock import Clock, MonotonicClock, sleep, wait_event
from .errors import OutputError
from .frontier.base import FrontierFailed, FrontierUnavailable, HealthReports, StateLost
from .loglines import get_logger

__all__ = [
    "CHECKPOINT_FAILED",
    "FAILURES",
    "FRONTIER_UNAVAILABLE",
    "MAX_CHECKPOINT_FAILURES",
    "OUTPUT_FAILED",
    "STATE_LOST",
    "Failure",
    "Supervisor",
    "backoff_s",
]

logger = get_logger("crawler.engine")

OUTPUT_FAILED = "output_failed"
CHECKPOINT_FAILED = "checkpoint_failed"
STATE_LOST = StateLost.reason
FRONTIER_UNAVAILABLE = FrontierUnavailable.reason
FAILURES = frozenset((OUTPUT_FAILED, CHECKPOINT_FAILED, STATE_LOST, FRONTIER_UNAVAILABLE))
"""Finish reasons of a crawl stopped by a failure (resumable, non-zero exit code)."""

_RESUMABLE = (
    ": requests in flight are not marked done, the next run with the same state fetches them again"
)
MAX_CHECKPOINT_FAILURES = 3
MAX_BACKOFF_S = 60.0


def backoff_s(interval_s: float, failures: int) -> float:
    """How long to wait before the next round: the interval, doubled per failure in a row."""
    if failures <= 0:
        return interval_s
    return min(interval_s * 2**failures, max(interval_s, MAX_BACKOFF_S))


class Failure:
    """Why the crawl stopped: ``reason`` (a finish reason) and the ``error``; ``line`` says both."""

    __slots__ = ("error", "line", "reason")

    def __init__(self, reason: str, error: BaseException) -> None:
        self.reason = reason
        self.error = error
        self.line = _one_line(reason, error)


def _one_line(reason: str, error: BaseException) -> str:
    text = str(error) or type(error).__name__
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    if reason == OUTPUT_FAILED:
        output = error.output if isinstance(error, OutputError) else ""
        text = f"output {output} failed: {text}" if output and output not in text else text
        if not text.startswith("output"):
            text = f"output failed: {text}"
    elif reason == CHECKPOINT_FAILED:
        text = f"crawl state could not be saved: {text}"
    return " ".join(text.split())[:1000]  # one line, bounded


class Supervisor:
    """Runs a crawl's background loops and records its fatal failure.

    ``on_failure(failure)`` is called once, for the first failure: the engine seals
    the ack gate and stops the crawl there.
    """

    def __init__(
        self,
        spider_name: str,
        on_failure: Callable[[Failure], None],
        checkpoint_interval_s: float,
        progress_interval_s: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self.spider_name = spider_name
        self.checkpoint_interval_s = checkpoint_interval_s
        self.progress_interval_s = progress_interval_s
        self.clock = clock or MonotonicClock()  # intervals and back-offs are in its time
        self.failure: Failure | None = None
        self.checkpoint_failures = 0
        self._on_failure = on_failure
        self._done = asyncio.Event()
        self._health: HealthReports | None = None

    def watch_frontier(self, frontier: object, unavailable_timeout_s: float) -> None:
        """Hear a frontier with :class:`HealthReports` fail (its reason becomes the crawl's);
        it waits out an outage of its server for up to ``unavailable_timeout_s`` seconds."""
        if isinstance(frontier, HealthReports):
            self._health = frontier
            frontier.watch_health(lambda exc: self.fail(exc.reason, exc), unavailable_timeout_s)

    def notes(self) -> list[str]:
        """Lines for the progress display (e.g. "waiting for Redis (since 12:03:04)")."""
        note = self._health.status_note() if self._health is not None else None
        return [note] if note else []

    def fail(self, reason: str, error: BaseException) -> None:
        """Stop the crawl for ``reason`` (``output_failed``, ``checkpoint_failed``).

        Only the first failure counts; later ones are logged.
        """
        if self.failure is not None:
            logger.debug("[%s] also: %s", self.spider_name, _one_line(reason, error))
            return
        failure = self.failure = Failure(reason, error)
        then = "" if reason == STATE_LOST else _RESUMABLE  # the line says what to do
        logger.error("[%s] %s; stopping%s", self.spider_name, failure.line, then)
        self._on_failure(failure)

    def start(
        self,
        group: asyncio.TaskGroup,
        workers: Sequence[asyncio.Task[Any]],
        checkpoint: Callable[[str], Awaitable[None]] | None,
        report_progress: Callable[[], Awaitable[None]] | None,
        publish_stats: Callable[[], Awaitable[None]] | None,
    ) -> None:
        """Start the loops in ``group`` (the workers' TaskGroup); they end with the workers.

        Checkpoints and stats publishing run every ``checkpoint_interval_s`` seconds,
        progress reports every ``progress_interval_s`` (0: none); None: no such loop.
        """
        group.create_task(self.watch(workers), name="supervisor")
        interval_s = self.checkpoint_interval_s
        if checkpoint is not None:
            group.create_task(self.checkpoints(checkpoint), name="checkpoints")
        if report_progress is not None and self.progress_interval_s:
            loop = self.every("progress report", self.progress_interval_s, report_progress)
            group.create_task(loop, name="progress")
        if publish_stats is not None:
            loop = self.every("publishing stats", interval_s, publish_stats)
            group.create_task(loop, name="publish stats")

    async def watch(self, workers: Sequence[asyncio.Task[Any]]) -> None:
        """Wait for every worker to end, then end the loops (after their current round)."""
        try:
            if workers:
                await asyncio.wait(workers)
        finally:
            self._done.set()

    async def every(self, what: str, interval_s: float, job: Callable[[], Awaitable[Any]]) -> None:
        """Run ``job`` every ``interval_s`` seconds until the workers end; failures are retried."""
        failures = 0
        while not await self._wait_done(backoff_s(interval_s, failures)):
            try:
                await job()
            except Exception:
                failures += 1
                logger.error(
                    "[%s] %s failed (%d in a row); trying again in %.1f s",
                    self.spider_name,
                    what,
                    failures,
                    backoff_s(interval_s, failures),
                    exc_info=True,
                )
            else:
                failures = 0

    async def checkpoints(self, checkpoint: Callable[[str], Awaitable[None]]) -> None:
        """Checkpoint every interval until the workers end or the crawl failed."""
        interval_s = self.checkpoint_interval_s
        while self.failure is None:
            if await self._wait_done(backoff_s(interval_s, self.checkpoint_failures)):
                return
            if self.failure is None:
                await self.checkpoint_once(checkpoint, "running")

    async def final_checkpoint(
        self, checkpoint: Callable[[str], Awaitable[None]], status: str
    ) -> None:
        """The last checkpoint, retried (with back-off) until it succeeds or the crawl failed."""
        while self.failure is None:
            if await self.checkpoint_once(checkpoint, status):
                return
            if self.failure is None:
                delay_s = backoff_s(self.checkpoint_interval_s, self.checkpoint_failures)
                await sleep(self.clock, delay_s)

    async def checkpoint_once(
        self, checkpoint: Callable[[str], Awaitable[None]], status: str
    ) -> bool:
        """One checkpoint; False if it failed (logged, counted, fatal at the limit)."""
        try:
            await checkpoint(status)
        except OutputError as exc:
            self.fail(OUTPUT_FAILED, exc)
            return False
        except FrontierFailed as exc:  # the frontier's server is gone: no point trying again
            self.fail(exc.reason, exc)
            return False
        except Exception as exc:
            self.checkpoint_failures += 1
            failures = self.checkpoint_failures
            if failures < MAX_CHECKPOINT_FAILURES:
                logger.error(
                    "[%s] checkpoint failed (%d of %d in a row); trying again in %.1f s",
                    self.spider_name,
                    failures,
                    MAX_CHECKPOINT_FAILURES,
                    backoff_s(self.checkpoint_interval_s, failures),
                    exc_info=True,
                )
            else:
                logger.error(
                    "[%s] checkpoint failed (%d of %d in a row); giving up",
                    self.spider_name,
                    failures,
                    MAX_CHECKPOINT_FAILURES,
                    exc_info=True,
                )
                self.fail(CHECKPOINT_FAILED, exc)
            return False
        self.checkpoint_failures = 0
        return True

    async def _wait_done(self, delay_s: float) -> bool:
        """Wait ``delay_s`` seconds; True (at once) if the workers ended meanwhile."""
        return await wait_event(self.clock, self._done, delay_s)
