"""Per-host delays: DOWNLOAD_DELAY and its jitter, HOST_DELAYS, AutoThrottle, and hosts not
slowing each other down.

Delays are asserted from the server's own arrival times, as lower bounds only.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiohttp import web
from peers import crawl
from politeness_peers import TOLERANCE_S, Recorder, status, timed_site

from crawler.frontier import PolitenessPolicy
from crawler.frontier.domains import HostReadiness
from crawler.testing import ManualClock, html_page
from crawler.throttle import AutoThrottle


def numbered(count: int) -> dict[str, str]:
    return {f"/{n}": html_page(str(n)) for n in range(count)}


async def test_download_delay_spaces_requests_to_a_host() -> None:
    async with timed_site({"site.test": numbered(4)}) as server:
        spider = Recorder([server.url("site.test", f"/{n}") for n in range(4)])
        await crawl(spider, RESOLVE=server.resolve_map(), DOWNLOAD_DELAY=0.2)
    gaps = server.gaps("site.test")
    assert len(gaps) == 3
    assert min(gaps) >= 0.2 - TOLERANCE_S, gaps


async def test_download_delay_jitter_keeps_the_lower_bound() -> None:
    async with timed_site({"site.test": numbered(5)}) as server:
        spider = Recorder([server.url("site.test", f"/{n}") for n in range(5)])
        await crawl(
            spider, RESOLVE=server.resolve_map(), DOWNLOAD_DELAY=0.2, DOWNLOAD_DELAY_JITTER=0.5
        )
    assert len(spider.responses) == 5
    assert min(server.gaps("site.test")) >= 0.1 - TOLERANCE_S, server.gaps("site.test")


async def test_jitter_draws_delays_within_its_bounds() -> None:
    clock = ManualClock()
    policy = PolitenessPolicy(per_host=1, delay_s=1.0, jitter=0.5)
    readiness = HostReadiness(policy, clock, _rng=random.Random(7))
    delays = []
    for n in range(200):
        readiness.set_head("h.test", (0, n))
        assert readiness.pop_ready() == "h.test"
        readiness.finished("h.test")
        readiness.set_head("h.test", (0, n + 1))
        next_at = readiness.next_time()
        assert next_at is not None
        delays.append(next_at - clock.now())
        await clock.advance(2.0)
        readiness.set_head("h.test", None)
    assert min(delays) >= 0.5
    assert max(delays) <= 1.5
    assert max(delays) - min(delays) > 0.5  # it really varies


async def test_host_delays_override_download_delay_per_host() -> None:
    pages = {"slow.test": numbered(3), "fast.test": numbered(3), "other.test": numbered(3)}
    async with timed_site(pages) as server:
        urls = [server.url(host, f"/{n}") for host in pages for n in range(3)]
        spider = Recorder(urls)
        run = await crawl(
            spider,
            RESOLVE=server.resolve_map(),
            DOWNLOAD_DELAY=0.15,
            HOST_DELAYS={"Slow.Test": 0.3, "fast.test": 0},
        )
    assert len(spider.responses) == 9
    assert min(server.gaps("slow.test")) >= 0.3 - TOLERANCE_S
    assert min(server.gaps("other.test")) >= 0.15 - TOLERANCE_S
    readiness = run.crawler.frontier.readiness  # type: ignore[attr-defined]
    assert readiness.delay_of("slow.test") == 0.3
    assert readiness.delay_of("fast.test") == 0.0
    assert readiness.delay_of("other.test") == 0.15


async def test_a_slow_host_does_not_slow_down_another_host() -> None:
    """slow.test answers only once fast.test has been served completely: if slow.test held
    up the crawl of fast.test, its pages would time out (and answer 504)."""
    fast_done = asyncio.Event()
    fast_served = 0

    async def fast(request: web.Request) -> web.Response:
        nonlocal fast_served
        fast_served += 1
        if fast_served == 6:
            fast_done.set()
        return web.Response(text=html_page("fast"), content_type="text/html")

    async def slow(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(5):  # only trips when the test fails
                await fast_done.wait()
        except TimeoutError:
            return web.Response(status=504, text="fast.test was never finished")
        return web.Response(text=html_page("slow"), content_type="text/html")

    pages = {
        "slow.test": {f"/{n}": slow for n in range(6)},
        "fast.test": {f"/{n}": fast for n in range(6)},
    }
    async with timed_site(pages) as server:
        urls = [server.url(host, f"/{n}") for host in pages for n in range(6)]  # slow first
        spider = Recorder(urls)
        await crawl(
            spider,
            RESOLVE=server.resolve_map(),
            CONCURRENCY=4,
            CONCURRENCY_PER_HOST=2,
        )
    assert sorted(r.status for r in spider.responses) == [200] * 12
    order = [host for host, _, _ in server.arrivals]
    # two slow.test requests start, then all of fast.test, then the rest of slow.test
    assert order.index("fast.test") < order.index("slow.test", 2)
    assert order[-4:] == ["slow.test"] * 4
    assert server.max_concurrency["slow.test"] == 2


# -- AutoThrottle ----------------------------------------------------------------------------


async def test_autothrottle_raises_the_delay_after_429_and_503_and_keeps_the_floor() -> None:
    pages: dict[str, Any] = {**numbered(6), "/0": status(503), "/1": status(429)}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test", f"/{n}") for n in range(6)])
        run = await crawl(
            spider,
            RESOLVE=server.resolve_map(),
            AUTOTHROTTLE=True,
            AUTOTHROTTLE_START_DELAY=0,
            DOWNLOAD_DELAY=0.1,
            CONCURRENCY_PER_HOST=1,
            RETRY_TIMES=0,
        )
    assert server.paths_seen("site.test") == [f"/{n}" for n in range(6)]
    assert run.stats["failures/http_status"] == 2
    gaps = server.gaps("site.test")
    # 0.1 (DOWNLOAD_DELAY) -> 503: 0.2 -> 429: 0.4 -> fast 200s halve it back towards the
    # latency, but never below DOWNLOAD_DELAY: 0.2, 0.1.
    expected = [0.1, 0.2, 0.4, 0.2, 0.1]
    for gap, lower in zip(gaps, expected, strict=True):
        assert gap >= lower - TOLERANCE_S, (gaps, expected)
    readiness = run.crawler.frontier.readiness  # type: ignore[attr-defined]
    assert readiness.delay_of("site.test") >= 0.1


def test_autothrottle_starts_at_the_start_delay_or_the_floor() -> None:
    throttle = AutoThrottle(start_delay_s=1.0, default_floor_s=0.0)
    assert throttle.delay("h") == 1.0
    assert AutoThrottle(start_delay_s=0.5, default_floor_s=2.0).delay("h") == 2.0


@pytest.mark.parametrize("code", [429, 503])
def test_autothrottle_doubles_on_429_and_503_up_to_the_max(code: int) -> None:
    throttle = AutoThrottle(start_delay_s=1.0, max_delay_s=5.0)
    assert [throttle.observe("h", 0.01, code) for _ in range(4)] == [2.0, 4.0, 5.0, 5.0]
    assert throttle.delay("other") == 1.0  # per host


def test_autothrottle_moves_halfway_towards_latency_over_target_concurrency() -> None:
    throttle = AutoThrottle(start_delay_s=1.0, target_concurrency=2.0)
    assert throttle.observe("h", 3.0, 200) == pytest.approx(1.25)  # (1 + 3/2) / 2
    assert throttle.observe("h", 0.0, 200) == pytest.approx(0.625)


def test_autothrottle_never_goes_below_the_floor() -> None:
    throttle = AutoThrottle(start_delay_s=1.0, default_floor_s=0.3)
    for _ in range(20):
        delay = throttle.observe("h", 0.0, 200)
    assert delay == 0.3
    throttle.set_floor("robots", 2.0)  # e.g. a robots.txt Crawl-delay
    assert throttle.floor("robots") == 2.0
    assert throttle.delay("robots") == 2.0
    assert throttle.observe("robots", 0.0, 200) == 2.0


def test_an_error_answer_never_lowers_the_delay() -> None:
    throttle = AutoThrottle(start_delay_s=2.0)
    assert throttle.observe("h", 0.0, 500) == 2.0
    assert throttle.observe("h", 0.0, 404) == 2.0
    assert throttle.observe("h", 8.0, 500) == 5.0  # a slow error may raise it


def test_a_429_from_a_zero_delay_still_backs_off() -> None:
    throttle = AutoThrottle(start_delay_s=0.0)
    assert throttle.observe("h", 0.0, 429) == 0.1
    assert throttle.observe("h", 0.0, 429) == 0.2
