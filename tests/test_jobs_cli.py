"""`crawl jobs list|run|history` and `crawl scheduler` as processes: exit codes, locks, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from test_jobs_runner import SPIDER, first_product_request, shop_of, shop_site

from crawler.cli import main
from crawler.jobs import ExitCode, JobPaths, RunHistory

# Through `crawl` once the commands are registered there; until then, the click objects.
if "jobs" in main.commands:
    JOBS = [sys.executable, "-m", "crawler", "jobs"]
    SCHEDULER = [sys.executable, "-m", "crawler", "scheduler"]
else:
    JOBS = [sys.executable, "-c", "from crawler.cli.jobs import jobs_group as g; g()"]
    SCHEDULER = [sys.executable, "-c", "from crawler.cli.jobs import scheduler_command as c; c()"]


def project(root: Path, port: int, job_extra: str = "", schedule: str = 'every = "1h"') -> None:
    (root / "shop_spider.py").write_text(SPIDER)
    (root / "pyproject.toml").write_text(
        f"""
[project]
name = "demo"

[tool.crawler]
ROBOTSTXT_OBEY = false
PROGRESS_INTERVAL = 0

[tool.crawler.jobs.shop]
spider = "shop_spider.py:ShopSpider"
args = {{ start_urls = "http://shop.test:{port}/" }}
settings = {{ RESOLVE = {{ "shop.test" = "127.0.0.1" }} }}
outputs = ["out/items-%(run_id)s.jsonl"]
{schedule}
{job_extra}
"""
    )


async def start(command: list[str], *args: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command,
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def jobs(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await start(JOBS, *args, cwd=cwd)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def is_file(path: str | Path) -> bool:
    return Path(path).is_file()


async def wait_for_log(proc: asyncio.subprocess.Process, marker: bytes) -> bytes:
    assert proc.stderr is not None
    seen = b""
    async with asyncio.timeout(20):
        while marker not in seen:
            line = await proc.stderr.readline()
            if not line:
                raise AssertionError(f"process ended before logging {marker!r}: {seen.decode()}")
            seen += line
    return seen


async def test_run_list_and_history(tmp_path):
    async with shop_site() as (server, _products):
        project(tmp_path, server.port)
        code, _, err = await jobs("list", cwd=tmp_path)
        assert code == 0, err
        code, _, err = await jobs("run", "shop", cwd=tmp_path)
        assert code == 0, err
        assert "run 2" in err and "finished (exit code 0)" in err and "items 3 emitted of 3" in err
        code, listing, err = await jobs("list", cwd=tmp_path)
    assert code == 0, err
    header, row = listing.splitlines()
    assert header.split() == ["JOB", "SPIDER", "SCHEDULE", "NEXT", "RUN", "LAST", "RUN"]
    assert row.startswith("shop") and "every 1h" in row and "exit 0 finished" in row
    code, table, err = await jobs("history", "shop", cwd=tmp_path)
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["JOB", "RUN", "TRIGGER", "STARTED"] and len(lines) == 2
    assert " manual " in lines[1] and " finished " in lines[1]
    started = lines[1].split()[3:6]  # date, time and the time zone's name
    assert len(started[0]) == 10 and len(started[1]) == 8 and started[2].isalpha(), lines[1]
    code, every_job, err = await jobs("history", cwd=tmp_path)  # no name: every job
    assert code == 0, err
    assert every_job.splitlines()[1].startswith("shop "), every_job
    code, as_json, err = await jobs("history", "shop", "--json", cwd=tmp_path)
    run = json.loads(as_json)
    assert run["exit_code"] == 0 and run["stats"]["pages"] == 4 and run["items"] == 3
    assert is_file(run["outputs"][0]) and run["run_id"] in run["outputs"][0]
    assert is_file(tmp_path / ".crawler" / "jobs" / "history.db")


async def test_health_check_failure_exits_4(tmp_path):
    async with shop_site() as (server, _products):
        project(tmp_path, server.port, "checks = { min_items = 10 }")
        code, _, err = await jobs("run", "shop", cwd=tmp_path)
    assert code == ExitCode.HEALTH_CHECK == 4, err
    assert "check min_items: FAILED (3 items produced, at least 10 required)" in err
    code, out, _ = await jobs("history", "shop", cwd=tmp_path)
    assert " checks_failed " in out and " min_items" in out


async def test_config_errors_exit_2(tmp_path):
    project(tmp_path, 1, 'cronn = "* * * * *"', schedule="")
    code, _, err = await jobs("run", "shop", cwd=tmp_path)
    assert code == ExitCode.CONFIG == 2
    assert "job 'shop' in [tool.crawler] in" in err and "unknown key 'cronn'" in err
    project(tmp_path, 1)
    code, _, err = await jobs("run", "nope", cwd=tmp_path)
    assert code == 2 and "no job named 'nope' (known: shop)" in err
    code, _, err = await jobs("history", "shop", "--jobs-file", "missing.toml", cwd=tmp_path)
    assert code == 2 and "does not exist" in err


async def test_a_second_process_does_not_run_a_running_job(tmp_path):
    async with shop_site() as (server, _products):
        shop = shop_of(server)
        shop.gate.clear()
        project(tmp_path, server.port)
        first = await start(JOBS, "run", "shop", cwd=tmp_path)
        waiter = asyncio.ensure_future(first.wait())
        await first_product_request(shop, waiter)
        code, _, err = await jobs("run", "shop", cwd=tmp_path)
        shop.gate.set()
        _, first_err = await asyncio.wait_for(first.communicate(), 30)
    assert code == ExitCode.ALREADY_RUNNING == 6, err
    assert "is already running (pid" in err and "not started" in err
    assert first.returncode == 0, first_err.decode()
    async with RunHistory(JobPaths(tmp_path / ".crawler" / "jobs").history) as history:
        assert len(await history.runs("shop")) == 1


async def test_scheduler_runs_a_due_job_and_stops_cleanly_on_sigterm(tmp_path):
    async with shop_site() as (server, _products):
        shop = shop_of(server)
        shop.gate.clear()
        project(tmp_path, server.port, schedule='cron = "* * * * * *"')
        proc = await start(SCHEDULER, cwd=tmp_path)
        await wait_for_log(proc, b"scheduler started with 1 job(s)")
        waiter = asyncio.ensure_future(proc.wait())
        await first_product_request(shop, waiter)  # the every-second job fired
        proc.send_signal(signal.SIGTERM)
        await wait_for_log(proc, b"stopping")
        shop.gate.set()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"scheduler stopped" in err
    async with RunHistory(JobPaths(tmp_path / ".crawler" / "jobs").history) as history:
        runs = await history.runs("shop")
        assert await history.lock_info("shop") is None  # released
    assert len(runs) == 1
    assert runs[0].trigger == "schedule" and runs[0].scheduled_for is not None
    assert (runs[0].finish_reason, runs[0].exit_code) == ("interrupted", 130)
