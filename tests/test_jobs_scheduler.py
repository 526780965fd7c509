"""The scheduler loop on a fake wall clock: on time, catch-up, overlap, stop, and racing schedulers.

No test sleeps for real: ``FakeTime.sleep`` waits until the test moves the
fake clock with ``advance``, which wakes sleepers in time order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from test_jobs_runner import job_for, project_for, shop_site

from crawler.cli.project import ProjectConfig
from crawler.jobs import JobConfig, JobPaths, RunHistory, Scheduler, parse_jobs, run_job

T0 = datetime(2024, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


class FakeTime:
    """A wall clock (``now``) and a sleeper (``sleep``) that move only in ``advance``."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._sleepers, (self._now + timedelta(seconds=seconds), next(self._seq), future)
        )
        await future

    async def advance(self, seconds: float) -> None:
        target = self._now + timedelta(seconds=seconds)
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            if not future.done():
                future.set_result(None)
            await settle()
        self._now = target
        await settle()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def job(name: str = "tick", **table) -> JobConfig:
    return parse_jobs({name: {"spider": "s", **table}}, "test")[name]


class Recorder:
    """A fake run_job: records (due, fake now at start); optionally blocks until released."""

    def __init__(self, clock: FakeTime, block: bool = False) -> None:
        self.clock = clock
        self.calls: list[tuple[str, datetime, datetime]] = []
        self.release = asyncio.Event()
        self.block = block
        self.stopped = False

    async def __call__(self, job: JobConfig, due: datetime, stop: asyncio.Event) -> int:
        self.calls.append((job.name, due, self.clock.now()))
        if self.block:
            await self.release.wait()
        self.stopped = stop.is_set()
        return 0


def never_ran(history: dict[str, datetime] | None = None):
    async def last_scheduled(name: str) -> datetime | None:
        return (history or {}).get(name)

    return last_scheduled


