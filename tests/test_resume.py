"""Crash-safe crawls: kill -9 at several points, resume, and lose nothing."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest
from aiohttp import web

from crawler.testing import SiteServer, html_page

CRAWL = [sys.executable, "-m", "crawler", "run"]
PAGES = 40

SPIDER = textwrap.dedent(
    '''
    import os
    from pathlib import Path

    from crawler import Spider


    class FlushTrap:
        """Reports checkpoints on stderr; with FLUSH_TRAP=N, hangs in the first flush after
        N items (so a test can kill the crawler in the middle of a checkpoint)."""

        items = 0

        async def process_item(self, item, spider):
            self.items += 1
            return item

        async def flush(self, spider):
            import asyncio, sys
            print(f"FLUSH {self.items}", file=sys.stderr, flush=True)
            trap = int(os.environ.get("FLUSH_TRAP", "0"))
            if trap and self.items >= trap:
                print("IN-FLUSH", file=sys.stderr, flush=True)
                await asyncio.Event().wait()


    class Pages(Spider):
        name = "pages"
        settings = {"PIPELINES": [FlushTrap()]}

        def parse(self, response):
            yield {"url": response.url, "n": response.css_first("title").text()}
            yield from response.follow_all()
    '''
)


def site_pages() -> dict[str, dict[str, object]]:
    # A chain with side links: page n links to n+1 and n+2, so the frontier keeps growing.
    pages: dict[str, object] = {}
    for n in range(PAGES):
        links = [f"/p{m}" for m in (n + 1, n + 2) if m < PAGES]
        pages[f"/p{n}"] = html_page(f"p{n}", links)
    return {"a.test": pages}


class Gate:
    """Holds page requests once ``after`` pages were served, until released."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.served = 0
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def wrap(self, pages: dict[str, dict[str, object]]) -> None:
        for paths in pages.values():
            for path, page in list(paths.items()):
                paths[path] = self._handler(page)

    def _handler(self, page: object):
        async def handle(request: web.Request) -> web.Response:
            self.served += 1
            if self.served > self.after:
                self.reached.set()
                await self.release.wait()
            return web.Response(text=str(page), content_type="text/html")

        return handle


