"""Run one job once: lock, crawl, check, record, and answer with an exit code.

The steps of :func:`run_job`:

1. claim the job in the run history (its lock plus a new ``runs`` row; a due
   time that already ran, or a live holder, means no run);
2. build the settings (defaults < ``[tool.crawler]`` < the spider's < the job's),
   load the spider, and make the outputs with ``%(run_id)s``, ``%(job)s``,
   ``%(spider)s``, ``%(date)s`` and ``%(time)s`` filled in;
3. crawl, with the job's pipelines first (health probe, item changes), then the
   outputs, and the conditional-requests middleware; a heartbeat keeps the lock alive;
4. evaluate the health checks, commit the incremental state if the run succeeded,
   and record the outcome in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

from ..engine import Crawler, CrawlResult
from ..errors import ConfigError, SpiderLoadError
from ..loglines import get_logger
from ..settings import Settings
from ..spider import Spider
from .config import JobConfig
from .health import HealthProbe, evaluate
from .history import Holder, RunHistory, RunRecord
from .incremental import ConditionalRequests, CookieKeeper, ItemChanges, JobState
from .scheduler import utc_now

__all__ = ["ExitCode", "JobPaths", "RunOutcome", "run_job"]

logger = get_logger("crawler.jobs")


class ExitCode(IntEnum):
    """Exit codes of a job run (the ``crawl`` codes, plus 4, 5 and 6)."""

    OK = 0
    INTERNAL = 1
    CONFIG = 2
    SPIDER = 3
    HEALTH_CHECK = 4
    CRAWL_ERRORS = 5
    ALREADY_RUNNING = 6
    OUTPUT_FAILED = 7
    STATE_FAILED = 8
    INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class JobPaths:
    """Where jobs keep their files under ``root`` (default ``.crawler/jobs``).

    ``history.db`` (every job's runs and locks), ``<job>/job.db`` (validators,
    item hashes, cookies) and, for ``resume`` jobs, ``<job>/crawl/`` (the STATE_DIR).
    """

    root: Path

    @property
    def history(self) -> Path:
        """The run history shared by every job of the project."""
        return self.root / "history.db"

    def state(self, job: str) -> Path:
        """The job's validators, item hashes and cookies."""
        return self.root / job / "job.db"

    def crawl_state(self, job: str) -> Path:
        """The STATE_DIR of a ``resume`` job."""
        return self.root / job / "crawl"


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What happened: the exit code, the run id (None if no run started) and its record."""

    exit_code: int
    run_id: str | None = None
    record: RunRecord | None = None
    message: str = ""


def output_paths(
    job: JobConfig, root: Path, run_id: str, spider: str, started: datetime
) -> list[str]:
    """The job's output paths with placeholders filled in, relative ones under ``root``."""
    values = {
        "run_id": run_id,
        "job": job.name,
        "spider": spider,
        "date": f"{started:%Y-%m-%d}",
        "time": f"{started:%H%M%S}",
    }
    paths = []
    for template in job.outputs:
        path = template % values
        if path != "-" and not Path(path).is_absolute():
            path = str(root / path)
        paths.append(path)
    return paths


def _spider_target(target: str, root: Path) -> str:
    path, sep, rest = target.partition(":")
    if path.endswith(".py") and not Path(path).is_absolute():
        return str(root / path) + sep + rest
    return target


RESUMABLE = frozenset(
    ("interrupted", "cancelled", "crashed", "lock_lost", "output_failed", "checkpoint_failed")
)
# Finish reasons of a crawl that stopped on an error of its own, and their exit codes.
_FAILED = {"output_failed": ExitCode.OUTPUT_FAILED, "checkpoint_failed": ExitCode.STATE_FAILED}
"""Finish reasons after which a job with a STATE_DIR continues its crawl instead of restarting."""


@dataclass(slots=True)
class _Prepared:
    spider: Spider
    settings: Settings
    outputs: list[str]
    exporters: list[Any]
    restart: bool = False


