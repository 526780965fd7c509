"""Progress while crawling: the host board, the one-line form, the live panel, and what
`crawl run` shows in a pseudo-terminal and without one.

The terminal tests hold the site's pages until the panel (or a progress line) has been
read from the child's stderr, so they wait for output, never for time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pty
import re
import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp import web
from rich.console import Console

from crawler.hostboard import HostBoard
from crawler.progress import LiveProgress, Progress, progress_line
from crawler.testing import ManualClock, SiteServer, html_page

GUARD_S = 30.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def test_host_board_busiest_slowest_and_waits_that_expire() -> None:
    clock = ManualClock(start=100.0)
    board = HostBoard(clock, max_hosts=3)
    for host in ("a.test", "a.test", "b.test"):
        board.started(host)
    board.finished("a.test", 0.2)
    board.finished("b.test", 0.5)
    assert [(h.host, h.in_flight) for h in board.busiest()] == [("a.test", 1)]
    assert [(h.host, round(h.mean_ms)) for h in board.slowest()] == [
        ("b.test", 500),
        ("a.test", 200),
    ]
    board.waiting("c.test", "robots.txt unreachable, retry", for_s=30)
    board.waiting("b.test", "held (retry_after)", for_s=5)
    assert [(w.host, w.until) for w in board.waits()] == [("c.test", 130.0), ("b.test", 105.0)]
    await clock.advance(6)
    assert [w.host for w in board.waits()] == ["c.test"]
    board.started("c.test")  # a request went out: it is not waiting any more
    assert board.waits() == []


def test_host_board_stays_bounded() -> None:
    board = HostBoard(ManualClock(), max_hosts=10)
    for n in range(1000):
        board.started(f"h{n}.test")
        board.finished(f"h{n}.test", 0.01)
    assert len(board.slowest(count=100)) == 10


PROGRESS = Progress(
    "books",
    {"pages": 1200, "items": 900, "failures/timeout": 3, "failures/network": 1, "retries": 5},
    queued=40,
    in_flight=8,
    elapsed_s=75.0,
    pages_per_s=16.0,
    now=10.0,
    waits=[],
)


def test_progress_line_names_failures_retries_and_elapsed_time() -> None:
    assert progress_line(PROGRESS) == (
        "1,200 pages (16.0/s), 900 items, 40 queued, 8 in flight, 4 failed"
        " (timeout=3, network=1), 5 retries, 0:01:15"
    )


def test_live_panel_shows_totals_failures_hosts_and_waits() -> None:
    board = HostBoard(ManualClock(start=10.0))
    board.started("slow.test")
    board.waiting("shop.test", "robots.txt unreachable (connection refused)", for_s=42)
    progress = Progress(
        "books",
        PROGRESS.counters,
        40,
        8,
        75.0,
        16.0,
        10.0,
        board.busiest(),
        board.slowest(),
        board.waits(),
    )
    with open(os.devnull, "w") as sink:
        console = Console(record=True, width=120, file=sink)
        console.print(LiveProgress.render(progress))
    text = console.export_text()
    assert "1,200 (16.0/s)   items 900   queued 40   in flight 8   0:01:15" in text
    assert "failures  timeout=3, network=1" in text
    assert "busiest  slow.test (1 in flight)" in text
    assert "waiting  shop.test: robots.txt unreachable (connection refused) (42s left)" in text


SPIDER = textwrap.dedent(
    """
    from crawler import Spider

    class Pages(Spider):
        name = "pages"

        async def parse(self, response):
            yield {"url": response.url}
            for request in response.follow_all():
                yield request
    """
)


async def _held_site(release: asyncio.Event) -> SiteServer:
    async def held(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text=html_page("held"), content_type="text/html")

    server = SiteServer({"a.test": {"/": html_page("home", ["/held"]), "/held": held}})
    await server.__aenter__()
    return server


async def _run_until(
    args: list[str], cwd: Path, marker: str, release: asyncio.Event, tty: bool
) -> tuple[int, str]:
    """Run ``crawl`` (in a pty if ``tty``); once ``marker`` shows on stderr, release the site."""
    command = [sys.executable, "-m", "crawler", *args]
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm", "PYTHONUNBUFFERED": "1"}
    loop = asyncio.get_running_loop()
    output = bytearray()
    seen = asyncio.Event()
    if tty:
        primary, secondary = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, env=env, stdin=secondary, stdout=secondary, stderr=secondary
        )
        os.close(secondary)
        ended = asyncio.Event()

        def readable() -> None:
            try:
                data = os.read(primary, 65536)
            except OSError:
                data = b""
            if not data:  # the child closed the terminal: it is ending
                loop.remove_reader(primary)
                ended.set()
                seen.set()
                return
            output.extend(data)
            if marker in ANSI.sub("", output.decode(errors="replace")):
                seen.set()

        loop.add_reader(primary, readable)
        try:
            async with asyncio.timeout(GUARD_S):
                await seen.wait()
                release.set()
                await ended.wait()
                code = await proc.wait()
        finally:
            loop.remove_reader(primary)
            os.close(primary)
    else:
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        async with asyncio.timeout(GUARD_S):
            while not seen.is_set():
                line = await proc.stderr.readline()
                if not line:
                    break
                output.extend(line)
                if marker in line.decode(errors="replace"):
                    seen.set()
            release.set()
            output.extend(await proc.stderr.read())
            code = await proc.wait()
    return code, ANSI.sub("", output.decode(errors="replace"))


def _args(server: SiteServer, *extra: str) -> list[str]:
    return [
        "run",
        "pages.py",
        "-a",
        f"start_urls={server.url('a.test')}",
        "-s",
        "RESOLVE=a.test:127.0.0.1",
        "-s",
        "ROBOTSTXT_OBEY=false",
        "-O",
        "items.jsonl",
        *extra,
    ]


async def test_a_terminal_gets_the_live_panel_then_the_summary_table(tmp_path: Path) -> None:
    (tmp_path / "pages.py").write_text(SPIDER)
    release = asyncio.Event()
    server = await _held_site(release)
    try:
        code, shown = await _run_until(_args(server), tmp_path, "in flight 1", release, tty=True)
    finally:
        await server.__aexit__(None, None, None)
    assert code == 0, shown
    assert re.search(r"pages +1 \(\d+\.\d/s\) +items 1 +queued 0 +in flight 1", shown), shown
    assert "busiest  a.test (1 in flight)" in shown, shown
    assert re.search(r"finished +after \d+\.\d s", shown), shown  # the summary table
    assert re.search(r"pages +2 \(", shown), shown


async def test_off_a_terminal_progress_is_plain_log_lines(tmp_path: Path) -> None:
    (tmp_path / "pages.py").write_text(SPIDER)
    release = asyncio.Event()
    server = await _held_site(release)
    try:
        code, shown = await _run_until(
            _args(server, "-s", "PROGRESS_INTERVAL=0.2"),
            tmp_path,
            "1 in flight",
            release,
            tty=False,
        )
    finally:
        await server.__aexit__(None, None, None)
    assert code == 0, shown
    line = next(line for line in shown.splitlines() if "1 in flight" in line)
    assert re.search(
        r"INFO crawler\.engine: \[pages\] 1 pages \(\d+\.\d/s\), 1 items, 0 queued, 1 in flight,"
        r" 0 failed, 0:00:\d\d$",
        line,
    ), line
    assert "\x1b" not in shown  # no colours, no cursor movement
    assert re.search(r"^ *finished: after \d+\.\d s$", shown, re.M), shown


async def test_quiet_turns_progress_off(tmp_path: Path) -> None:
    (tmp_path / "pages.py").write_text(SPIDER)
    release = asyncio.Event()
    release.set()
    server = await _held_site(release)
    try:
        code, shown = await _run_until(
            _args(server, "-q", "-s", "PROGRESS_INTERVAL=0.01"),
            tmp_path,
            "never",
            release,
            tty=True,
        )
    finally:
        await server.__aexit__(None, None, None)
    assert code == 0, shown
    assert "in flight" not in shown and "queued" not in shown
    assert re.search(r"pages +2 \(", shown), shown  # the summary is still shown


async def test_debug_logs_one_line_per_response_and_per_item(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from conftest import run_spider
    from engine_peers import LinkSpider

    pages = {"a.test": {"/": html_page("Home", ["/b"]), "/b": html_page("B")}}
    async with SiteServer(pages) as server:
        with caplog.at_level(logging.DEBUG, logger="crawler"):
            await run_spider(LinkSpider(start_urls=[server.url("a.test")]), server)
    lines = [r.getMessage() for r in caplog.records]
    home, b = server.url("a.test"), server.url("a.test", "/b")
    fetched = [line for line in lines if " fetched " in line]
    assert len(fetched) == 2, lines
    assert re.fullmatch(
        rf"\[links\] fetched 200 GET {re.escape(home)}, \d+ bytes in \d+ ms", fetched[0]
    )
    assert re.fullmatch(
        rf"\[links\] fetched 200 GET {re.escape(b)} \(from {re.escape(home)}\), \d+ bytes in \d+ ms",
        fetched[1],
    )
    items = [line for line in lines if " item from " in line]
    assert len(items) == 2 and items[0].startswith(f"[links] item from {home}: {{'url'")


async def test_waits_for_crawl_delay_and_retry_after_reach_the_host_board() -> None:
    from conftest import build_settings

    from crawler import Crawler

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "120"})

    pages = {
        "a.test": {
            "/": html_page("Home", ["/b"]),
            "/b": html_page("B"),
            "/robots.txt": "User-agent: *\nCrawl-delay: 7\n",
        },
        "c.test": {"/": busy},
    }
    async with SiteServer(pages) as server:
        from engine_peers import LinkSpider

        spider = LinkSpider(start_urls=[server.url("a.test"), server.url("c.test")])
        clock = ManualClock()
        settings = build_settings(spider, server, ROBOTSTXT_OBEY=True, RETRY_TIMES=1)
        crawler = Crawler(spider, settings, clock=clock)
        task = asyncio.create_task(crawler.run())
        seen: dict[str, str] = {}
        async with asyncio.timeout(GUARD_S):
            while not task.done():
                for wait in crawler.hosts.waits():
                    seen.setdefault(wait.host, wait.reason)
                if {"a.test", "c.test"} <= set(seen):
                    break
                await clock.advance(1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert seen["a.test"] == "crawl-delay 7s"
    assert seen["c.test"].startswith("server asked to wait (")
