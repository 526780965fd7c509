"""Job declarations: ``[tool.crawler.jobs.NAME]`` in pyproject.toml or ``[jobs.NAME]`` in jobs.toml.

Every key is checked when the jobs are loaded; an error names the job, the
key, the bad value, the file and what is expected, before anything runs::

    [tool.crawler.jobs.books]
    spider = "books"                       # spider name, module:Class or path/to/file.py
    args = { category = "poetry" }         # spider arguments (like -a)
    settings = { DOWNLOAD_DELAY = 0.5 }    # setting overrides (like -s)
    outputs = ["data/books-%(run_id)s.jsonl", "data/books.db"]
    cron = "0 6 * * *"                     # or: every = "6h"   (neither: manual runs only)
    timezone = "Europe/Berlin"             # of the cron expression (default: the machine's)
    incremental = true                     # If-None-Match / If-Modified-Since across runs
    only_changed = true                    # or only_new: emit only new (or changed) items
    key_field = "url"                      # item identity (default: crawler.item_key())
    resume = true                          # an interrupted run is continued by the next one

    [tool.crawler.jobs.books.checks]
    min_items = 50
    max_error_rate = 0.05
    required_fields = { title = 1.0, price = 0.95 }
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ..errors import ConfigError
from ..settings import Settings

__all__ = [
    "OUTPUT_PLACEHOLDERS",
    "HealthChecks",
    "JobConfig",
    "Schedule",
    "load_jobs",
    "parse_duration",
    "parse_jobs",
]

OUTPUT_PLACEHOLDERS = ("run_id", "job", "spider", "date", "time")
"""``%(name)s`` placeholders allowed in output paths."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a job runs: a cron expression, a fixed interval, or only on demand."""

    cron: str | None = None
    interval_s: float | None = None
    timezone: str | None = None  # IANA name for the cron expression; None = local time

    @property
    def manual(self) -> bool:
        """True if the job never runs by itself."""
        return self.cron is None and self.interval_s is None

    def describe(self) -> str:
        """A short text for tables: ``cron 0 6 * * *``, ``every 1h``, ``manual``."""
        if self.cron is not None:
            return f"cron {self.cron}" + (f" ({self.timezone})" if self.timezone else "")
        if self.interval_s is not None:
            return f"every {format_duration(self.interval_s)}"
        return "manual"


@dataclass(frozen=True, slots=True)
class HealthChecks:
    """Checks on a finished run; any failing one marks the run failed."""

    min_items: int | None = None
    max_error_rate: float | None = None
    required_fields: Mapping[str, float] = field(default_factory=dict)  # field -> min fraction

    @property
    def empty(self) -> bool:
        """True if no check is declared."""
        return self.min_items is None and self.max_error_rate is None and not self.required_fields


@dataclass(frozen=True, slots=True)
class JobConfig:
    """One declared job, validated."""

    name: str
    spider: str
    args: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    schedule: Schedule = field(default_factory=Schedule)
    catch_up: bool = True
    incremental: bool = False
    only: str = "all"  # all | new | changed
    key_field: str | None = None
    hash_field: str | None = None
    keep_cookies: bool = True
    resume: bool = False
    checks: HealthChecks = field(default_factory=HealthChecks)
    source: str = "?"


_KEYS = {
    "spider": "the spider: a name, module:Class, or path/to/file.py",
    "args": "a table of spider arguments",
    "settings": "a table of setting overrides",
    "outputs": "a list of output files (%(run_id)s, %(job)s, %(spider)s, %(date)s, %(time)s)",
    "cron": "a cron expression, e.g. '0 6 * * *' (6 fields: seconds last)",
    "every": "an interval, e.g. '30s', '15m', '6h', '1d' or seconds",
    "timezone": "an IANA time zone name for cron, e.g. 'UTC' or 'Europe/Berlin'",
    "catch_up": "true/false: run once after downtime if a run was missed",
    "incremental": "true/false: send If-None-Match/If-Modified-Since from the last run",
    "only_new": "true/false: emit only items not seen by an earlier successful run",
    "only_changed": "true/false: emit only new items and items whose content changed",
    "key_field": "the item field that identifies an item across runs",
    "hash_field": "an item field to store the item's content hash in",
    "keep_cookies": "true/false: keep cookie jars between runs",
    "resume": "true/false: keep the crawl state so an interrupted run is resumed by the next",
    "checks": "a table: min_items, max_error_rate, required_fields",
}
_CHECK_KEYS = ("min_items", "max_error_rate", "required_fields")