def _prepare(
    job: JobConfig, project: Any, paths: JobPaths, run_id: str, started: datetime
) -> _Prepared:
    """Settings, spider and exporters; raises ConfigError / SpiderLoadError."""
    from ..cli.loader import load_spider_class

    spider_cls = load_spider_class(
        _spider_target(job.spider, project.root), project.spider_modules, project.root
    )
    settings = Settings.build(
        (project.source, project.settings),
        (f"{spider_cls.__name__}.settings", dict(spider_cls.settings)),
        (f"job {job.name!r} settings", job.settings),
    )
    if job.resume and not settings.STATE_DIR:
        state_dir = str(paths.crawl_state(job.name))
        settings = settings.merged({"STATE_DIR": state_dir}, source=f"job {job.name!r} resume")
    try:
        spider = spider_cls(**job.args)
    except Exception as exc:
        raise SpiderLoadError(f"cannot create spider {spider_cls.__name__}: {exc}") from exc
    name = spider.name or spider_cls.__name__
    outputs = output_paths(job, project.root, run_id, name, started)
    exporters = []
    if outputs:
        from crawler.pipelines import exporter_for

        exporters = [exporter_for(path, overwrite=False) for path in outputs]
    return _Prepared(spider, settings, outputs, exporters)


async def run_job(
    job: JobConfig,
    project: Any,
    history: RunHistory,
    paths: JobPaths,
    *,
    scheduled_for: datetime | None = None,
    stop: asyncio.Event | None = None,
    holder: Holder | None = None,
    now: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> RunOutcome:
    """Run ``job`` once now (``scheduled_for``: the due time a scheduler runs it for).

    ``project`` is a :class:`crawler.cli.project.ProjectConfig`; ``stop`` asks a
    running crawl to stop (SIGTERM). Never raises for a failed run: the outcome's
    exit code says what happened, and the history has the details.
    """
    holder = holder or Holder()
    claim = await history.claim(job.name, job.spider, job.args, holder, scheduled_for=scheduled_for)
    if claim.run_id is None:
        logger.info("%s: not started", claim.reason)
        return RunOutcome(ExitCode.ALREADY_RUNNING, message=claim.reason)
    if claim.stolen_from is not None:
        logger.warning(
            "job %s: took over the lock of a crashed run (%s)",
            job.name,
            claim.stolen_from.describe(),
        )
    run_id = claim.run_id
    started = now()
    record = RunRecord(
        run_id=run_id,
        job=job.name,
        spider=job.spider,
        arguments=dict(job.args),
        trigger="manual" if scheduled_for is None else "schedule",
        scheduled_for=scheduled_for,
        started_at=started,
    )
    logger.info("job %s: run %s started", job.name, run_id)
    beat = asyncio.create_task(_heartbeat(history, job.name, holder, sleep))
    try:
        await _execute(job, project, history, paths, record, stop or asyncio.Event(), beat)
    except asyncio.CancelledError:
        record.finish_reason, record.exit_code = "cancelled", ExitCode.INTERRUPTED
        raise
    except Exception as exc:
        logger.exception("job %s: run %s aborted by an internal error", job.name, run_id)
        record.finish_reason, record.exit_code = "internal_error", ExitCode.INTERNAL
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        record.ended_at = now()
        await asyncio.shield(_record(history, record, job.name, holder))
    assert record.exit_code is not None
    logger.info(
        "job %s: run %s %s (exit code %d)", job.name, run_id, record.finish_reason, record.exit_code
    )
    return RunOutcome(int(record.exit_code), run_id, record, record.finish_reason or "")


async def _record(history: RunHistory, record: RunRecord, job: str, holder: Holder) -> None:
    try:
        await history.finish(record)
    finally:
        await history.release(job, holder)


async def _heartbeat(
    history: RunHistory, job: str, holder: Holder, sleep: Callable[[float], Awaitable[object]]
) -> None:
    """Refresh the lock; returns if it was taken over (the run is then stopped)."""
    while True:
        await sleep(history.stale_s / 4)
        try:
            ours = await history.heartbeat(job, holder)
        except Exception as exc:  # e.g. the database is busy: try again next beat
            logger.warning("job %s: heartbeat failed: %s", job, exc)
            continue
        if not ours:
            logger.error("job %s: lost its lock (taken over as stale): stopping", job)
            return


async def _execute(
    job: JobConfig,
    project: Any,
    history: RunHistory,
    paths: JobPaths,
    record: RunRecord,
    stop: asyncio.Event,
    beat: asyncio.Task[None],
) -> None:
    """Crawl and fill in ``record`` (finish reason, exit code, stats, counts, checks)."""
    try:
        prepared = _prepare(job, project, paths, record.run_id, record.started_at)
    except SpiderLoadError as exc:
        _failed(job, record, "spider_error", ExitCode.SPIDER, exc)
        return
    except ConfigError as exc:
        _failed(job, record, "config_error", ExitCode.CONFIG, exc)
        return
    spider = prepared.spider
    record.spider = spider.name or type(spider).__name__
    if prepared.settings.STATE_DIR:
        # A finished crawl state would make the engine refuse to crawl: start it over,
        # unless the previous run stopped early, which this one then continues.
        previous = [run for run in await history.runs(job.name, 2) if run.run_id != record.run_id]
        prepared.restart = not previous or previous[0].finish_reason not in RESUMABLE
        if not prepared.restart:
            logger.info(
                "job %s: resuming the %s run %s",
                job.name,
                previous[0].finish_reason,
                previous[0].run_id,
            )
    record.outputs = prepared.outputs
    try:
        async with JobState(paths.state(job.name)) as state:
            probe = HealthProbe(job.checks.required_fields)
            changes = ItemChanges(
                state, job.only, key_field=job.key_field, hash_field=job.hash_field
            )
            tell = bool(spider.handle_unchanged)
            conditional = ConditionalRequests(state, tell=tell)
            result = await _crawl(job, prepared, state, probe, changes, conditional, stop, beat)
            _finish(job, record, result, probe, changes, conditional)
            if record.exit_code == ExitCode.OK:
                await state.commit(record.run_id, record.started_at)
    except ConfigError as exc:
        _failed(job, record, "config_error", ExitCode.CONFIG, exc)


def _failed(job: JobConfig, record: RunRecord, reason: str, code: ExitCode, exc: Exception) -> None:
    record.finish_reason, record.exit_code, record.error = reason, code, str(exc)
    logger.error("job %s: %s", job.name, exc)


async def _crawl(
    job: JobConfig,
    prepared: _Prepared,
    state: JobState,
    probe: HealthProbe,
    changes: ItemChanges,
    conditional: ConditionalRequests,
    stop: asyncio.Event,
    beat: asyncio.Task[None],
) -> CrawlResult:
    crawler = Crawler(
        prepared.spider,
        prepared.settings,
        pipelines=[probe, changes, *prepared.exporters],
        restart=prepared.restart,
        conditional=conditional if job.incremental else None,
        session_hooks=[CookieKeeper(state)] if job.keep_cookies else (),
    )

    async def watch() -> None:
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({stopper, beat}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        crawler.request_stop("interrupted" if stop.is_set() else "lock_lost")

    watcher = asyncio.create_task(watch())
    try:
        return await crawler.run()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def _finish(
    job: JobConfig,
    record: RunRecord,
    result: CrawlResult,
    probe: HealthProbe,
    changes: ItemChanges,
    conditional: ConditionalRequests,
) -> None:
    stats = dict(result.stats)
    for key, value in conditional.counts.items():
        stats[f"incremental/{key}"] = value
    for key, value in changes.counts.items():
        stats[f"item_changes/{key}"] = value
    record.stats = stats
    record.items = int(stats.get("items", 0))
    record.item_counts = {
        "produced": probe.items,
        "emitted": record.items,
        "dropped": int(stats.get("items_dropped", 0)),
        **changes.counts,
    }
    checks = evaluate(job.checks, stats, probe)
    record.checks = [check.to_dict() for check in checks]
    failed = {check.name for check in checks if not check.ok}
    for check in checks:
        if not check.ok:
            logger.error("job %s: health check %s failed: %s", job.name, check.name, check.detail)
    if result.finish_reason in _FAILED:
        record.finish_reason, record.exit_code = result.finish_reason, _FAILED[result.finish_reason]
        record.error = str(result.stats.get("error", ""))
    elif result.interrupted or result.finish_reason == "lock_lost":
        record.finish_reason, record.exit_code = result.finish_reason, ExitCode.INTERRUPTED
    elif "max_error_rate" in failed:
        record.finish_reason, record.exit_code = "too_many_errors", ExitCode.CRAWL_ERRORS
    elif failed:
        record.finish_reason, record.exit_code = "checks_failed", ExitCode.HEALTH_CHECK
    else:
        record.finish_reason, record.exit_code = result.finish_reason, ExitCode.OK
