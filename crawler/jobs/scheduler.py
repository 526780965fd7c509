"""When jobs are due, and the long-running loop that runs them (``crawl scheduler``).

Time is injected: ``now()`` returns the wall-clock time as an aware
``datetime`` (cron needs the calendar) and ``sleep(seconds)`` waits; tests pass
a fake pair and move time by hand. The loop sleeps until the earliest due time
(at most ``max_sleep_s`` at once, so a wall-clock jump is noticed) and never
polls faster than that.

Due times:

* cron: the expression's next match (in the job's ``timezone``, else local time);
* every: a grid anchored at the job's last scheduled run (``last + k * interval``);
  a job that has never run waits one interval first.

After downtime a job whose previous due time has passed since its last run
runs once at start-up (``catch_up``, on by default) however many times it was
missed; a run that is still going when the next due time comes makes that due
time be skipped, not queued. Whether a due run really starts is decided by the
run history: the runner claims ``(job, due time)`` under the job's lock, so two
schedulers sharing the history run each due time once.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from ..loglines import get_logger
from .config import JobConfig, Schedule

__all__ = ["RunJob", "Scheduler", "next_due", "previous_due", "startup_due", "utc_now"]

logger = get_logger("crawler.jobs")

RunJob = Callable[[JobConfig, datetime, asyncio.Event], Awaitable[int | None]]
"""``(job, due time, stop event) -> exit code``, or None if the run was not started."""

_TICK = timedelta(microseconds=1)


def utc_now() -> datetime:
    """The real wall clock, in UTC."""
    return datetime.now(UTC)


def _zone(schedule: Schedule) -> ZoneInfo | None:
    return ZoneInfo(schedule.timezone) if schedule.timezone else None


def _local(moment: datetime, schedule: Schedule) -> datetime:
    zone = _zone(schedule)
    return moment.astimezone(zone) if zone is not None else moment.astimezone()


def next_due(
    schedule: Schedule, after: datetime, anchor: datetime | None = None
) -> datetime | None:
    """The first due time strictly after ``after`` (None for a manual job).

    ``anchor`` is the last scheduled run, which places an interval job's grid.
    """
    if schedule.cron is not None:
        found = croniter(schedule.cron, _local(after, schedule)).get_next(datetime)
        return found.astimezone(UTC)
    if schedule.interval_s is None:
        return None
    step = timedelta(seconds=schedule.interval_s)
    if anchor is None:
        return after + step
    if anchor > after:
        return anchor
    steps = math.floor((after - anchor) / step) + 1
    return anchor + steps * step


def previous_due(
    schedule: Schedule, at: datetime, anchor: datetime | None = None
) -> datetime | None:
    """The last due time at or before ``at`` (None if there is none or the job is manual)."""
    if schedule.cron is not None:
        found = croniter(schedule.cron, _local(at, schedule) + _TICK).get_prev(datetime)
        return found.astimezone(UTC)
    if schedule.interval_s is None or anchor is None or anchor > at:
        return None
    step = timedelta(seconds=schedule.interval_s)
    return anchor + math.floor((at - anchor) / step) * step


def startup_due(job: JobConfig, now: datetime, last_scheduled: datetime | None) -> datetime | None:
    """The first due time a scheduler starting at ``now`` waits for.

    It is in the past (run at once) when a due time was missed since the job's
    last run and ``catch_up`` is on; only the latest missed one is returned.
    A job that never ran has missed nothing.
    """
    schedule = job.schedule
    if schedule.manual:
        return None
    if last_scheduled is not None and job.catch_up:
        missed = previous_due(schedule, now, anchor=last_scheduled)
        if missed is not None and missed > last_scheduled:
            return missed
    return next_due(schedule, now, anchor=last_scheduled)


class Scheduler:
    """Runs each job when it is due until ``stop`` is set, then waits for running jobs.

    ``last_scheduled(job_name)`` reads the run history (the latest due time, or
    start time of a manual run); ``run_job`` runs one job (see :data:`RunJob`).
    """

    def __init__(
        self,
        jobs: Sequence[JobConfig],
        run_job: RunJob,
        last_scheduled: Callable[[str], Awaitable[datetime | None]],
        *,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        max_sleep_s: float = 60.0,
    ) -> None:
        self.jobs = [job for job in jobs if not job.schedule.manual]
        self._run_job = run_job
        self._last_scheduled = last_scheduled
        self._now = now
        self._sleep = sleep
        self.max_sleep_s = max_sleep_s
        self.due: dict[str, datetime] = {}
        self._running: dict[str, asyncio.Task[int | None]] = {}

    def snapshot(self) -> dict[str, datetime]:
        """Each job's next due time (a copy)."""
        return dict(self.due)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; running jobs are told to stop and awaited."""
        now = self._now()
        for job in self.jobs:
            due = startup_due(job, now, await self._last_scheduled(job.name))
            if due is not None:
                self.due[job.name] = due
                logger.info("job %s: next run %s", job.name, due.isoformat(timespec="seconds"))
        if not self.jobs:
            logger.warning("no scheduled jobs (jobs without cron or every run only on demand)")
        by_name = {job.name: job for job in self.jobs}
        async with asyncio.TaskGroup() as group:
            while not stop.is_set():
                now = self._now()
                for name, due in sorted(self.due.items(), key=lambda kv: kv[1]):
                    if due > now:
                        continue
                    job = by_name[name]
                    self.due[name] = self._after(job, due, now)
                    if name in self._running:
                        logger.warning(
                            "job %s: still running, skipping the run due %s",
                            name,
                            due.isoformat(timespec="seconds"),
                        )
                        continue
                    task = group.create_task(self._guarded(job, due, stop), name=f"job-{name}")
                    self._running[name] = task
                    task.add_done_callback(functools.partial(self._done, name))
                await self._wait(stop, now)

    def _done(self, name: str, task: asyncio.Task[int | None]) -> None:
        if self._running.get(name) is task:
            del self._running[name]

    def _after(self, job: JobConfig, due: datetime, now: datetime) -> datetime:
        """The due time after ``due``: the first one after ``now`` (missed ones are dropped)."""
        following = next_due(job.schedule, max(due, now), anchor=due)
        assert following is not None
        return following

    async def _guarded(self, job: JobConfig, due: datetime, stop: asyncio.Event) -> int | None:
        try:
            return await self._run_job(job, due, stop)
        except Exception:
            logger.exception("job %s: the run failed with an internal error", job.name)
            return None

    async def _wait(self, stop: asyncio.Event, now: datetime) -> None:
        """Sleep until the next due time (or ``max_sleep_s``), waking early on ``stop``."""
        delay_s = self.max_sleep_s
        if self.due:
            delay_s = min(delay_s, (min(self.due.values()) - now).total_seconds())
        if delay_s <= 0:
            await asyncio.sleep(0)
            return
        sleeper = asyncio.ensure_future(self._sleep(delay_s))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (sleeper, stopper):
                waiter.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
