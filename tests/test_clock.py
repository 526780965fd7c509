"""Injected time and the public seams that replaced private reach-throughs.

Everything that waits here waits on a ManualClock: no test sleeps.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from conftest import SiteFactory

from crawler import Request
from crawler.clock import sleep, wait_event
from crawler.downloader import Downloader, DownloaderOptions
from crawler.downloader.sessions import SessionOptions, SessionPool
from crawler.errors import CrawlerError, RequestTimeout
from crawler.settings import Settings
from crawler.spider import Spider
from crawler.supervisor import Supervisor
from crawler.testing import ManualClock

GUARD_S = 5.0  # only against a hang: the manual clock decides


async def test_sleep_waits_for_the_manual_clock() -> None:
    clock = ManualClock()
    sleeper = asyncio.create_task(sleep(clock, 2.0))
    await asyncio.sleep(0)  # the sleep starts at 1000.0
    await clock.advance(1.99)
    assert not sleeper.done()
    await clock.advance(0.01)
    async with asyncio.timeout(GUARD_S):
        await sleeper


async def test_wait_event_ends_with_the_event_or_the_timeout() -> None:
    clock = ManualClock()
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_event(clock, event, 3.0))
    await asyncio.sleep(0)
    await clock.advance(2.9)
    assert not waiting.done()
    await clock.advance(0.1)
    async with asyncio.timeout(GUARD_S):
        assert await waiting is False
    waiting = asyncio.create_task(wait_event(clock, event, 3.0))
    await clock.advance(1.0)
    event.set()
    async with asyncio.timeout(GUARD_S):
        assert await waiting is True
    assert await wait_event(clock, event, 0.0) is True  # already set: at once


async def test_cancelled_sleep_leaves_no_timer_behind() -> None:
    clock = ManualClock()
    sleeper = asyncio.create_task(sleep(clock, 1.0))
    await asyncio.sleep(0)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    await clock.advance(2.0)  # the cancelled timer does not fire into a finished future


async def test_supervisor_loops_run_on_the_injected_clock() -> None:
    clock = ManualClock()
    supervisor = Supervisor("s", lambda failure: None, 10.0, 0.0, clock)
    rounds: list[float] = []

    async def job() -> None:
        rounds.append(clock.now())

    stop = asyncio.Event()
    worker = asyncio.create_task(stop.wait())
    async with asyncio.TaskGroup() as group:
        group.create_task(supervisor.watch([worker]))
        group.create_task(supervisor.every("job", 10.0, job))
        await asyncio.sleep(0)  # the loops start waiting at 1000.0
        await clock.advance(9.9)
        assert rounds == []
        await clock.advance(0.1)
        assert rounds == [1010.0]
        stop.set()  # the workers end: the loop ends without waiting for the next round
    assert rounds == [1010.0]


async def test_final_checkpoint_backs_off_on_the_injected_clock() -> None:
    clock = ManualClock()
    supervisor = Supervisor("s", lambda failure: None, 1.0, 0.0, clock)
    attempts: list[float] = []

    async def checkpoint(status: str) -> None:
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise OSError("disk full")

    final = asyncio.create_task(supervisor.final_checkpoint(checkpoint, "running"))
    await clock.advance(0)
    assert attempts == [1000.0]
    await clock.advance(1.99)  # one failure in a row: twice the interval
    assert attempts == [1000.0]
    await clock.advance(0.01)
    async with asyncio.timeout(GUARD_S):
        await final
    assert attempts == [1000.0, 1002.0]
    assert supervisor.failure is None


def test_spider_cookies_for_answers_through_its_public_lookup() -> None:
    spider = Spider()
    with pytest.raises(CrawlerError, match="only while the spider is being crawled"):
        spider.cookies_for("https://a.test/")
    spider.use_cookie_lookup(lambda url: {"seen": url})
    assert spider.cookies_for("https://a.test/") == {"seen": "https://a.test/"}
    spider.use_cookie_lookup(None)
    with pytest.raises(CrawlerError):
        spider.cookies_for("https://a.test/")


async def test_session_pool_says_when_evicted_sessions_wait_to_be_closed() -> None:
    connector = aiohttp.TCPConnector()
    try:
        pool = SessionPool(connector, SessionOptions(max_open=1))
        pool.acquire("a.test")
        pool.release("a.test")
        assert not pool.has_evicted
        pool.acquire("b.test")  # over max_open: the idle a.test session is evicted
        assert pool.has_evicted
        await pool.close_idle()
        assert not pool.has_evicted
        pool.release("b.test")
        await pool.close()
    finally:
        await connector.close()


async def test_redirect_chain_deadline_is_kept_on_the_injected_clock(site: SiteFactory) -> None:
    clock = ManualClock()

    async def slow_hop(request: web.Request) -> web.Response:
        await clock.advance(31.0)  # REQUEST_TIMEOUT (30 s) passes while this hop is served
        raise web.HTTPFound("/next")

    server = await site({"a.test": {"/": slow_hop, "/next": "never fetched"}})
    settings = Settings.build(("test", {"RESOLVE": server.resolve_map(), "REQUEST_TIMEOUT": 30}))
    async with Downloader(DownloaderOptions.from_settings(settings), clock) as downloader:
        request = Request(server.url("a.test"))
        downloader.trust_start_host(request.host)
        with pytest.raises(RequestTimeout, match="after 1 redirects"):
            await downloader.fetch(request)
    assert server.paths_seen() == ["a.test/"]
