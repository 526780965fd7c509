"""`crawl bench`: the generated site, and the command's report (its shape, not its numbers)."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import sys
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import aiohttp
import pytest
from click.testing import CliRunner

from crawler.benchsite import LINKS_PER_PAGE, SiteShape, render
from crawler.cli import main

CRAWL = [sys.executable, "-m", "crawler"]
NUMBER = r"(\d+(?:\.\d+)?)"


async def bench(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """``crawl bench ARGS`` in a child whose environment cannot reach the user's config."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
        "LC_ALL": "C.UTF-8",
    }
    proc = await asyncio.create_subprocess_exec(
        *CRAWL,
        "bench",
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_bench_reports_every_page_of_the_site(tmp_path):
    code, out, err = await bench(tmp_path, "--pages", "60", "--hosts", "3", "--concurrency", "8")
    assert code == 0, err
    assert "crawl bench: 60 of 60 pages on 3 host(s), concurrency 8" in out
    assert f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}" in out
    for label in ("pages/s", "CPU-ms/page", "peak RSS MB", "site CPU-ms/page"):
        match = re.search(rf"^  {re.escape(label)} +{NUMBER}", out, re.MULTILINE)
        assert match is not None, f"{label} missing in:\n{out}"
        float(match.group(1))
    assert re.search(r"^  items +60$", out, re.MULTILINE), out
    assert re.search(r"^  errors +0$", out, re.MULTILINE), out


async def test_bench_json_is_one_object_with_numbers(tmp_path):
    code, out, err = await bench(tmp_path, "--pages", "25", "--hosts", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["pages"] == result["site_pages"] == result["items"] == 25
    assert (result["hosts"], result["concurrency"], result["errors"]) == (2, 32, 0)
    for key in ("pages_per_s", "cpu_ms_per_page", "peak_rss_mb", "wall_s", "cpu_s"):
        assert isinstance(result[key], (int, float)) and result[key] >= 0, key
    assert result["python"] == platform.python_version()
    assert result["aiohttp"] == aiohttp.__version__
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]  # the items file was temporary


async def test_more_hosts_than_pages_uses_one_host_per_page(tmp_path):
    code, out, err = await bench(tmp_path, "--pages", "2", "--hosts", "5", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["pages"], result["hosts"]) == (2, 2)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--pages", "0"], "--pages"),
        (["--hosts", "x"], "--hosts"),
        (["--concurrency", "0"], "--concurrency"),
    ],
)
def test_bad_options_exit_2(args, option):
    result = CliRunner().invoke(main, ["bench", *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"'{option}'" in result.stderr


def test_help_has_examples():
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0
    assert "Examples:\n    crawl bench" in result.output


@pytest.mark.parametrize(("pages", "hosts"), [(1, 1), (7, 3), (300, 4)])
def test_every_page_is_reachable_from_the_start_pages(pages, hosts):
    shape = SiteShape(pages, hosts)
    port = 8080
    routes, responses = render(shape, port)
    by_url = {
        f"http://{host.decode()}:{port}{path.decode()}": i for (host, path), i in routes.items()
    }
    assert sorted(by_url.values()) == list(range(pages))
    seen = set(shape.start_urls(port))
    queue = deque(seen)
    while queue:
        url = queue.popleft()
        body = b"".join(responses[by_url[url]]).split(b"\r\n\r\n", 1)[1].decode()
        links = re.findall(r'href="([^"]+)"', body)
        assert len(links) > LINKS_PER_PAGE
        for link in links:
            target = urldefrag(urljoin(url, link)).url
            assert target in by_url, f"{link} on {url} is a broken link"
            if target not in seen:
                seen.add(target)
                queue.append(target)
    assert seen == set(by_url)


def test_pages_are_deterministic_and_about_20_kb():
    first = render(SiteShape(50, 2), 1234)[1]
    assert first == render(SiteShape(50, 2), 1234)[1]
    sizes = [len(b"".join(parts)) for parts in first]
    assert all(15_000 < size < 25_000 for size in sizes)
