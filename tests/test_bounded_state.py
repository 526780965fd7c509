"""Per-host state is bounded: RecentHosts, and its users' eviction rules (robots.txt parsers,
AutoThrottle, readiness overrides, per-host stats), then a 300-host crawl with small bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from peers import make_crawler

import crawler.bounded
import crawler.middlewares
from crawler import Request, Response, Spider
from crawler.bounded import RecentHosts
from crawler.frontier import PolitenessPolicy
from crawler.frontier.domains import HostReadiness
from crawler.robots import RobotsCache, Verdict
from crawler.stats import Stats
from crawler.testing import ManualClock, SiteServer, html_page
from crawler.throttle import AutoThrottle

# -- RecentHosts ------------------------------------------------------------------------------


def test_recent_hosts_evicts_the_least_recently_used() -> None:
    hosts: RecentHosts[int] = RecentHosts(3)
    for n in range(3):
        hosts.put(f"h{n}", n)
    assert hosts.get("h0") == 0  # h0 is now the most recent
    assert hosts.peek("h1") == 1  # peek does not count as use
    hosts.put("h3", 3)
    assert list(hosts) == ["h2", "h0", "h3"]
    assert len(hosts) == 3 and hosts.evicted == 1
    assert "h1" not in hosts and hosts.get("h1") is None
    assert hosts.pop("h2") == 2 and len(hosts) == 2


def test_recent_hosts_keeps_protected_entries_even_over_capacity() -> None:
    busy = {"h0", "h1"}
    hosts: RecentHosts[str] = RecentHosts(2, lambda host: host not in busy)
    for n in range(4):
        hosts.put(f"h{n}", f"h{n}")
    assert set(hosts) == {"h0", "h1", "h3"}  # h2 went; the busy ones stay, h3 is newest
    busy.clear()
    hosts.put("h4", "h4")  # they are evictable now: back to capacity
    assert len(hosts) == 2 and "h4" in hosts


def test_recent_hosts_never_evicts_what_it_just_stored() -> None:
    hosts: RecentHosts[int] = RecentHosts(1, lambda value: value >= 5)
    for n in range(4):
        hosts.put(f"h{n}", n)
    assert len(hosts) == 4  # all protected: over capacity rather than wrong
    hosts.put("h9", 9)
    assert "h9" in hosts


def test_recent_hosts_capacity_is_checked() -> None:
    with pytest.raises(ValueError, match="at least 1, got 0"):
        RecentHosts(0)


# -- AutoThrottle -----------------------------------------------------------------------------


async def test_throttle_evicts_a_host_only_once_its_delay_has_passed() -> None:
    clock = ManualClock()
    throttle = AutoThrottle(start_delay_s=2.0, clock=clock, max_hosts=2)
    throttle.observe("a", 2.0, 200)  # delay stays 2.0
    throttle.observe("b", 2.0, 200)
    throttle.observe("c", 2.0, 200)  # a and b still within their delay: kept
    assert len(throttle) == 3
    await clock.advance(2.0)
    throttle.observe("d", 2.0, 200)
    assert len(throttle) == 2
    assert throttle.delay("d") == 2.0 and throttle.delay("c") == 2.0


async def test_an_evicted_host_starts_again_from_the_start_delay() -> None:
    clock = ManualClock()
    throttle = AutoThrottle(start_delay_s=1.0, clock=clock, max_hosts=1)
    for _ in range(5):
        throttle.observe("a", 0.0, 200)
    assert throttle.delay("a") < 0.1
    await clock.advance(1.0)
    throttle.observe("b", 0.0, 200)
    assert len(throttle) == 1
    assert throttle.delay("a") == 1.0  # forgotten: back to the (conservative) start


class Sink:
    def __init__(self) -> None:
        self.writes: list[tuple[str, float | None]] = []

    async def set_host_delay(self, host: str, delay_s: float | None) -> None:
        self.writes.append((host, delay_s))


async def test_adapt_writes_only_meaningful_changes() -> None:
    clock = ManualClock()
    throttle = AutoThrottle(start_delay_s=1.0, clock=clock)
    sink = Sink()
    await throttle.adapt(sink, "h", 1.0, 200)  # first answer: always written
    assert sink.writes == [("h", 1.0)]
    await throttle.adapt(sink, "h", 1.1, 200)  # 1.05: within 10 %
    await throttle.adapt(sink, "h", 1.0, 200)
    assert len(sink.writes) == 1
    await throttle.adapt(sink, "h", 0.0, 429)  # a back-off: written at once
    assert sink.writes[-1][1] == pytest.approx(2.05)
    await throttle.adapt(sink, "h", 0.0, 200)  # other changes: at most once a second
    assert len(sink.writes) == 2
    await clock.advance(1.0)
    await throttle.adapt(sink, "h", 0.0, 200)
    assert len(sink.writes) == 3 and sink.writes[-1][1] == pytest.approx(2.05 / 4)


@pytest.mark.parametrize(("jitter", "most"), [(0.002, 5), (0.01, 1 + 50)])
async def test_a_thousand_responses_write_at_most_once_a_second(jitter: float, most: int) -> None:
    clock = ManualClock()
    throttle = AutoThrottle(start_delay_s=1.0, clock=clock)
    sink = Sink()
    for n in range(1000):  # 50 s of a host answering in 50-70 ms (or 58-62 ms)
        await throttle.adapt(sink, "h", 0.06 + jitter * (n % 3 - 1), 200)
        await clock.advance(0.05)
    assert len(sink.writes) <= most
    assert sink.writes[-1][1] == pytest.approx(0.06, rel=0.2)


async def test_a_new_floor_is_written_again_by_the_next_answer() -> None:
    throttle = AutoThrottle(start_delay_s=1.0, clock=ManualClock())
    sink = Sink()
    await throttle.adapt(sink, "h", 1.0, 200)
    throttle.set_floor("h", 1.02)  # the caller writes the frontier itself here
    await throttle.adapt(sink, "h", 1.0, 200)
    assert sink.writes == [("h", 1.0), ("h", 1.02)]


# -- HostReadiness ----------------------------------------------------------------------------


def readiness(clock: ManualClock, max_hosts: int = 2) -> HostReadiness:
    return HostReadiness(PolitenessPolicy(per_host=1, delay_s=0.0), clock, max_hosts=max_hosts)


def serve_one(ready: HostReadiness, host: str, seq: int) -> None:
    ready.set_head(host, (0, seq))
    assert ready.pop_ready() == host
    ready.set_head(host, None)
    ready.finished(host)


async def test_idle_hosts_with_overrides_are_kept_for_the_recent_ones_only() -> None:
    clock = ManualClock()
    ready = readiness(clock)
    for n in range(5):
        ready.set_delay(f"h{n}", 0.5)
        serve_one(ready, f"h{n}", n)
        await clock.advance(0.5)
    assert len(ready) == 2
    assert ready.delay_of("h4") == 0.5
    assert ready.delay_of("h0") == 0.0  # evicted: the policy's delay again


async def test_hosts_with_queued_work_in_flight_or_on_hold_are_never_evicted() -> None:
    clock = ManualClock()
    ready = readiness(clock)
    ready.set_delay("queued", 3.0)
    ready.set_head("queued", (0, 1))
    ready.set_delay("flying", 3.0)
    ready.set_head("flying", (0, 0))
    assert ready.pop_ready() == "flying"
    ready.set_head("flying", None)
    ready.delay_host("held", clock.now() + 10.0)
    for n in range(5):
        ready.set_delay(f"idle{n}", 1.0)
    assert {"queued", "flying", "held"} <= set(ready._hosts)
    assert ready.in_flight("flying") == 1 and ready.delay_of("queued") == 3.0
    ready.finished("flying")
    await clock.advance(10.0)
    for n in range(5, 10):
        ready.set_delay(f"idle{n}", 1.0)
    assert "held" not in ready._hosts and "flying" not in ready._hosts
    assert "queued" in ready._hosts  # its request still waits
    assert ready.pop_ready() == "queued"


# -- RobotsCache ------------------------------------------------------------------------------


def robots_response(request: Request, body: str) -> Response:
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain"}))
    return Response(request.url, 200, headers, body.encode(), request)


async def test_robots_parsers_are_kept_for_recent_origins_and_fetched_again() -> None:
    async def fetch(request: Request) -> Response:
        return robots_response(request, "User-agent: *\nDisallow: /private\n")

    robots = RobotsCache(fetch, "bot", ManualClock(), max_origins=2)
    for host in ("a", "b", "c"):
        verdict = await robots.check(Request(f"http://{host}.test/private/x"))
        assert verdict.verdict is Verdict.DISALLOWED
    assert len(robots) == 2 and robots.evicted == 1 and robots.fetched == 3
    verdict = await robots.check(Request("http://a.test/private/x"))
    assert verdict.verdict is Verdict.DISALLOWED  # same answer, one more fetch
    assert robots.fetched == 4


async def test_robots_being_fetched_or_waiting_to_retry_are_not_evicted() -> None:
    clock = ManualClock()
    gate = asyncio.Event()

    async def fetch(request: Request) -> Response:
        host = request.yarl_url.host
        if host == "slow.test":
            await gate.wait()
        status = 503 if host == "down.test" else 200
        headers = CIMultiDictProxy(CIMultiDict())
        return Response(request.url, status, headers, b"", request)

    robots = RobotsCache(fetch, "bot", clock, retry_s=60.0, max_origins=1)
    slow = asyncio.create_task(robots.check(Request("http://slow.test/")))
    await asyncio.sleep(0)
    down = await robots.check(Request("http://down.test/"))
    assert down.verdict is Verdict.UNAVAILABLE
    for n in range(3):
        await robots.check(Request(f"http://ok{n}.test/"))
    again = await robots.check(Request("http://down.test/"))
    assert again.verdict is Verdict.UNAVAILABLE and robots.fetched == 5  # not fetched again
    gate.set()
    assert (await slow).verdict is Verdict.ALLOWED
    await clock.advance(60.0)
    for n in range(3, 6):
        await robots.check(Request(f"http://ok{n}.test/"))
    assert len(robots) == 1


# -- Stats ------------------------------------------------------------------------------------


def test_per_host_values_are_folded_into_count_and_max() -> None:
    stats = Stats()
    for n in range(1000):
        stats.set_value(f"robots/delay/h{n}.test", float(n % 7))
    stats.host_value("robots/delay", "big.test", 30.0)
    snapshot = stats.snapshot()
    assert not [key for key in snapshot if ".test" in key]
    assert snapshot["robots/delay/hosts"] == 1001
    assert snapshot["robots/delay/max"] == 30.0
    assert snapshot["robots/delay/max_host"] == "big.test"


# -- a whole crawl with small bounds ----------------------------------------------------------

HOSTS = 300
WINDOW = 3
BOUND = 16
ROBOTS = "User-agent: *\nDisallow: /private\nCrawl-delay: 0.001\n"


async def home(request: web.Request) -> web.Response:
    n = int(request.host.split(".", 1)[0][1:])
    port = request.url.port
    links = ["/b", "/private"]
    links += [f"http://h{m}.test:{port}/" for m in range(n + 1, min(n + 1 + WINDOW, HOSTS))]
    return web.Response(text=html_page(f"h{n}", links), content_type="text/html")


class Sampler(Spider):
    """Follows every link and records the per-host state sizes at each response."""

    name = "sampler"

    def __init__(self, start: str, throttles: list[AutoThrottle]) -> None:
        super().__init__()
        self.start_urls = [start]
        self.throttles = throttles
        self.crawler: Any = None
        self.pages: list[str] = []
        self.sizes: list[tuple[int, int, int]] = []

    def parse(self, response: Response) -> Any:
        self.pages.append(f"{response.request.yarl_url.host}{response.request.yarl_url.path}")
        crawl = self.crawler
        self.sizes.append(
            (len(crawl.robots), len(self.throttles[0]), len(crawl.frontier.readiness))
        )
        yield from response.follow_all()


async def crawl_hosts(server: SiteServer, monkeypatch: pytest.MonkeyPatch) -> Sampler:
    throttles: list[AutoThrottle] = []

    class Recorded(AutoThrottle):
        def __post_init__(self) -> None:
            super().__post_init__()
            throttles.append(self)

    spider = Sampler(server.url("h0.test"), throttles)
    with monkeypatch.context() as patch:
        patch.setattr(crawler.middlewares, "AutoThrottle", Recorded)
        run, _ = make_crawler(
            spider,
            RESOLVE=server.resolve_map(),
            ROBOTSTXT_OBEY=True,
            AUTOTHROTTLE=True,
            AUTOTHROTTLE_START_DELAY=0.0,
            CONCURRENCY=8,
        )
        spider.crawler = run
        async with asyncio.timeout(60):
            result = await run.run()
    assert result.finish_reason == "finished"
    return spider


async def test_a_300_host_crawl_with_small_bounds_stays_within_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pages: dict[str, dict[str, Any]] = {
        f"h{n}.test": {"/": home, "/b": html_page("b"), "/robots.txt": ROBOTS} for n in range(HOSTS)
    }
    async with SiteServer(pages) as server:
        unbounded = await crawl_hosts(server, monkeypatch)
        assert max(size[0] for size in unbounded.sizes) > 4 * BOUND  # the control grows
        monkeypatch.setattr(crawler.bounded, "DEFAULT_MAX_HOSTS", BOUND)
        bounded = await crawl_hosts(server, monkeypatch)
    expected = sorted(f"h{n}.test{path}" for n in range(HOSTS) for path in ("/", "/b"))
    assert sorted(unbounded.pages) == expected
    assert sorted(bounded.pages) == expected  # the same crawl: nothing lost, nothing extra
    assert not [seen for seen in server.requests if seen.path_qs.startswith("/private")]
    # Over the bound only by hosts that may not be evicted (fetching robots.txt, queued,
    # in flight, within their delay): at most CONCURRENCY plus the queue's few hosts.
    slack = 8 + 2 * WINDOW
    assert max(size[0] for size in bounded.sizes) <= BOUND + slack, bounded.sizes
    assert max(size[1] for size in bounded.sizes) <= BOUND + slack, bounded.sizes
    assert max(size[2] for size in bounded.sizes) <= BOUND + slack, bounded.sizes
