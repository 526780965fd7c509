"""Nothing lost, ever: outputs that cannot write, checkpoints that fail, MAX_PAGES.

An output that cannot write (OutputError from process_item, flush or close, or
anything a close raises) stops the crawl: no request is marked done after the
last good checkpoint, the state stays resumable, and ``crawl run`` exits 7. A
pipeline raising on one item drops only that item. Checkpoints that keep
failing stop the crawl with exit 8; none fails silently. Nothing here waits on
time: servers hold requests on events, failures are triggered by item counts.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import resource
import sqlite3
import sys
import textwrap
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import HANG_GUARD_S, Collect, SiteFactory, build_settings

from crawler import Crawler, CrawlResult, Request, Response, Spider
from crawler.checkpoint import AckGate, ItemBarrier
from crawler.errors import OutputError
from crawler.frontier.base import Lease, PolitenessPolicy
from crawler.frontier.memory import MemoryFrontier
from crawler.pipeline import CheckpointedOutput
from crawler.testing import ManualClock, SiteServer, html_page

PAGES = 30
ALL = sorted(f"p{n}" for n in range(PAGES))
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Pages(Spider):
    """One item per page (its title); follows every link."""

    name = "pages"

    def parse(self, response: Response) -> Any:
        title = response.css_first("title")
        yield {"n": title.text() if title is not None else None}
        yield from response.follow_all()


def chain_pages() -> dict[str, object]:
    # Page n links to n+1 and n+2: the frontier keeps growing while pages are crawled.
    return {
        f"/p{n}": html_page(f"p{n}", [f"/p{m}" for m in (n + 1, n + 2) if m < PAGES])
        for n in range(PAGES)
    }


class Disk:
    """A durable output kept in memory (it outlives a crawl, like a file).

    ``flush`` makes the pending items durable; with ``capacity`` set, a flush that
    would exceed it writes what fits (a partial write) and raises OutputError, as a
    full disk does. It is a CheckpointedOutput: its position is the durable count,
    and a resume cuts it back there.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.durable: list[str] = []
        self.pending: list[str] = []
        self.full = asyncio.Event()
        self.flushed = asyncio.Event()  # a flush made items durable
        self.resumed: list[tuple[Any, bool]] = []
        self.events: list[str] = []

    def output_id(self) -> str:
        return "disk:items"

    def durable_position(self) -> dict[str, Any]:
        return {"count": len(self.durable)}

    def resume_at(self, position: dict[str, Any] | None, resuming: bool) -> None:
        self.events.append("resume_at")
        self.resumed.append((position, resuming))
        self.pending.clear()  # whatever was buffered died with the process
        if resuming and position is not None:
            del self.durable[position["count"] :]

    def open(self, spider: Spider) -> None:
        self.events.append("open")

    async def process_item(self, item: Any, spider: Spider) -> Any:
        self.pending.append(item["n"])
        return item

    async def flush(self, spider: Spider) -> None:
        self.events.append("flush")
        if self.capacity is not None and len(self.durable) + len(self.pending) > self.capacity:
            room = self.capacity - len(self.durable)
            self.durable.extend(self.pending[:room])
            del self.pending[:room]
            self.full.set()
            raise OutputError(
                f"cannot write disk:items: {ENOSPC}; free some space and run again",
                output="disk:items",
            ) from ENOSPC
        self.durable.extend(self.pending)
        self.pending.clear()
        if self.durable:
            self.flushed.set()

    async def close(self, spider: Spider) -> None:
        self.events.append("close")
        await self.flush(spider)


def hold(pages: dict[str, object], *stages: tuple[int, asyncio.Event]) -> None:
    """Each ``(served, event)``: requests after the first ``served`` wait for ``event``."""
    count = 0

    def wrap(page: object) -> Any:
        async def handle(request: web.Request) -> web.Response:
            nonlocal count
            count += 1
            for served, event in stages:
                if count > served:
                    await event.wait()
            return web.Response(text=str(page), content_type="text/html")

        return handle

    for path, page in list(pages.items()):
        pages[path] = wrap(page)


