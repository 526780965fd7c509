"""The `crawl` command: exit codes, outputs, spider loading, interruption."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import textwrap
from pathlib import Path

import click
import pytest
from aiohttp import web

from crawler.testing import SiteServer, html_page

CRAWL = [sys.executable, "-m", "crawler"]


async def crawl(*args: str, cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CRAWL,
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


SPIDER = textwrap.dedent(
    """
    from crawler import Spider

    class Pages(Spider):
        name = "pages"

        def parse(self, response):
            yield {"url": response.url, "title": response.css_first("title").text()}
            yield from response.follow_all()
    """
)


@pytest.fixture
async def site():
    pages = {
        "a.test": {
            "/": html_page("Home ü", ["/1", "/2"]),
            "/1": html_page("One", ["/2"]),
            "/2": html_page("Two", ["/"]),
        }
    }
    async with SiteServer(pages) as server:
        yield server


def resolve_args(server: SiteServer) -> list[str]:
    return ["-s", "RESOLVE=a.test:127.0.0.1", "-s", "PROGRESS_INTERVAL=0"]


async def test_run_file_writes_jsonl_to_stdout_and_logs_to_stderr(site, tmp_path):
    (tmp_path / "pages.py").write_text(SPIDER)
    stats = tmp_path / "stats.json"
    code, out, err = await crawl(
        "run",
        "pages.py",
        "-a",
        f"start_urls={site.url('a.test')}",
        *resolve_args(site),
        "-o",
        "-",
        "--stats",
        str(stats),
        cwd=tmp_path,
    )
    assert code == 0, err
    items = [json.loads(line) for line in out.splitlines()]
    assert sorted(i["title"] for i in items) == ["Home ü", "One", "Two"]
    assert re.search(r"finished: after [\d.]+ s", err) and re.search(r"pages: 3 \(", err), err
    data = json.loads(stats.read_text())
    assert data["pages"] == 3 and data["items"] == 3 and data["finish_reason"] == "finished"


async def test_output_append_and_overwrite(site, tmp_path):
    (tmp_path / "pages.py").write_text(SPIDER)
    args = ["run", "pages.py", "-a", f"start_urls={site.url('a.test')}", *resolve_args(site)]
    out = tmp_path / "items.jsonl"
    assert (await crawl(*args, "-o", str(out), cwd=tmp_path))[0] == 0
    assert (await crawl(*args, "-o", str(out), cwd=tmp_path))[0] == 0
    assert len(out.read_text().splitlines()) == 6
    assert (await crawl(*args, "-O", str(out), cwd=tmp_path))[0] == 0
    assert len(out.read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "CONCURENCY=3"], "did you mean CONCURRENCY"),
        (["-s", "CONCURRENCY=many"], "CONCURRENCY='many'"),
        (["-s", "CONCURRENCY_PER_HOST=0"], "must be >= 1"),
        (["-s", "NOEQUALS"], "NAME=VALUE"),
        (["-o", "items.txt"], ".txt"),
        (["-s", "CONCURRENT_REQUESTS=3"], "that is Scrapy's name; use CONCURRENCY"),
        (
            ["-O", "pages.py/x.jsonl"],
            "output 'pages.py/x.jsonl': 'pages.py' is a file, not a folder",
        ),
        (["-o", "out"], "output 'out' is a folder"),
    ],
)
async def test_config_errors_exit_2(tmp_path, args, message):
    (tmp_path / "out").mkdir()
    (tmp_path / "pages.py").write_text(SPIDER)
    code, _, err = await crawl("run", "pages.py", *args, cwd=tmp_path)
    assert code == 2
    assert message in err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err
    assert "crawl started" not in err


async def test_pyproject_settings_are_checked(tmp_path):
    (tmp_path / "pages.py").write_text(SPIDER)
    (tmp_path / "pyproject.toml").write_text("[tool.crawler]\nDOWNLOAD_DELAY = 'slow'\n")
    code, _, err = await crawl("run", "pages.py", cwd=tmp_path)
    assert code == 2
    assert "DOWNLOAD_DELAY" in err and "pyproject.toml" in err


@pytest.mark.parametrize(
    ("target", "files", "message"),
    [
        ("nosuch", {}, "no spider named 'nosuch'"),
        ("missing.py", {}, "does not exist"),
        ("broken.py", {"broken.py": "x = 1\ndef oops(:\n"}, "broken.py:2: SyntaxError"),
        ("broken.py", {"broken.py": "x = 1\ndef oops(:\n"}, "in: def oops(:"),
        (
            "imports.py",
            {"imports.py": "x = 1\nimport not_a_module_xyz\n"},
            "imports.py:2: ModuleNotFoundError: No module named 'not_a_module_xyz'",
        ),
        ("raises.py", {"raises.py": "\n\nx = 1 / 0\n"}, "raises.py:3: ZeroDivisionError"),
        ("empty.py", {"empty.py": "x = 1\n"}, "defines no Spider"),
        ("nomod:Spider", {}, "nomod"),
    ],
)
async def test_spider_load_errors_exit_3(tmp_path, target, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code, _, err = await crawl("run", target, cwd=tmp_path)
    assert code == 3, err
    assert message in err


async def test_spider_by_name_from_spider_modules_and_list(site, tmp_path):
    # A user project with its own `spiders/` folder: it must not collide with ours.
    (tmp_path / "spiders").mkdir()
    (tmp_path / "spiders" / "__init__.py").write_text("")  # a regular package, first on sys.path
    (tmp_path / "spiders" / "mine.py").write_text(SPIDER)
    (tmp_path / "pyproject.toml").write_text('[tool.crawler]\nspider_modules = ["spiders/"]\n')
    code, out, err = await crawl("list", cwd=tmp_path)
    assert code == 0, err
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()}
    assert {"pages", "links"} <= set(rows)
    # the class name, the file (relative to the project) and where it comes from
    assert rows["pages"] == ["Pages", "spiders/mine.py", "project"]
    assert rows["links"][0] == "LinkSpider" and rows["links"][2] == "built-in"
    code, out, err = await crawl(
        "run",
        "pages",
        "-a",
        f"start_urls={site.url('a.test')}",
        *resolve_args(site),
        "-o",
        "-",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert len(out.splitlines()) == 3
    code, out, err = await crawl(
        "run",
        "spiders/mine.py:Pages",
        "-a",
        f"start_urls={site.url('a.test')}",
        *resolve_args(site),
        "-o",
        "-",
        cwd=tmp_path,
    )
    assert code == 0, err
    assert len(out.splitlines()) == 3


async def test_builtin_links_spider(site, tmp_path):
    code, out, err = await crawl(
        "run",
        "links",
        "-a",
        f"start_urls={site.url('a.test')}",
        *resolve_args(site),
        "-o",
        "-",
        cwd=tmp_path,
    )
    assert code == 0, err
    items = [json.loads(line) for line in out.splitlines()]
    assert sorted(i["depth"] for i in items) == [0, 1, 1]


async def test_sigint_stops_gracefully_with_exit_130(tmp_path):
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text=html_page("Slow"), content_type="text/html")

    pages = {"a.test": {"/": html_page("Home", ["/slow", "/slow2"]), "/slow": slow, "/slow2": slow}}
    async with SiteServer(pages) as server:
        (tmp_path / "pages.py").write_text(SPIDER)
        out = tmp_path / "items.jsonl"
        proc = await asyncio.create_subprocess_exec(
            *CRAWL,
            "run",
            "pages.py",
            "-a",
            f"start_urls={server.url('a.test')}",
            *resolve_args(server),
            "-s",
            "CONCURRENCY_PER_HOST=1",
            "-o",
            str(out),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.wait_for(arrived.wait(), 30)
        proc.send_signal(signal.SIGINT)
        # The crawler stops leasing at once; let the in-flight request finish.
        await asyncio.wait_for(_wait_for_log(proc, b"stopping"), 30)
        release.set()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err.decode()
    titles = sorted(json.loads(line)["title"] for line in out.read_text().splitlines())
    assert titles == ["Home", "Slow"]  # the in-flight page was finished and flushed
    assert server.paths_seen("a.test") == ["/", "/slow"]  # nothing new after the signal


async def _wait_for_log(proc: asyncio.subprocess.Process, marker: bytes) -> None:
    assert proc.stderr is not None
    seen = b""
    while marker not in seen:
        line = await proc.stderr.readline()
        if not line:
            raise AssertionError(f"process ended before logging {marker!r}: {seen.decode()}")
        seen += line


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("start_urls", "reason"),
    [
        (None, "the spider made no start requests: give it start URLs"),
        ("bad-url", "1 start request(s) could not be made"),
        ("http://127.0.0.1:{port}/", "none of 1 request(s) got a response (failures: network=1)"),
        (
            "bad-url,http://127.0.0.1:{port}/",
            "none of 1 request(s) got a response (failures: network=1);"
            " 1 start request(s) could not be made",
        ),
    ],
)
async def test_a_crawl_that_fetched_nothing_exits_9(tmp_path, start_urls, reason):
    args = ["run", "links", "-s", "PROGRESS_INTERVAL=0", "-s", "ROBOTSTXT_OBEY=false"]
    args += ["-s", "RETRY_TIMES=0"]
    if start_urls is not None:
        args += ["-a", "start_urls=" + start_urls.format(port=free_port())]
    code, _, err = await crawl(*args, cwd=tmp_path)
    assert code == 9, err
    assert err.strip().splitlines()[-1].startswith(f"error: nothing was crawled: {reason}"), err


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def test_every_command_has_help_with_an_example() -> None:
    from click.testing import CliRunner

    from crawler.cli import main

    commands = _commands(main)
    assert len(commands) >= 14  # run, list, fetch, shell, parse, new..., bench, jobs..., status
    for path in commands:
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Example" in result.output, f"crawl {' '.join(path)} --help has no example"


async def test_a_worker_joining_a_finished_shared_crawl_exits_0(site, tmp_path):
    from redis_peer import RedisServer

    (tmp_path / "pages.py").write_text(SPIDER)
    async with RedisServer(tmp_path / "redis") as redis:
        args = ["run", "pages.py", "-a", f"start_urls={site.url('a.test')}", *resolve_args(site)]
        args += ["--frontier", redis.url, "--job", "joined", "-O", "out.jsonl"]
        code, _, err = await crawl(*args, cwd=tmp_path)
        assert code == 0, err
        # A second worker of the same job finds it done: nothing to fetch is not a failure.
        code, _, err = await crawl(*args, cwd=tmp_path)
    assert code == 0, err
    assert "nothing was crawled" not in err