async def start(scheduler: Scheduler) -> tuple[asyncio.Task[None], asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    await settle()
    return task, stop


async def test_every_second_cron_job_fires_on_time():
    clock = FakeTime(T0)
    recorder = Recorder(clock)
    scheduler = Scheduler(
        [job(cron="* * * * * *", timezone="UTC")],
        recorder,
        never_ran(),
        now=clock.now,
        sleep=clock.sleep,
    )
    task, stop = await start(scheduler)
    assert recorder.calls == []
    assert clock.sleeps == [0.75]  # exactly until 12:00:01, no polling
    for _ in range(5):
        await clock.advance(1.0)
    stop.set()
    await task
    second = timedelta(seconds=1)
    base = T0.replace(microsecond=0)
    assert [due for _, due, _ in recorder.calls] == [base + n * second for n in range(1, 6)]
    assert all(started == due for _, due, started in recorder.calls)  # on time to the microsecond
    assert clock.sleeps == [0.75, 1.0, 1.0, 1.0, 1.0, 1.0]


async def test_interval_job_first_waits_one_interval_then_keeps_the_grid():
    clock = FakeTime(T0)
    recorder = Recorder(clock)
    scheduler = Scheduler(
        [job(every="1s")], recorder, never_ran(), now=clock.now, sleep=clock.sleep
    )
    task, stop = await start(scheduler)
    await clock.advance(0.5)
    assert recorder.calls == []
    await clock.advance(2.6)  # 3.1 s after T0: runs at +1 s, +2 s, +3 s
    stop.set()
    await task
    assert [started for *_, started in recorder.calls] == [
        T0 + timedelta(seconds=n) for n in (1, 2, 3)
    ]


async def test_long_sleeps_are_capped_to_notice_clock_jumps():
    clock = FakeTime(T0)
    scheduler = Scheduler(
        [job(cron="0 0 * * *", timezone="UTC")],
        Recorder(clock),
        never_ran(),
        now=clock.now,
        sleep=clock.sleep,
        max_sleep_s=60,
    )
    task, stop = await start(scheduler)
    await clock.advance(60)
    stop.set()
    await task
    assert clock.sleeps == [60, 60]


async def test_missed_runs_are_caught_up_once():
    clock = FakeTime(T0)
    recorder = Recorder(clock)
    jobs = [
        job("caught", cron="*/10 * * * *", timezone="UTC"),
        job("skipped", cron="*/10 * * * *", timezone="UTC", catch_up=False),
        job("new", cron="*/10 * * * *", timezone="UTC"),
    ]
    three_hours_ago = T0 - timedelta(hours=3)
    scheduler = Scheduler(
        jobs,
        recorder,
        never_ran({"caught": three_hours_ago, "skipped": three_hours_ago}),
        now=clock.now,
        sleep=clock.sleep,
    )
    task, stop = await start(scheduler)
    noon = T0.replace(microsecond=0)
    assert recorder.calls == [("caught", noon, T0)]  # the latest missed due time, once
    await clock.advance(600)
    stop.set()
    await task
    ten_past = noon + timedelta(minutes=10)
    assert sorted(recorder.calls[1:]) == [
        ("caught", ten_past, ten_past),
        ("new", ten_past, ten_past),
        ("skipped", ten_past, ten_past),
    ]


async def test_a_run_still_going_skips_due_times_and_stop_waits_for_it():
    clock = FakeTime(T0)
    recorder = Recorder(clock, block=True)
    scheduler = Scheduler(
        [job(every="1s")], recorder, never_ran(), now=clock.now, sleep=clock.sleep
    )
    task, stop = await start(scheduler)
    for _ in range(4):
        await clock.advance(1.0)
    assert len(recorder.calls) == 1  # due times during the run are skipped, not queued
    stop.set()
    await settle()
    assert not task.done()  # waits for the running job, which sees the stop request
    recorder.release.set()
    await task
    assert recorder.stopped
    assert scheduler.snapshot()["tick"] == T0 + timedelta(seconds=5)


async def test_a_failing_run_does_not_stop_the_scheduler():
    clock = FakeTime(T0)
    calls = []

    async def boom(job: JobConfig, due: datetime, stop: asyncio.Event) -> int:
        calls.append(due)
        raise RuntimeError("bug")

    scheduler = Scheduler([job(every="1s")], boom, never_ran(), now=clock.now, sleep=clock.sleep)
    task, stop = await start(scheduler)
    await clock.advance(2)
    stop.set()
    await task
    assert len(calls) == 2


async def test_two_schedulers_started_at_once_run_a_due_job_once(tmp_path: Path):
    """Two schedulers, each with its own connection to the shared history, race for one due time."""
    clock = FakeTime(T0)
    async with shop_site() as (server, _products):
        project: ProjectConfig = project_for(tmp_path)
        the_job = job_for(server, cron="* * * * * *", timezone="UTC")
        paths = JobPaths(tmp_path / "state")
        outcomes = []
        both_tried = asyncio.Event()

        def runner_for(history: RunHistory):
            async def run(job: JobConfig, due: datetime, stop: asyncio.Event) -> int | None:
                outcome = await run_job(job, project, history, paths, scheduled_for=due, stop=stop)
                outcomes.append(outcome)
                if len(outcomes) == 2:
                    both_tried.set()
                return outcome.exit_code

            return run

        async with RunHistory(paths.history) as h1, RunHistory(paths.history) as h2:
            schedulers = [
                Scheduler(
                    [the_job], runner_for(h), h.last_scheduled, now=clock.now, sleep=clock.sleep
                )
                for h in (h1, h2)
            ]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(s.run(stop)) for s in schedulers]
            await settle()
            await clock.advance(1.0)
            async with asyncio.timeout(15):
                await both_tried.wait()
            stop.set()
            await asyncio.gather(*tasks)
            runs = await h1.runs(the_job.name)
    assert len(runs) == 1
    assert sorted(o.exit_code for o in outcomes) == [0, 6]
    assert [o.run_id for o in outcomes if o.run_id] == [runs[0].run_id]
    assert runs[0].scheduled_for == T0.replace(microsecond=0) + timedelta(seconds=1)
    assert runs[0].trigger == "schedule" and runs[0].exit_code == 0
    assert server.paths_seen("shop.test").count("/") == 1