def done_paths(state: Path) -> set[str]:
    """Paths the SQLite frontier records as DONE."""
    with closing(sqlite3.connect(state / "frontier.db")) as db:
        rows = db.execute("SELECT data FROM requests WHERE state = 2").fetchall()
    return {"/" + json.loads(row[0])["u"].rsplit("/", 1)[1] for row in rows}


def saved_status(state: Path) -> str | None:
    with closing(sqlite3.connect(state / "state.db")) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
    return row[0] if row else None


async def crawl(crawler: Crawler) -> CrawlResult:
    async with asyncio.timeout(HANG_GUARD_S):
        return await crawler.run()


def state_crawler(server: SiteServer, state: Path, *pipelines: Any, **settings: Any) -> Crawler:
    spider = Pages(start_urls=[server.url("a.test", "/p0")])
    values = {"STATE_DIR": str(state), "CHECKPOINT_INTERVAL": 0.01, "CONCURRENCY": 4}
    values.update(settings)
    return Crawler(spider, build_settings(spider, server, **values), pipelines=list(pipelines))


async def test_a_failing_flush_stops_the_crawl_and_a_resume_completes_every_item_once(
    site: SiteFactory, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    disk = Disk(capacity=7)
    pages = chain_pages()
    # A checkpoint saves some items first (pages after the fourth wait for it); the eighth
    # item cannot be flushed, and the pages after it wait until the disk is full: the
    # failure happens in the middle of the crawl, with requests in flight.
    hold(pages, (4, disk.flushed), (8, disk.full))
    server = await site({"a.test": pages})

    result = await crawl(state_crawler(server, state, disk))

    assert result.finish_reason == "output_failed"
    assert result.failed and result.interrupted
    assert isinstance(result.error, OutputError)
    assert "disk:items" in result.stats["error"]
    assert "No space left on device" in result.stats["error"]
    assert saved_status(state) != "finished"
    done = done_paths(state)
    # No request is done whose item is not durable (the failed flush's partial write
    # aside, nothing after the last good checkpoint was marked done).
    assert {f"p{path[2:]}" for path in done} <= set(disk.durable)
    assert len(done) < PAGES
    first_run = len(server.requests)

    disk.capacity = None  # space was freed
    result = await crawl(state_crawler(server, state, disk))

    assert result.finish_reason == "finished"
    assert saved_status(state) == "finished"
    # The resumed run fetched exactly the pages not done, each once...
    second_run = [r.path_qs for r in server.requests[first_run:]]
    assert sorted(second_run) == sorted({f"/p{n}" for n in range(PAGES)} - done)
    # ...the output was cut back to the last good checkpoint (its saved position, with
    # the acks), and now holds every item exactly once.
    position, resuming = disk.resumed[-1]
    assert resuming and position is not None
    assert sorted(disk.durable) == ALL
    assert disk.events.index("resume_at") < disk.events.index("open")


class FailingClose(Collect):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def close(self, spider: Spider) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [RuntimeError("exporter bug"), OutputError("cannot close out.jsonl", output="out.jsonl")],
    ids=["RuntimeError", "OutputError"],
)
async def test_a_failing_close_leaves_the_crawl_unfinished_and_resumable(
    site: SiteFactory, tmp_path: Path, error: Exception
) -> None:
    state = tmp_path / "state"
    server = await site({"a.test": chain_pages()})
    first = FailingClose(error)

    result = await crawl(state_crawler(server, state, first))

    assert result.finish_reason == "output_failed"
    assert result.error is error or result.error.__cause__ is error  # type: ignore[union-attr]
    assert saved_status(state) != "finished"
    assert len(first.items) == PAGES
    # The last checkpoint ran before the outputs were closed: the items were flushed, then
    # every request was marked done; only "finished" waited for a clean close.
    assert len(done_paths(state)) == PAGES

    fetched = len(server.requests)
    healthy = Collect()
    result = await crawl(state_crawler(server, state, healthy))
    assert result.finish_reason == "finished"  # not "already_finished": it was resumable
    assert len(server.requests) == fetched  # nothing was left to fetch
    assert saved_status(state) == "finished"


