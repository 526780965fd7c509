"""The examples (docs/examples.md) run offline through the real `crawl` command.

Each one runs as its docstring says (the spider serves the demo site itself); the
login and sitemap examples also run against a demo site this test serves, so the
test can see every request the site answered.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import shlex
import shutil
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
from demo_site import DemoSite, books_on_day, changed_on, make_books  # noqa: E402

CRAWL = [sys.executable, "-m", "crawler"]
BOOKS = make_books()
IN_STOCK = [b["id"] for b in BOOKS if b["in_stock"]]


async def crawl(*args: str, cwd: Path, **env: str) -> tuple[int, str, str]:
    """Run `crawl ARGS` in ``cwd``: exit code, stdout, stderr."""
    # the job's state goes beside its pyproject.toml; the demo site's day is the test's
    unset = ("CRAWLER_JOBS_DIR", "DEMO_SITE_DAY")
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    environ.update(PYTHONUNBUFFERED="1", **env)
    proc = await asyncio.create_subprocess_exec(
        *CRAWL,
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def docstring_command(path: Path) -> list[str]:
    """The ``crawl run ...`` line of an example's docstring."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    lines = [line.strip() for line in doc.splitlines() if line.strip().startswith("crawl ")]
    assert lines, f"{path.name}: the docstring does not say how to run it"
    return shlex.split(lines[0])


def path_of(url: str) -> str:
    return re.sub(r"^http://127\.0\.0\.1:\d+", "", url)


# --- every example, exactly as its docstring says ---


@pytest.mark.parametrize(
    ("example", "count"),
    [("bookstore.py", len(BOOKS)), ("login.py", len(IN_STOCK)), ("sitemap_crawl.py", len(BOOKS))],
)
async def test_example_runs_offline_as_its_docstring_says(
    tmp_path: Path, example: str, count: int
) -> None:
    command = docstring_command(EXAMPLES / example)
    assert command[:3] == ["crawl", "run", f"examples/{example}"]
    assert command[3] == "-O"
    code, _, err = await crawl(
        "run", str(EXAMPLES / example), *command[3:], "--stats", "stats.json", cwd=tmp_path
    )
    assert code == 0, err
    items = read_jsonl(tmp_path / command[4])
    assert len(items) == count
    assert len({item["url"] for item in items}) == count
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["finish_reason"] == "finished"
    assert stats.get("callback_errors", 0) == 0


# --- login and cookies ---


async def test_login_posts_once_and_the_session_cookie_opens_the_members_area(
    tmp_path: Path,
) -> None:
    async with DemoSite() as site:
        code, _, err = await crawl(
            "run", str(EXAMPLES / "login.py"), "-a", f"start_url={site.url}", "-O", "offers.jsonl",
            cwd=tmp_path,
        )  # fmt: skip
    assert code == 0, err
    requests = Counter((method, path) for method, path, _ in site.requests)
    assert requests[("POST", "/login")] == 1
    # the POST was answered with a redirect to /members/ and the cookie, never with a 401
    assert ("POST", "/login", 303) in site.requests
    # once signed in, nothing was sent back to the login form
    assert not [r for r in site.requests if r[2] == 302]
    offers = [p for _, p in requests if p.startswith("/members/offer/")]
    assert sorted(offers) == sorted(f"/members/offer/{i}.html" for i in IN_STOCK)
    assert all(requests[("GET", p)] == 1 for p in offers)

    items = read_jsonl(tmp_path / "offers.jsonl")
    by_path = {path_of(item["url"]): item for item in items}
    assert set(by_path) == set(offers)
    for book_id in IN_STOCK:
        item = by_path[f"/members/offer/{book_id}.html"]
        assert item["member_price"] == pytest.approx(round(BOOKS[book_id - 1]["price"] * 0.8, 2))
        assert item["has_session"] is True  # spider.cookies_for(url) saw the session cookie


async def test_login_without_a_cookie_jar_never_gets_in(tmp_path: Path) -> None:
    async with DemoSite() as site:
        code, _, err = await crawl(
            "run", str(EXAMPLES / "login.py"), "-a", f"start_url={site.url}",
            "-s", "COOKIE_JAR=none", "-O", "offers.jsonl", cwd=tmp_path,
        )  # fmt: skip
    assert code == 0, err
    assert read_jsonl(tmp_path / "offers.jsonl") == []
    assert "login failed" in err and "session cookie was not kept" in err
    # logged in, but the cookie was dropped: /members/ sent the crawl back to the form
    assert ("POST", "/login", 303) in site.requests
    assert ("GET", "/members/", 302) in site.requests
    assert not [p for _, p, _ in site.requests if p.startswith("/members/offer/")]