class _Where:
    """Builds error messages naming the job, the key and the file."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source

    def error(self, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(
            f"job {self.name!r} in {self.source}: bad value {key} = {value!r}: expected {expected}"
        )


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a number, or text like ``90s``, ``15m``, ``1h30m``, ``2d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError("expected a duration like '30s', '15m', '1h30m' or '2d'")
            seconds = sum(float(n) * _UNITS_S[u] for n, u in parts)
    else:
        raise ValueError("expected a duration")
    if not seconds > 0:
        raise ValueError("the duration must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1h30m``."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def _bool(where: _Where, table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise where.error(key, value, "true or false")
    return value


def _optional_str(where: _Where, table: Mapping[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise where.error(key, value, _KEYS[key])
    return value


def _schedule(where: _Where, table: Mapping[str, Any]) -> Schedule:
    cron, every, tz = table.get("cron"), table.get("every"), table.get("timezone")
    if cron is not None and every is not None:
        raise ConfigError(
            f"job {where.name!r} in {where.source}: set either cron or every, not both"
        )
    if tz is not None:
        if not isinstance(tz, str):
            raise where.error("timezone", tz, _KEYS["timezone"])
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise where.error("timezone", tz, _KEYS["timezone"]) from None
        if cron is None:
            raise ConfigError(
                f"job {where.name!r} in {where.source}: timezone applies only to a cron schedule"
            )
    if cron is not None:
        if not isinstance(cron, str) or not croniter.is_valid(cron.strip()):
            raise where.error("cron", cron, _KEYS["cron"])
        return Schedule(cron=" ".join(cron.split()), timezone=tz)
    if every is not None:
        try:
            seconds = parse_duration(every)
        except ValueError as exc:
            raise where.error("every", every, f"{exc} (at least 1s)") from None
        if seconds < 1:
            raise where.error("every", every, "at least 1s")
        return Schedule(interval_s=seconds)
    return Schedule()


def _outputs(where: _Where, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise where.error("outputs", value, _KEYS["outputs"])
    sample = dict.fromkeys(OUTPUT_PLACEHOLDERS, "x")
    for path in value:
        try:
            path % sample
        except KeyError as exc:
            known = ", ".join(f"%({p})s" for p in OUTPUT_PLACEHOLDERS)
            raise where.error(
                "outputs", path, f"known placeholders only: %({exc.args[0]})s is not one of {known}"
            ) from None
        except (ValueError, TypeError):
            raise where.error(
                "outputs", path, "a path whose %-placeholders look like %(run_id)s (%% for a %)"
            ) from None
    return tuple(value)


def _checks(where: _Where, value: Any) -> HealthChecks:
    if value is None:
        return HealthChecks()
    if not isinstance(value, dict):
        raise where.error("checks", value, _KEYS["checks"])
    for key in value:
        if key not in _CHECK_KEYS:
            hint = difflib.get_close_matches(key, _CHECK_KEYS, n=1)
            raise ConfigError(
                f"job {where.name!r} in {where.source}: unknown check {key!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (known: {', '.join(_CHECK_KEYS)})"
            )
    min_items = value.get("min_items")
    if min_items is not None and (
        isinstance(min_items, bool) or not isinstance(min_items, int) or min_items < 0
    ):
        raise where.error("checks.min_items", min_items, "a whole number >= 0")
    rate = value.get("max_error_rate")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise where.error("checks.max_error_rate", rate, "a fraction from 0 to 1 (0.05 for 5%)")
        rate = float(rate)
    required = value.get("required_fields", {})
    if isinstance(required, list):
        required = dict.fromkeys(required, 1.0)
    if not isinstance(required, dict):
        raise where.error(
            "checks.required_fields", required, "a list of fields, or {field = fraction}"
        )
    fields: dict[str, float] = {}
    for name, share in required.items():
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise where.error(
                f"checks.required_fields.{name}",
                share,
                "the fraction of items that must have the field, above 0 up to 1 (0.95 = 95%)",
            )
        fields[str(name)] = float(share)
    return HealthChecks(min_items=min_items, max_error_rate=rate, required_fields=fields)


def parse_job(name: str, table: Any, source: str) -> JobConfig:
    """Validate one job table."""
    where = _Where(name, source)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"bad job name {name!r} in {source}: use letters, digits, '_', '-' and '.'"
        )
    if not isinstance(table, dict):
        raise ConfigError(f"job {name!r} in {source} must be a table, got {table!r:.60}")
    for key in table:
        if key not in _KEYS:
            hint = difflib.get_close_matches(key, _KEYS, n=1)
            raise ConfigError(
                f"job {name!r} in {source}: unknown key {key!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (known: {', '.join(_KEYS)})"
            )
    spider = table.get("spider")
    if not isinstance(spider, str) or not spider.strip():
        raise ConfigError(f"job {name!r} in {source}: missing or bad 'spider' ({_KEYS['spider']})")
    args = table.get("args", {})
    if not isinstance(args, dict):
        raise where.error("args", args, _KEYS["args"])
    settings = table.get("settings", {})
    if not isinstance(settings, dict):
        raise where.error("settings", settings, _KEYS["settings"])
    Settings().merged(settings, source=f"job {name!r} settings in {source}")  # fail early
    only_new = _bool(where, table, "only_new", False)
    only_changed = _bool(where, table, "only_changed", False)
    if only_new and only_changed:
        raise ConfigError(
            f"job {name!r} in {source}: set only_new or only_changed, not both"
            " (only_changed emits new items too)"
        )
    return JobConfig(
        name=name,
        spider=spider.strip(),
        args=dict(args),
        settings=dict(settings),
        outputs=_outputs(where, table.get("outputs", [])),
        schedule=_schedule(where, table),
        catch_up=_bool(where, table, "catch_up", True),
        incremental=_bool(where, table, "incremental", False),
        only="new" if only_new else "changed" if only_changed else "all",
        key_field=_optional_str(where, table, "key_field"),
        hash_field=_optional_str(where, table, "hash_field"),
        keep_cookies=_bool(where, table, "keep_cookies", True),
        resume=_bool(where, table, "resume", False),
        checks=_checks(where, table.get("checks")),
        source=source,
    )


def parse_jobs(tables: Any, source: str) -> dict[str, JobConfig]:
    """Validate a ``{name: table}`` mapping of jobs."""
    if not isinstance(tables, dict):
        raise ConfigError(f"jobs in {source} must be a table of [jobs.NAME] tables")
    return {name: parse_job(name, table, source) for name, table in tables.items()}


def load_jobs(
    pyproject_jobs: Any, pyproject_source: str, jobs_file: Path | None
) -> dict[str, JobConfig]:
    """Jobs from ``[tool.crawler.jobs]`` and, if it exists, ``jobs_file`` (``[jobs.NAME]``).

    A name declared in both is an error.
    """
    jobs = parse_jobs(pyproject_jobs or {}, pyproject_source)
    if jobs_file is None or not jobs_file.is_file():
        return jobs
    try:
        data = tomllib.loads(jobs_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {jobs_file}: {exc}") from None
    extra = set(data) - {"jobs"}
    if extra:
        raise ConfigError(
            f"{jobs_file}: unexpected top-level key(s) {', '.join(sorted(extra))};"
            " declare each job as a [jobs.NAME] table"
        )
    for name, job in parse_jobs(data.get("jobs", {}), str(jobs_file)).items():
        if name in jobs:
            raise ConfigError(
                f"job {name!r} is declared twice: in {jobs[name].source} and in {jobs_file}"
            )
        jobs[name] = job
    return jobs