async def test_a_failing_close_without_state_is_an_output_failure(site: SiteFactory) -> None:
    server = await site({"a.test": chain_pages()})
    spider = Pages(start_urls=[server.url("a.test", "/p0")])
    failing = FailingClose(OutputError("cannot close out.jsonl: [Errno 28]", output="out.jsonl"))
    result = await crawl(Crawler(spider, build_settings(spider, server), pipelines=[failing]))
    assert result.finish_reason == "output_failed"
    assert result.stats["error"] == "output failed: cannot close out.jsonl: [Errno 28]"


async def test_an_output_error_from_process_item_stops_without_acking(
    site: SiteFactory, tmp_path: Path
) -> None:
    class BrokenAt:
        """Writes durably at once; the sixth item cannot be written."""

        def __init__(self) -> None:
            self.items: list[str] = []

        def process_item(self, item: Any, spider: Spider) -> Any:
            if len(self.items) == 5:
                raise OutputError("cannot write items.db: disk I/O error", output="items.db")
            self.items.append(item["n"])
            return item

    state = tmp_path / "state"
    server = await site({"a.test": chain_pages()})
    broken = BrokenAt()
    result = await crawl(state_crawler(server, state, broken, CONCURRENCY=1))
    assert result.finish_reason == "output_failed"
    assert result.stats["error"] == "output failed: cannot write items.db: disk I/O error"
    assert {f"p{path[2:]}" for path in done_paths(state)} <= set(broken.items)
    assert result.stats.get("items_dropped/error") is None  # fatal, not an item-level error


