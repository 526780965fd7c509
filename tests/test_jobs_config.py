"""Job tables: parsing, validation errors that name the job and key, and due-time math."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crawler import Settings
from crawler.errors import ConfigError, SettingsError
from crawler.jobs import JobConfig, Schedule, load_jobs, next_due, parse_jobs, previous_due
from crawler.jobs.config import format_duration, parse_duration
from crawler.jobs.scheduler import startup_due

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def one(table: dict, name: str = "books") -> JobConfig:
    return parse_jobs({name: table}, "test.toml")[name]


def test_full_job_table():
    job = one(
        {
            "spider": "books",
            "args": {"category": "poetry"},
            "settings": {"DOWNLOAD_DELAY": 0.5},
            "outputs": ["data/books-%(run_id)s.jsonl", "data/books.db"],
            "cron": "0  6 * * *",
            "timezone": "Europe/Berlin",
            "incremental": True,
            "only_changed": True,
            "key_field": "url",
            "checks": {
                "min_items": 5,
                "max_error_rate": 0.05,
                "required_fields": {"title": 1, "price": 0.95},
            },
        }
    )
    assert job.spider == "books"
    assert job.args == {"category": "poetry"}
    assert job.outputs == ("data/books-%(run_id)s.jsonl", "data/books.db")
    assert job.schedule == Schedule(cron="0 6 * * *", timezone="Europe/Berlin")
    assert job.only == "changed" and job.incremental and job.keep_cookies and job.catch_up
    assert job.checks.min_items == 5
    assert job.checks.required_fields == {"title": 1.0, "price": 0.95}
    assert job.schedule.describe() == "cron 0 6 * * * (Europe/Berlin)"


def test_minimal_job_is_manual():
    job = one({"spider": "x.py", "checks": {"required_fields": ["title"]}})
    assert job.schedule.manual and job.schedule.describe() == "manual"
    assert job.only == "all" and job.checks.required_fields == {"title": 1.0}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "job 'books' in test.toml: missing or bad 'spider'"),
        ({"spider": "s", "cronn": "* * * * *"}, "unknown key 'cronn'; did you mean 'cron'?"),
        ({"spider": "s", "cron": "61 * * * *"}, "bad value cron = '61 * * * *'"),
        ({"spider": "s", "cron": "* * * * *", "every": "1h"}, "either cron or every"),
        ({"spider": "s", "every": "soon"}, "bad value every = 'soon'"),
        ({"spider": "s", "every": 0.5}, "at least 1s"),
        ({"spider": "s", "cron": "0 * * * *", "timezone": "Mars/Base"}, "timezone"),
        ({"spider": "s", "every": "1h", "timezone": "UTC"}, "only to a cron schedule"),
        ({"spider": "s", "outputs": ["a-%(when)s.jsonl"]}, "%(when)s is not one of"),
        ({"spider": "s", "outputs": "a-%d.jsonl"}, "bad value outputs"),
        ({"spider": "s", "only_new": True, "only_changed": True}, "not both"),
        ({"spider": "s", "incremental": "yes"}, "bad value incremental = 'yes'"),
        ({"spider": "s", "args": ["a"]}, "bad value args"),
        ({"spider": "s", "checks": {"min_item": 1}}, "unknown check 'min_item'; did you mean"),
        ({"spider": "s", "checks": {"max_error_rate": 5}}, "checks.max_error_rate = 5"),
        (
            {"spider": "s", "checks": {"required_fields": {"price": 95}}},
            "checks.required_fields.price = 95",
        ),
    ],
)
def test_errors_name_the_job_and_key(table, message):
    with pytest.raises(ConfigError) as info:
        one(table)
    assert message in str(info.value)
    assert "books" in str(info.value) or "job" in str(info.value)


def test_bad_setting_names_the_job():
    with pytest.raises(SettingsError, match=r"DOWNLOAD_DELAI.*job 'books' settings in test.toml"):
        one({"spider": "s", "settings": {"DOWNLOAD_DELAI": 1}})


def test_bad_job_name():
    with pytest.raises(ConfigError, match=r"bad job name '\.\./x'"):
        parse_jobs({"../x": {"spider": "s"}}, "test.toml")


def test_jobs_toml_merges_and_refuses_duplicates(tmp_path):
    path = tmp_path / "jobs.toml"
    path.write_text('[jobs.extra]\nspider = "a"\nevery = "15m"\n')
    jobs = load_jobs({"main": {"spider": "b"}}, "pyproject.toml", path)
    assert sorted(jobs) == ["extra", "main"]
    assert jobs["extra"].schedule.interval_s == 900 and jobs["extra"].source == str(path)
    with pytest.raises(ConfigError, match="declared twice"):
        load_jobs({"extra": {"spider": "b"}}, "pyproject.toml", path)
    path.write_text('[extra]\nspider = "a"\n')
    with pytest.raises(ConfigError, match=r"unexpected top-level key\(s\) extra"):
        load_jobs({}, "pyproject.toml", path)
    assert load_jobs({}, "pyproject.toml", tmp_path / "missing.toml") == {}


def test_durations():
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration(" 2d ") == 172800
    assert parse_duration(30) == 30
    assert parse_duration("45") == 45
    for bad in ("", "1x", "h", "-5s", True, "1h 2y"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(5400) == "1h30m" and format_duration(1.5) == "1.5s"


def test_cron_due_times_in_utc_and_timezones():
    daily = Schedule(cron="0 6 * * *", timezone="UTC")
    assert next_due(daily, T0) == datetime(2024, 3, 2, 6, tzinfo=UTC)
    assert previous_due(daily, T0) == datetime(2024, 3, 1, 6, tzinfo=UTC)
    # at a due time exactly: that one is the previous, the next is strictly after
    at = datetime(2024, 3, 1, 6, tzinfo=UTC)
    assert previous_due(daily, at) == at
    assert next_due(daily, at) == datetime(2024, 3, 2, 6, tzinfo=UTC)
    berlin = Schedule(cron="0 6 * * *", timezone="Europe/Berlin")  # UTC+1 in March
    assert next_due(berlin, T0) == datetime(2024, 3, 2, 5, tzinfo=UTC)
    seconds = Schedule(cron="* * * * * *", timezone="UTC")  # six fields: seconds last
    assert next_due(seconds, T0 + timedelta(milliseconds=300)) == T0 + timedelta(seconds=1)


def test_interval_due_times_follow_the_anchor_grid():
    hourly = Schedule(interval_s=3600)
    assert next_due(hourly, T0) == T0 + timedelta(hours=1)  # never ran: one interval
    anchor = T0 - timedelta(minutes=150)  # grid: ..., T0-30m, T0+30m
    assert next_due(hourly, T0, anchor) == T0 + timedelta(minutes=30)
    assert previous_due(hourly, T0, anchor) == T0 - timedelta(minutes=30)
    assert previous_due(hourly, T0, None) is None
    assert next_due(Schedule(), T0) is None


def test_startup_catches_up_once_at_most():
    job = one({"spider": "s", "cron": "*/10 * * * *", "timezone": "UTC"})
    # last ran 3 hours ago: many runs missed, one catch-up run due now (the latest missed)
    assert startup_due(job, T0 + timedelta(minutes=3), T0 - timedelta(hours=3)) == T0
    # ran at the latest due time: nothing missed
    assert startup_due(job, T0 + timedelta(minutes=3), T0) == T0 + timedelta(minutes=10)
    # never ran: nothing missed either
    assert startup_due(job, T0 + timedelta(minutes=3), None) == T0 + timedelta(minutes=10)
    no_catch_up = one({"spider": "s", "cron": "*/10 * * * *", "catch_up": False})
    assert startup_due(no_catch_up, T0 + timedelta(minutes=3), T0 - timedelta(hours=3)) == (
        T0 + timedelta(minutes=10)
    )
    every = one({"spider": "s", "every": "1h"})
    assert startup_due(every, T0, T0 - timedelta(minutes=90)) == T0 - timedelta(minutes=30)
    assert startup_due(every, T0, T0 - timedelta(minutes=30)) == T0 + timedelta(minutes=30)


def _scheduled_jobs_doc() -> str:
    """The "Scheduled jobs" page of the documentation (docs/scheduled-jobs.md)."""
    page = Path(__file__).resolve().parents[1] / "docs" / "scheduled-jobs.md"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Scheduled jobs"), page
    return text


def test_the_documented_example_job_is_valid():
    doc = _scheduled_jobs_doc()
    toml_text = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    data = tomllib.loads(toml_text)
    Settings().merged({k: v for k, v in data["tool"]["crawler"].items() if k != "jobs"})
    job = parse_jobs(data["tool"]["crawler"]["jobs"], "docs")["books"]
    assert job.only == "changed" and job.incremental and job.checks.min_items == 50
    assert len(job.outputs) == 2 and job.schedule.timezone == "Europe/Berlin"
    spider_code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(spider_code, "docs-spider", "exec"), namespace)
    assert namespace["BooksSpider"].name == "books"
