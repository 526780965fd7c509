"""Scheduled crawl jobs: declarations, due times, run history, incremental state, runner.

::

    jobs table (pyproject.toml / jobs.toml) ──► config.JobConfig
                                                    │
    crawl scheduler ── scheduler.Scheduler (due times, injected clock) ──┐
    crawl jobs run NAME / cron / systemd ────────────────────────────────┤
                                                                         ▼
    runner.run_job: history.RunHistory.claim (lock + runs row) ──► Crawler(spider, settings,
        pipelines=[health.HealthProbe, incremental.ItemChanges, exporters…, CookieKeeper],
        conditional=incremental.ConditionalRequests) ──► health.evaluate ──► JobState.commit (if ok)
        ──► RunHistory.finish + release ──► exit code
"""

from .config import HealthChecks, JobConfig, Schedule, load_jobs, parse_jobs
from .health import CheckResult, HealthProbe
from .history import Claim, Holder, RunHistory, RunRecord
from .incremental import ConditionalRequests, CookieKeeper, ItemChanges, JobState
from .runner import ExitCode, JobPaths, RunOutcome, run_job
from .scheduler import Scheduler, next_due, previous_due, startup_due

__all__ = [
    "CheckResult",
    "Claim",
    "ConditionalRequests",
    "CookieKeeper",
    "ExitCode",
    "HealthChecks",
    "HealthProbe",
    "Holder",
    "ItemChanges",
    "JobConfig",
    "JobPaths",
    "JobState",
    "RunHistory",
    "RunOutcome",
    "RunRecord",
    "Schedule",
    "Scheduler",
    "load_jobs",
    "next_due",
    "parse_jobs",
    "previous_due",
    "run_job",
    "startup_due",
]