async def start(tmp: Path, server: SiteServer, *extra: str, env: dict[str, str] | None = None):
    args = [
        *CRAWL,
        "spider.py",
        "-a",
        f"start_urls={server.url('a.test', '/p0')}",
        "-s",
        "RESOLVE=a.test:127.0.0.1",
        "-s",
        "PROGRESS_INTERVAL=0",
        "-s",
        "ROBOTSTXT_OBEY=false",
        "-s",
        "CONCURRENCY=4",
        "-s",
        "CHECKPOINT_INTERVAL=0.05",
        "--state",
        "state",
        "-o",
        "items.db",
        "-o",
        "items.jsonl",
        "-o",
        "items.csv",
        "-o",
        "items.json",
        *extra,
    ]
    return await asyncio.create_subprocess_exec(
        *args,
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def done_paths(tmp: Path) -> set[str]:
    """Paths the frontier file records as DONE (read after the crawler was killed)."""
    with closing(sqlite3.connect(tmp / "state" / "frontier.db")) as db:
        rows = db.execute("SELECT data FROM requests WHERE state = 2").fetchall()
    return {"/" + json.loads(row[0])["u"].rsplit("/", 1)[1] for row in rows}


def db_items(tmp: Path) -> list[str]:
    with closing(sqlite3.connect(tmp / "items.db")) as db:
        rows = db.execute("SELECT item FROM pages").fetchall()
    return sorted(json.loads(row[0])["n"] for row in rows)


def jsonl_items(tmp: Path) -> list[str]:
    return [json.loads(line)["n"] for line in (tmp / "items.jsonl").read_text().splitlines()]


def file_items(tmp: Path) -> dict[str, list[str]]:
    """The items of every file output, sorted (each must hold every page exactly once)."""
    with open(tmp / "items.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    return {
        "jsonl": sorted(jsonl_items(tmp)),
        "csv": sorted(row["n"] for row in csv_rows),
        "json": sorted(item["n"] for item in json.loads((tmp / "items.json").read_text())),
        "db": db_items(tmp),
    }


ALL = sorted(f"p{n}" for n in range(PAGES))


@pytest.mark.parametrize("kill_after", [1, 15, 30])
async def test_sigkill_after_n_pages_then_resume_loses_nothing(tmp_path: Path, kill_after: int):
    (tmp_path / "spider.py").write_text(SPIDER)
    pages = site_pages()
    gate = Gate(kill_after)
    gate.wrap(pages)
    async with SiteServer(pages) as server:
        proc = await start(tmp_path, server)
        await asyncio.wait_for(gate.reached.wait(), 30)
        proc.kill()
        await proc.wait()
        gate.release.set()
        done_at_kill = done_paths(tmp_path)
        first_run = len(server.requests)

        proc = await start(tmp_path, server)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    # every output, keyed or not, holds every page exactly once
    assert file_items(tmp_path) == {"jsonl": ALL, "csv": ALL, "json": ALL, "db": ALL}
    paths = [r.path_qs for r in server.requests]
    assert set(paths) == {f"/p{n}" for n in range(PAGES)}
    # The resumed run fetches exactly what was not recorded as done, each page once:
    # requests in flight at the kill or finished after the last checkpoint.
    second_run = [r.path_qs for r in server.requests[first_run:]]
    assert sorted(second_run) == sorted({f"/p{n}" for n in range(PAGES)} - done_at_kill)
    assert first_run >= kill_after


async def test_sigkill_during_pipeline_flush_then_resume(tmp_path: Path):
    (tmp_path / "spider.py").write_text(SPIDER)
    pages = site_pages()
    gate = Gate(10)  # holds the crawl after 10 pages, so the trap fires in a checkpoint
    gate.wrap(pages)
    async with SiteServer(pages) as server:
        proc = await start(tmp_path, server, env={"FLUSH_TRAP": "10"})
        await asyncio.wait_for(_wait_for_line(proc, b"IN-FLUSH"), 30)
        proc.kill()
        await proc.wait()
        gate.release.set()

        proc = await start(tmp_path, server)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    assert file_items(tmp_path) == {"jsonl": ALL, "csv": ALL, "json": ALL, "db": ALL}


@pytest.mark.parametrize("kills", [(3, 12, 25), (1, 2, 3)])
async def test_several_sigkills_and_resumes_leave_every_item_exactly_once(
    tmp_path: Path, kills: tuple[int, ...]
):
    (tmp_path / "spider.py").write_text(SPIDER)
    async with SiteServer(site_pages()) as server:
        for after in kills:
            gate = Gate(after)  # hold the crawl after `after` more pages, then kill it there
            server.pages = site_pages()
            gate.wrap(server.pages)
            proc = await start(tmp_path, server)
            await asyncio.wait_for(gate.reached.wait(), 30)
            proc.kill()
            await proc.wait()
            gate.release.set()
        server.pages = site_pages()
        proc = await start(tmp_path, server)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    assert file_items(tmp_path) == {"jsonl": ALL, "csv": ALL, "json": ALL, "db": ALL}
    assert "dropped" in err.decode() or kills == (1, 2, 3)  # a cut-back is logged


async def test_sigint_leaves_a_resumable_state(tmp_path: Path):
    (tmp_path / "spider.py").write_text(SPIDER)
    pages = site_pages()
    gate = Gate(5)
    gate.wrap(pages)
    async with SiteServer(pages) as server:
        proc = await start(tmp_path, server)
        await asyncio.wait_for(gate.reached.wait(), 30)
        proc.send_signal(signal.SIGINT)
        gate.release.set()
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 130, err.decode()
        assert len(db_items(tmp_path)) < PAGES

        proc = await start(tmp_path, server)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert db_items(tmp_path) == ALL

        # Finished: running again says so and fetches nothing; --restart crawls again.
        before = len(server.requests)
        proc = await start(tmp_path, server)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        assert "already finished" in err.decode()
        assert len(server.requests) == before
        # --restart is a fresh start: `-o` appends, and a JSON array cannot be appended to
        (tmp_path / "items.json").unlink()
        proc = await start(tmp_path, server, "--restart")
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert len(server.requests) == before + PAGES


async def test_resumed_crawl_sends_the_cookies_set_before_the_kill(tmp_path: Path):
    (tmp_path / "spider.py").write_text(SPIDER)
    pages = site_pages()
    gate = Gate(5)
    gate.wrap(pages)
    first = pages["a.test"]["/p0"]

    async def login(request: web.Request) -> web.StreamResponse:
        response = await first(request)  # type: ignore[operator]
        response.set_cookie("session", "s3cret", path="/")
        return response

    pages["a.test"]["/p0"] = login
    async with SiteServer(pages) as server:
        proc = await start(tmp_path, server)
        await asyncio.wait_for(gate.reached.wait(), 30)
        # Two checkpoints begin after the cookie was set: the first has completed.
        await asyncio.wait_for(_wait_for_line(proc, b"FLUSH"), 30)
        await asyncio.wait_for(_wait_for_line(proc, b"FLUSH"), 30)
        proc.kill()
        await proc.wait()
        gate.release.set()
        killed_at = len(server.requests)

        proc = await start(tmp_path, server)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    after = server.requests[killed_at:]
    assert after, "the resumed crawl fetched nothing"
    assert all("session=s3cret" in r.headers.get("Cookie", "") for r in after)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("state.db", b"this is not a database at all" * 100, "not a crawl state database"),
        ("frontier.db", b"garbage" * 500, "frontier"),
    ],
)
async def test_corrupt_state_is_refused_with_a_clear_message(
    tmp_path: Path, name: str, content: bytes, message: str
):
    (tmp_path / "spider.py").write_text(SPIDER)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / name).write_bytes(content)
    async with SiteServer(site_pages()) as server:
        proc = await start(tmp_path, server)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err.decode()
    assert message in err.decode()
    assert (tmp_path / "state" / name).read_bytes() == content  # never overwritten


async def test_foreign_sqlite_database_is_refused(tmp_path: Path):
    (tmp_path / "spider.py").write_text(SPIDER)
    (tmp_path / "state").mkdir()
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")
        db.execute("INSERT INTO accounts VALUES (1, 100)")
    async with SiteServer(site_pages()) as server:
        proc = await start(tmp_path, server)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err.decode()
    assert "another application" in err.decode() or "not a crawl state" in err.decode()
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        assert db.execute("SELECT balance FROM accounts").fetchone() == (100,)


async def _wait_for_line(proc: asyncio.subprocess.Process, marker: bytes) -> None:
    assert proc.stderr is not None
    while True:
        line = await proc.stderr.readline()
        if not line:
            raise AssertionError(f"process ended before printing {marker!r}")
        if marker in line:
            return
