"""``crawl jobs list|run|history`` and ``crawl scheduler``: declared, recurring crawl jobs.

Jobs are declared in ``[tool.crawler.jobs.NAME]`` (pyproject.toml) or
``[jobs.NAME]`` in ``jobs.toml`` beside it (see :mod:`crawler.jobs.config`).
Their history, locks and state live in ``--state-dir`` (default
``.crawler/jobs`` beside pyproject.toml, or ``$CRAWLER_JOBS_DIR``).

Exit codes of ``crawl jobs run`` (the ``crawl`` table, plus 4, 5 and 6):

====  =====================================================================
code  meaning
====  =====================================================================
0     the run finished and every health check passed
1     an unexpected internal error (a bug: please report it)
2     configuration error (bad job table, unknown job, bad setting or output)
3     the job's spider cannot be found, imported or created
4     a health check failed (min_items, required_fields): see the history
5     crawl errors over the threshold (the max_error_rate check failed)
6     not started: the job is already running (its lock is held)
7     an output failed (disk full, ...): the next run of the job resumes
8     the crawl state could not be saved: the next run of the job resumes
130   interrupted (SIGINT/SIGTERM): pipelines were flushed, the run recorded
====  =====================================================================

``crawl scheduler`` exits 0 when stopped by SIGTERM/SIGINT (after the
running jobs have stopped and been recorded) and 2 on a configuration error.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from ..errors import ConfigError
from ..jobs.config import JobConfig, load_jobs
from ..jobs.history import RunHistory, RunRecord
from ..jobs.runner import ExitCode, JobPaths, run_job
from ..jobs.scheduler import Scheduler, startup_due, utc_now
from ..loglines import get_logger
from ..loops import run as run_loop
from .logs import setup_logging
from .project import ProjectConfig, load_project

__all__ = ["jobs_group", "scheduler_command"]

logger = get_logger("crawler.cli")

STATE_DIR_ENV = "CRAWLER_JOBS_DIR"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Context:
    project: ProjectConfig
    jobs: dict[str, JobConfig]
    paths: JobPaths


def _load(jobs_file: str | None, state_dir: str | None) -> _Context:
    """Project, jobs and paths, or exit 2 with the error."""
    try:
        project = load_project()
        path = Path(jobs_file) if jobs_file else project.root / "jobs.toml"
        if jobs_file and not path.is_file():
            raise ConfigError(f"jobs file {jobs_file!r} does not exist")
        jobs = load_jobs(project.jobs, project.source, path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.CONFIG)
    root = Path(state_dir or os.environ.get(STATE_DIR_ENV) or project.root / ".crawler" / "jobs")
    return _Context(project, jobs, JobPaths(root))


def _run(coro: Coroutine[Any, Any, _T], context: _Context, job: JobConfig | None = None) -> _T:
    """``asyncio.run(coro)`` on the LOOP of the project (and the job's settings), or exit 2."""
    chosen = {**context.project.settings, **(job.settings if job is not None else {})}
    try:
        return run_loop(coro, str(chosen.get("LOOP", "auto")).strip().lower())
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.CONFIG)


def _job(context: _Context, name: str) -> JobConfig:
    job = context.jobs.get(name)
    if job is None:
        known = ", ".join(sorted(context.jobs)) or "none declared"
        click.echo(f"error: no job named {name!r} (known: {known})", err=True)
        sys.exit(ExitCode.CONFIG)
    return job


def _options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--jobs-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="A jobs.toml with [jobs.NAME] tables (default: jobs.toml beside pyproject.toml).",
    )(command)
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False),
        default=None,
        help=f"Run history, locks and job state (default: .crawler/jobs; ${STATE_DIR_ENV}).",
    )(command)


@contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop``: running crawls finish their requests in flight."""
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        logger.warning("received %s: stopping (requests in flight finish first)", name)
        stop.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _result(run: RunRecord | None) -> str:
    if run is None:
        return "never run"
    if run.exit_code is None:
        return f"{_when(run.started_at)} {run.finish_reason or 'running'}"
    return f"{_when(run.started_at)} exit {run.exit_code} {run.finish_reason or ''}".rstrip()


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@click.group("jobs")
def jobs_group() -> None:
    """Declared crawl jobs: list them, run one now, show its run history.

    \b
    Examples:
      crawl jobs list
      crawl jobs run nightly-books
      crawl jobs history nightly-books -n 5
    """


@jobs_group.command("list")
@_options
def list_jobs(jobs_file: str | None, state_dir: str | None) -> None:
    """Each job with its schedule, next run time and last result.

    \b
    Example:
      crawl jobs list --jobs-file jobs.toml
    """
    context = _load(jobs_file, state_dir)
    rows = _run(_list_rows(context), context)
    _table([["JOB", "SPIDER", "SCHEDULE", "NEXT RUN", "LAST RUN"], *rows])


async def _list_rows(context: _Context) -> list[list[str]]:
    rows = []
    now = utc_now()
    async with RunHistory(context.paths.history) as history:
        for name, job in sorted(context.jobs.items()):
            last = await history.last_run(name)
            last_scheduled = await history.last_scheduled(name)
            due = startup_due(job, now, last_scheduled)
            if due is None:
                next_run = "manual"
            elif last_scheduled is None and job.schedule.interval_s is not None:
                next_run = f"{job.schedule.describe().removeprefix('every ')} after start"
            elif due <= now:
                next_run = f"now (missed {_when(due)})"
            else:
                next_run = _when(due)
            rows.append([name, job.spider, job.schedule.describe(), next_run, _result(last)])
    return rows


@jobs_group.command("run")
@click.argument("name")
@_options
@click.option("-L", "--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR.")
def run_one(name: str, jobs_file: str | None, state_dir: str | None, log_level: str) -> None:
    """Run job NAME now (what a cron entry or systemd timer calls).

    \b
    Example:
      crawl jobs run nightly-books      # exit 0 ok, 4 check failed, 6 already running
    """
    setup_logging(log_level)
    context = _load(jobs_file, state_dir)
    job = _job(context, name)
    code = _run(_run_one(context, job), context, job)
    sys.exit(code)


async def _run_one(context: _Context, job: JobConfig) -> int:
    stop = asyncio.Event()
    try:
        async with RunHistory(context.paths.history) as history:
            with _signals(stop):
                outcome = await run_job(job, context.project, history, context.paths, stop=stop)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        return ExitCode.CONFIG
    if outcome.run_id is None:
        click.echo(f"{outcome.message}: not started", err=True)
    elif outcome.record is not None:
        click.echo(_summary(outcome.record), err=True)
    return outcome.exit_code


def _summary(run: RunRecord) -> str:
    stats = run.stats
    lines = [
        f"run {run.run_id} of job {run.job}: {run.finish_reason} (exit code {run.exit_code})",
        f"  pages {stats.get('pages', 0)}, unchanged {stats.get('incremental/unchanged', 0)},"
        f" items {run.items or 0} emitted of {run.item_counts.get('produced', 0)}",
    ]
    lines += [f"  output {path}" for path in run.outputs]
    lines += [
        f"  check {c['check']}: {'ok' if c['ok'] else 'FAILED'} ({c['detail']})" for c in run.checks
    ]
    if run.error:
        lines.append(f"  error: {run.error}")
    return "\n".join(lines)


@jobs_group.command("history")
@click.argument("name", required=False)
@_options
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run (with stats).")
def history_command(
    name: str | None, jobs_file: str | None, state_dir: str | None, limit: int, as_json: bool
) -> None:
    """The run history of job NAME (of every job without NAME), newest first.

    Times are shown in the local time zone, named.

    \b
    Examples:
      crawl jobs history                   # every job's runs
      crawl jobs history nightly-books -n 5 --json
    """
    context = _load(jobs_file, state_dir)
    if name is not None:
        _job(context, name)
        names = [name]
    else:
        names = sorted(context.jobs)
    runs = _run(_all_runs(context.paths, names, limit), context)
    if as_json:
        for run in runs:
            click.echo(orjson.dumps(run.to_dict(), default=str).decode())
        return
    if not runs:
        which = f"job {name} has" if name is not None else "no job has"
        click.echo(f"{which} not run yet", err=True)
        return
    rows = [
        [
            "JOB",
            "RUN",
            "TRIGGER",
            "STARTED",
            "SECONDS",
            "EXIT",
            "REASON",
            "PAGES",
            "ITEMS",
            "FAILED",
        ]
    ]
    for run in runs:
        seconds = f"{(run.ended_at - run.started_at).total_seconds():.1f}" if run.ended_at else "-"
        failed = ",".join(c["check"] for c in run.checks if not c["ok"])
        rows.append(
            [
                run.job,
                run.run_id,
                run.trigger,
                _when(run.started_at),
                seconds,
                "-" if run.exit_code is None else str(run.exit_code),
                run.finish_reason or "running",
                str(run.stats.get("pages", 0)),
                str(run.items if run.items is not None else "-"),
                failed or "-",
            ]
        )
    _table(rows)


async def _all_runs(paths: JobPaths, names: list[str], limit: int) -> list[RunRecord]:
    """The newest ``limit`` runs of the jobs ``names``, newest first."""
    runs: list[RunRecord] = []
    async with RunHistory(paths.history) as history:
        for name in names:
            runs += await history.runs(name, limit)
    runs.sort(key=lambda run: run.started_at, reverse=True)
    return runs[:limit]


@click.command("scheduler")
@click.argument("names", nargs=-1)
@_options
@click.option("-L", "--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR.")
def scheduler_command(
    names: tuple[str, ...], jobs_file: str | None, state_dir: str | None, log_level: str
) -> None:
    """Run jobs when they are due until SIGTERM (only NAMES if given).

    \b
    Examples:
      crawl scheduler                     # every job in [tool.crawler.jobs]
      crawl scheduler nightly-books -L DEBUG
    """
    setup_logging(log_level)
    context = _load(jobs_file, state_dir)
    jobs = [_job(context, name) for name in names] if names else list(context.jobs.values())
    try:
        _run(_serve(context, jobs), context)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.CONFIG)
    sys.exit(ExitCode.OK)


async def _serve(context: _Context, jobs: list[JobConfig]) -> None:
    stop = asyncio.Event()
    async with RunHistory(context.paths.history) as history:

        async def run(job: JobConfig, due: datetime, stop: asyncio.Event) -> int | None:
            outcome = await run_job(
                job, context.project, history, context.paths, scheduled_for=due, stop=stop
            )
            return outcome.exit_code if outcome.run_id is not None else None

        scheduler = Scheduler(jobs, run, history.last_scheduled)
        with _signals(stop):
            logger.info("scheduler started with %d job(s); SIGTERM stops it", len(scheduler.jobs))
            await scheduler.run(stop)
    logger.info("scheduler stopped")