async def test_a_pipeline_raising_on_one_item_drops_only_that_item(
    site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    class Picky:
        def process_item(self, item: Any, spider: Spider) -> Any:
            if item["n"] == "p3":
                raise ValueError("no p3 here " + "x" * 1000)
            return item

    server = await site({"a.test": chain_pages()})
    spider = Pages(start_urls=[server.url("a.test", "/p0")])
    collect = Collect()
    crawler = Crawler(spider, build_settings(spider, server), pipelines=[Picky(), collect])
    with caplog.at_level(logging.ERROR, logger="crawler"):
        result = await crawl(crawler)

    assert result.finish_reason == "finished"
    assert sorted(item["n"] for item in collect.items) == sorted(set(ALL) - {"p3"})
    assert result.stats["items_dropped/error"] == 1
    assert result.stats["items"] == PAGES - 1
    [record] = [r for r in caplog.records if "failed on an item" in r.getMessage()]
    message = record.getMessage()
    assert "[pages]" in message and "Picky" in message and "ValueError" in message
    assert server.url("a.test", "/p3") in message
    assert len(message) < 600  # the exception is bounded


class FailingFlushFrontier(MemoryFrontier):
    """A frontier whose flush (the checkpoint's ack write) fails ``failures`` times."""

    def __init__(self, failures: int) -> None:
        super().__init__(PolitenessPolicy(), ManualClock())
        self.failures = failures
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        if self.flushes <= self.failures:
            raise sqlite3.OperationalError(f"disk I/O error (flush {self.flushes})")


@pytest.mark.parametrize(("failures", "reason"), [(99, "checkpoint_failed"), (2, "finished")])
async def test_checkpoints_that_keep_failing_stop_the_crawl_and_are_logged(
    site: SiteFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    failures: int,
    reason: str,
) -> None:
    server = await site({"a.test": chain_pages()})
    spider = Pages(start_urls=[server.url("a.test", "/p0")])
    frontier = FailingFlushFrontier(failures)
    settings = build_settings(
        spider, server, STATE_DIR=str(tmp_path / "state"), CHECKPOINT_INTERVAL=0.01
    )
    crawler = Crawler(spider, settings, pipelines=[Collect()], frontier=frontier)
    with caplog.at_level(logging.ERROR, logger="crawler"):
        result = await crawl(crawler)

    assert result.finish_reason == reason
    logged = [r for r in caplog.records if "checkpoint failed" in r.getMessage()]
    if reason == "checkpoint_failed":
        # Three in a row, periodic and final ones together, each logged with its traceback.
        assert frontier.flushes == 3
        assert len(logged) == 3
        assert all(r.exc_info is not None for r in logged)
        assert "giving up" in logged[-1].getMessage()
        assert result.failed
        assert "crawl state could not be saved" in result.stats["error"]
        assert saved_status(tmp_path / "state") != "finished"
    else:
        assert len(logged) == 2  # then a checkpoint succeeded: the crawl went on
        assert frontier.flushes >= 3
        assert saved_status(tmp_path / "state") == "finished"


async def test_max_pages_counts_kept_responses_not_retries(site: SiteFactory) -> None:
    seen: dict[str, int] = {}

    def first_503(path: str, page: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            seen[path] = seen.get(path, 0) + 1
            if seen[path] == 1:
                return web.Response(status=503, text="busy")
            return web.Response(text=page, content_type="text/html")

        return handle

    # A single chain: p0 -> p1 -> p2 ..., every page answers 503 once, then 200.
    pages = {f"/p{n}": first_503(f"/p{n}", html_page(f"p{n}", [f"/p{n + 1}"])) for n in range(9)}
    server = await site({"a.test": pages})
    spider = Pages(start_urls=[server.url("a.test", "/p0")])
    collect = Collect()
    settings = build_settings(
        spider, server, MAX_PAGES=3, CONCURRENCY=16, RETRY_BACKOFF_BASE=0, RETRY_BACKOFF_MAX=0
    )
    result = await crawl(Crawler(spider, settings, pipelines=[collect]))

    assert result.finish_reason == "max_pages"
    assert [item["n"] for item in collect.items] == ["p0", "p1", "p2"]
    assert server.paths_seen("a.test") == ["/p0", "/p0", "/p1", "/p1", "/p2", "/p2"]
    assert result.stats["retries"] == 3
    assert result.stats["pages"] == 6  # every response received, retried ones included


class MarkingFrontier(MemoryFrontier):
    """A memory frontier with CheckpointMarks: marks are 'durable' once flushed."""

    def __init__(self, saved: dict[str, str] | None = None) -> None:
        super().__init__(PolitenessPolicy(), ManualClock())
        self.buffered: dict[str, str] = {}
        self.saved = dict(saved or {})
        self.events: list[str] = []

    def set_marks(self, marks: dict[str, str]) -> None:
        self.events.append("set_marks")
        self.buffered.update(marks)

    async def load_marks(self) -> dict[str, str]:
        return dict(self.saved)

    async def flush(self) -> None:
        self.events.append("flush")
        self.saved.update(self.buffered)
        self.buffered.clear()


async def test_output_positions_are_saved_with_the_acks_and_given_back_on_resume(
    site: SiteFactory, tmp_path: Path
) -> None:
    server = await site({"a.test": chain_pages()})
    spider = Pages(start_urls=[server.url("a.test", "/p0")])
    disk = Disk()
    assert isinstance(disk, CheckpointedOutput)
    frontier = MarkingFrontier()
    settings = build_settings(spider, server, STATE_DIR=str(tmp_path / "one"))
    result = await crawl(Crawler(spider, settings, pipelines=[disk], frontier=frontier))

    assert result.finish_reason == "finished"
    assert disk.resumed == [(None, False)]  # a first run: nothing to resume
    assert frontier.events[-2:] == ["set_marks", "flush"]  # marks go with the acks
    assert json.loads(frontier.saved["outputs"]) == {"disk:items": {"count": PAGES}}

    # A run on a state with saved marks is a resume: each output gets its position back,
    # before it is opened.
    again = Disk()
    again.durable = [*disk.durable, "written after the checkpoint"]
    spider = Pages(start_urls=[server.url("a.test", "/p0")])
    settings = build_settings(spider, server, STATE_DIR=str(tmp_path / "two"))
    marked = MarkingFrontier(frontier.saved)
    await crawl(Crawler(spider, settings, pipelines=[again], frontier=marked))
    assert again.resumed == [({"count": PAGES}, True)]
    assert again.events[:2] == ["resume_at", "open"]
    assert "written after the checkpoint" not in again.durable


async def test_a_checkpoint_waits_for_requests_whose_items_it_would_save(
    site: SiteFactory, tmp_path: Path
) -> None:
    """A checkpoint never falls between a request's items and its ack: the position it
    saves covers exactly the items of the requests it marks done."""
    log: list[str] = []
    checkpoint_waiting = asyncio.Event()

    class WatchedBarrier(ItemBarrier):
        async def close(self) -> None:
            log.append("checkpoint begins")
            checkpoint_waiting.set()
            await super().close()

    class Slow(Spider):
        name = "slow"

        async def parse(self, response: Response) -> Any:
            yield {"n": "slow"}
            await checkpoint_waiting.wait()  # a checkpoint begins between item and ack

    class LoggedFrontier(MarkingFrontier):
        async def ack(self, lease: Lease) -> None:
            log.append("ack")
            await super().ack(lease)

    class LoggedDisk(Disk):
        async def flush(self, spider: Spider) -> None:
            log.append(f"flush {self.pending}")
            await super().flush(spider)

    server = await site({"a.test": {"/": html_page("slow")}})
    spider = Slow(start_urls=[server.url("a.test")])
    settings = build_settings(
        spider, server, STATE_DIR=str(tmp_path / "state"), CHECKPOINT_INTERVAL=0.01
    )
    crawler = Crawler(spider, settings, pipelines=[LoggedDisk()], frontier=LoggedFrontier())
    assert isinstance(crawler.frontier, AckGate)
    crawler.frontier.items = WatchedBarrier()
    result = await crawl(crawler)
    assert result.finish_reason == "finished"
    assert log.index("ack") < log.index("flush ['slow']")


async def test_acks_wait_for_a_running_flush_even_when_the_crawl_stops() -> None:
    """AckGate.stop() does not open the gate in the middle of a checkpoint; seal() drops acks."""
    inner = MarkingFrontier()
    gate = AckGate(inner)
    await gate.open()
    await gate.push([Request("http://a.test/1"), Request("http://a.test/2")])
    first, second = await gate.lease(), await gate.lease()
    assert first is not None and second is not None
    gate.close_gate()  # a checkpoint is flushing
    ack = asyncio.ensure_future(gate.ack(first))
    gate.stop()
    await asyncio.sleep(0)  # one loop turn: the ack reaches the gate
    assert not ack.done()  # still held: the flush has not completed
    gate.open_gate()
    await ack
    assert (await inner.counts()).done == 1
    # A sealed gate (an output failed) drops acks: that request is fetched again next run.
    gate.seal()
    await gate.ack(second)
    assert (await inner.counts()).done == 1
    await gate.close()


SPIDER = textwrap.dedent(
    '''
    import errno
    import os
    import sys
    from pathlib import Path

    from crawler import Spider
    from crawler.errors import OutputError


    class LineFile:
        """Appends one line per item to items.out at every flush (fsync'd); with
        DISK_LINES=N the disk holds N lines: a flush past that writes what fits and
        fails like a full disk. Checkpointed: a resume cuts the file back."""

        def __init__(self):
            self.path = Path("items.out")
            self.pending = []
            self.resume = None

        def output_id(self):
            return f"lines:{self.path.resolve()}"

        def durable_position(self):
            return {"size": self.path.stat().st_size if self.path.exists() else 0}

        def resume_at(self, position, resuming):
            self.resume = position if resuming else None

        def open(self, spider):
            if self.resume is not None:
                os.truncate(self.path, self.resume["size"])

        def process_item(self, item, spider):
            self.pending.append(item["n"] + "\\n")
            return item

        def flush(self, spider):
            limit = int(os.environ.get("DISK_LINES", "0"))
            lines = self.path.read_text().count("\\n") if self.path.exists() else 0
            batch, self.pending = self.pending, []
            room = limit - lines if limit else len(batch)
            with open(self.path, "a") as file:
                file.writelines(batch[:room])
                file.flush()
                os.fsync(file.fileno())
            if room < len(batch):
                self.pending = batch[room:]
                error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                raise OutputError(f"cannot write {self.path}: {error}", output=str(self.path))
            if batch:
                print(f"FLUSHED {lines + len(batch)}", file=sys.stderr, flush=True)

        def close(self, spider):
            self.flush(spider)


    class Pages(Spider):
        name = "pages"
        settings = {"PIPELINES": [LineFile()]}

        def parse(self, response):
            yield {"n": response.css_first("title").text()}
            yield from response.follow_all()
    '''
)


async def run_cli(
    tmp: Path, server: SiteServer, env: dict[str, str], release: asyncio.Event | None = None
) -> tuple[int, str]:
    """``crawl run spider.py --state state``; sets ``release`` once a flush saved items."""
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "crawler", "run", "spider.py"],
        *["-a", f"start_urls={server.url('a.test', '/p0')}"],
        *["-s", "RESOLVE=a.test:127.0.0.1", "-s", "PROGRESS_INTERVAL=0"],
        *["-s", "ROBOTSTXT_OBEY=false", "-s", "CHECKPOINT_INTERVAL=0.02"],
        *["--state", "state"],
        cwd=tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    assert proc.stderr is not None
    head = b""
    while release is not None and not release.is_set():
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        head += line
        if not line or line.startswith(b"FLUSHED"):
            release.set()
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, (head + err).decode()


async def test_cli_exits_7_naming_the_output_and_resumes_once_space_is_freed(
    tmp_path: Path,
) -> None:
    (tmp_path / "spider.py").write_text(SPIDER)
    pages = chain_pages()
    saved = asyncio.Event()
    hold(pages, (4, saved))  # the rest waits until a checkpoint saved some lines
    async with SiteServer({"a.test": pages}) as server:
        code, err = await run_cli(tmp_path, server, {"DISK_LINES": "10"}, saved)
        assert code == 7, err
        last = err.strip().splitlines()[-1]
        assert last == (
            "error: output failed: cannot write items.out: [Errno 28] No space left on device"
        )
        assert "Traceback" not in err  # an expected failure: one line, no traceback
        assert "stopped: output_failed" in err
        assert len((tmp_path / "items.out").read_text().splitlines()) == 10

        code, err = await run_cli(tmp_path, server, {})
        assert code == 0, err
        assert "already finished" not in err
    lines = (tmp_path / "items.out").read_text().splitlines()
    assert sorted(lines) == ALL  # every item, each once (the file was cut back on resume)


BIG_ITEMS = textwrap.dedent(
    """
    from crawler import Spider

    class Pages(Spider):
        name = "pages"

        def parse(self, response):
            yield {"n": response.css_first("title").text(), "pad": "x" * 100_000}
            yield from response.follow_all()
    """
)


async def test_a_full_disk_exits_7_and_the_same_command_then_finishes_with_every_item(
    tmp_path: Path,
) -> None:
    """The issue's case, with the JSON Lines exporter: files may not grow past 300 kB
    (RLIMIT_FSIZE: Python ignores SIGXFSZ, so writes fail with EFBIG)."""
    (tmp_path / "spider.py").write_text(BIG_ITEMS)

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    async with SiteServer({"a.test": chain_pages()}) as server:
        args = [
            *[sys.executable, "-m", "crawler", "run", "spider.py"],
            *["-a", f"start_urls={server.url('a.test', '/p0')}"],
            *["-s", "RESOLVE=a.test:127.0.0.1", "-s", "PROGRESS_INTERVAL=0"],
            *["-s", "ROBOTSTXT_OBEY=false", "--state", "state", "-o", "items.jsonl"],
        ]
        for limit in (small_disk, None):
            proc = await asyncio.create_subprocess_exec(
                *args,
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=limit,
            )
            _, raw = await asyncio.wait_for(proc.communicate(), 60)
            err = raw.decode()
            if limit is not None:
                assert proc.returncode == 7, err
                last = err.strip().splitlines()[-1]
                assert last.startswith("error: output failed:"), err
                assert "items.jsonl" in last and os.strerror(errno.EFBIG) in last
                assert "Traceback" not in err
        assert proc.returncode == 0, err
    lines = (tmp_path / "items.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["n"] for line in lines) == ALL  # every item, once