async def test_login_with_a_wrong_password_says_so(tmp_path: Path) -> None:
    code, _, err = await crawl(
        "run", str(EXAMPLES / "login.py"), "-a", "password=nope", "-O", "offers.jsonl",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert read_jsonl(tmp_path / "offers.jsonl") == []
    assert "Wrong user name or password" in err


# --- sitemaps ---


async def test_sitemap_crawl_fetches_each_listed_product_page_once(tmp_path: Path) -> None:
    async with DemoSite() as site:
        code, _, err = await crawl(
            "run", str(EXAMPLES / "sitemap_crawl.py"), "-a", f"start_url={site.url}",
            "-O", "books.jsonl", cwd=tmp_path,
        )  # fmt: skip
    assert code == 0, err
    answered = Counter((path, status) for method, path, status in site.requests)
    # robots.txt -> the index -> the two book sitemaps (one gzipped), each read once
    for path in ["/sitemap_index.xml", "/sitemaps/books-1.xml", "/sitemaps/books-2.xml.gz"]:
        assert answered[(path, 200)] == 1, path
    assert answered[("/robots.txt", 200)] >= 1
    assert not [p for p, _ in answered if p == "/sitemaps/pages.xml"]  # sitemap_follow
    # every product page once, nothing else (no genre pages, no home page)
    pages = Counter(p for _, p, _ in site.requests if not p.startswith(("/robots", "/sitemap")))
    assert pages == Counter(f"/book/{b['id']}.html" for b in BOOKS)

    items = read_jsonl(tmp_path / "books.jsonl")
    assert sorted(path_of(item["url"]) for item in items) == sorted(pages)
    from_gzip = [item for item in items if int(re.findall(r"\d+", path_of(item["url"]))[0]) > 30]
    assert len(from_gzip) == 30  # books 31-60 are listed only in books-2.xml.gz
    assert {item["lastmod"] for item in items} == {"2024-03-01"}
    prices = {path_of(item["url"]): item["price"] for item in items}
    assert prices == {f"/book/{b['id']}.html": b["price"] for b in BOOKS}


# --- a scheduled job with incremental output ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def history(project: Path) -> list[dict[str, Any]]:
    code, out, err = await crawl("jobs", "history", "books", "--json", cwd=project)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()][::-1]  # oldest first


async def test_job_second_run_fetches_only_the_changed_books(tmp_path: Path) -> None:
    # examples/jobs beside a copy of demo_site.py, as in the repository, on a free port
    shutil.copy(EXAMPLES / "demo_site.py", tmp_path)
    project = tmp_path / "jobs"
    shutil.copytree(EXAMPLES / "jobs", project, ignore=shutil.ignore_patterns(".crawler", "data"))
    config = project / "pyproject.toml"
    text = config.read_text()
    assert "args = { port = 8765 }" in text and "crawl jobs run books" in text
    config.write_text(text.replace("port = 8765", f"port = {free_port()}"))

    code, _, err = await crawl("jobs", "run", "books", cwd=project)
    assert code == 0, err
    assert "unchanged 0, items 60 emitted of 60" in err
    code, _, err = await crawl("jobs", "run", "books", cwd=project, DEMO_SITE_DAY="2")
    assert code == 0, err
    assert "unchanged 54, items 6 emitted of 6" in err
    code, _, err = await crawl("jobs", "run", "books", cwd=project, DEMO_SITE_DAY="2")
    assert code == 0, err
    assert "unchanged 60, items 0 emitted of 0" in err

    first, second, third = runs = await history(project)
    assert [run["exit_code"] for run in runs] == [0, 0, 0]
    # listings (6 pages) are fetched in full every run; books only when they changed
    assert first["stats"]["status/200"] == 66
    assert second["stats"]["status/200"] == 6 + 6
    assert second["stats"]["status/304"] == second["stats"]["incremental/unchanged"] == 54
    assert third["stats"]["status/200"] == 6
    assert third["stats"]["incremental/unchanged"] == 60
    assert second["stats"]["bytes"] < first["stats"]["bytes"] / 3
    assert second["item_counts"]["changed"] == 6

    # one output file per run (the changes) and one database for all of them
    files = [Path(run["outputs"][0]) for run in runs]
    assert len(set(files)) == 3
    assert all(f.is_file() and f.is_relative_to(project / "data") for f in files)
    assert all(run["run_id"] in f.name for run, f in zip(runs, files, strict=True))
    assert (project / "data" / "books.db").is_file()
    day1, day2, day2_again = (read_jsonl(f) for f in files)
    assert len(day1) == 60 and day2_again == []
    changed = {f"/book/{i}.html" for i in changed_on(BOOKS, 2)}
    assert {path_of(item["url"]) for item in day2} == changed
    prices = {f"/book/{b['id']}.html": b["price"] for b in books_on_day(BOOKS, 2)}
    assert all(item["price"] == prices[path_of(item["url"])] for item in day2)
    before = {path_of(item["url"]): item["price"] for item in day1}
    assert all(item["price"] < before[path_of(item["url"])] for item in day2)
