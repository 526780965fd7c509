"""robots.txt against real local servers: rules, delays, user agents, failures.

Delays are asserted from the server's own arrival times, as lower bounds only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from peers import crawl
from politeness_peers import TOLERANCE_S, Recorder, sequence, status, timed_site

from crawler import Request, Response
from crawler.errors import NetworkError
from crawler.hostboard import HostBoard
from crawler.robots import NETWORK_EXTRA_TRIES, RobotsCache, Verdict
from crawler.testing import ManualClock, html_page

ORIGIN = "http://site.test:{port}"

RULES = """\
User-agent: *
Disallow: /shop/
Allow: /shop/public
Disallow: /*.pdf$
Disallow: /*?sort=
Disallow: /private
Allow: /private/open
Crawl-delay: 0.2
"""

LINKS = [
    "/shop/cart",  # disallowed
    "/shop/public/item",  # Allow is longer, so it wins
    "/doc.pdf",  # wildcard + end anchor: disallowed
    "/doc.pdf?page=2",  # does not end in .pdf: allowed
    "/list?sort=asc",  # wildcard: disallowed
    "/list?page=2",
    "/private/x",  # disallowed
    "/private/open/y",  # Allow wins
]


def site_pages(robots: Any) -> dict[str, dict[str, Any]]:
    pages: dict[str, Any] = {"/": html_page("home", LINKS), "/robots.txt": robots}
    for link in LINKS:
        pages[link.split("?")[0]] = html_page(link)
    return {"site.test": pages}


async def test_wildcards_allow_precedence_and_crawl_delay_are_obeyed() -> None:
    async with timed_site(site_pages(RULES)) as server:
        spider = Recorder([server.url("site.test")], follow=True)
        run = await crawl(
            spider, RESOLVE=server.resolve_map(), ROBOTSTXT_OBEY=True, FOLLOW_BINARY_LINKS=True
        )
    assert sorted(server.paths_seen("site.test")) == sorted(
        ["/", "/shop/public/item", "/doc.pdf?page=2", "/list?page=2", "/private/open/y"]
    )
    assert run.stats["robots/disallowed"] == 4
    assert len(server.robots_requests) == 1
    assert run.stats["robots/delay/max"] == 0.2
    gaps = server.gaps("site.test")
    assert len(gaps) == 4
    assert min(gaps) >= 0.2 - TOLERANCE_S, gaps


FIRST_GAP_REASON = (
    "worker: the request that fetched robots.txt is already leased and the host's next start"
    " time was set with the old (zero) delay, so the next request follows at once. Fix in"
    " RequestProcessor._robots_allow: after _apply_robots_delay(host, d) also"
    " `await self.frontier.hold_host(host, d)`"
)
WAITERS_REASON = (
    "worker: requests leased while robots.txt was being fetched all go out together. Fix in"
    " RequestProcessor._robots_allow: `if verdict.waited and verdict.delay_s and kind is"
    " Verdict.ALLOWED: await self.frontier.retry(lease, 0.0); return False` so the frontier"
    " spaces them (RobotsVerdict.waited marks them)"
)


async def test_request_rate_is_honoured() -> None:
    robots = "User-agent: *\nRequest-rate: 5/1s\n"  # one request per 0.2 s
    pages = {"/": html_page("home", ["/a", "/b", "/c"]), "/robots.txt": robots}
    pages.update({p: html_page(p) for p in ("/a", "/b", "/c")})
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")], follow=True)
        run = await crawl(spider, RESOLVE=server.resolve_map(), ROBOTSTXT_OBEY=True)
    assert len(spider.responses) == 4
    assert run.stats["robots/delay/max"] == pytest.approx(0.2)
    gaps = server.gaps("site.test")
    # the first gap (/ -> /a) is test_the_first_request_after_robots_txt_is_spaced_too
    assert min(gaps[1:]) >= 0.2 - TOLERANCE_S, gaps


async def test_the_first_request_after_robots_txt_is_spaced_too() -> None:
    robots = "User-agent: *\nCrawl-delay: 0.2\n"
    pages = {"/": html_page("home", ["/a", "/b"]), "/robots.txt": robots}
    pages.update({p: html_page(p) for p in ("/a", "/b")})
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")], follow=True)
        await crawl(spider, RESOLVE=server.resolve_map(), ROBOTSTXT_OBEY=True)
    assert len(spider.responses) == 3
    assert min(server.gaps("site.test")) >= 0.2 - TOLERANCE_S, server.gaps("site.test")


async def test_crawl_delay_spaces_requests_that_waited_for_robots_txt_together() -> None:
    """Several start requests wait for the one robots.txt fetch; they must still be spaced."""
    robots = "User-agent: *\nCrawl-delay: 0.2\n"
    pages = {"/robots.txt": robots, **{f"/{n}": html_page(str(n)) for n in range(4)}}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test", f"/{n}") for n in range(4)])
        await crawl(spider, RESOLVE=server.resolve_map(), ROBOTSTXT_OBEY=True)
    assert len(spider.responses) == 4
    assert min(server.gaps("site.test")) >= 0.2 - TOLERANCE_S, server.gaps("site.test")


async def test_the_larger_of_crawl_delay_and_request_rate_wins_capped_by_max_delay() -> None:
    robots = "User-agent: *\nCrawl-delay: 30\nRequest-rate: 1/10s\n"
    pages = {"/": html_page("home"), "/robots.txt": robots}
    async with timed_site({"site.test": pages}) as server:
        run = await crawl(
            Recorder([server.url("site.test")]),
            RESOLVE=server.resolve_map(),
            ROBOTSTXT_OBEY=True,
            ROBOTSTXT_MAX_DELAY=0.25,
        )
    assert run.stats["robots/delay/max"] == 0.25


@pytest.mark.parametrize(
    ("user_agent", "fetched"),
    [
        ("crawler/0.1", ["/", "/for-others"]),  # our own group: only /for-us is disallowed
        ("Mozilla/5.0 (compatible; crawler/0.1)", ["/", "/for-others"]),
        ("otherbot/2.0", ["/", "/for-us"]),  # falls back to the * group
    ],
)
async def test_the_group_for_our_user_agent_token_beats_the_star_group(
    user_agent: str, fetched: list[str]
) -> None:
    robots = "User-agent: *\nDisallow: /for-others\n\nUser-agent: crawler\nDisallow: /for-us\n"
    pages = {
        "/": html_page("home", ["/for-us", "/for-others"]),
        "/for-us": html_page("us"),
        "/for-others": html_page("others"),
        "/robots.txt": robots,
    }
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")], follow=True)
        run = await crawl(
            spider, RESOLVE=server.resolve_map(), ROBOTSTXT_OBEY=True, USER_AGENT=user_agent
        )
    assert sorted(server.paths_seen("site.test")) == sorted(fetched)
    assert run.stats["robots/disallowed"] == 1
    assert server.robots_requests[0].headers["User-Agent"] == user_agent


@pytest.mark.parametrize("code", [401, 403, 404, 410])
async def test_robots_txt_4xx_allows_everything(code: int) -> None:
    pages = {"/": html_page("home", ["/a"]), "/a": html_page("a"), "/robots.txt": status(code)}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")], follow=True)
        run = await crawl(spider, RESOLVE=server.resolve_map(), ROBOTSTXT_OBEY=True)
    assert spider.paths == ["/", "/a"]
    assert len(server.robots_requests) == 1
    assert "robots/disallowed" not in run.stats


async def test_robots_txt_5xx_holds_the_host_and_is_retried_later() -> None:
    robots = sequence(status(503), "User-agent: *\nDisallow: /secret\n")
    pages = {
        "/": html_page("home", ["/secret", "/a"]),
        "/a": html_page("a"),
        "/secret": html_page("secret"),
        "/robots.txt": robots,
    }
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")], follow=True)
        run = await crawl(
            spider, RESOLVE=server.resolve_map(), ROBOTSTXT_OBEY=True, ROBOTSTXT_RETRY_S=0.3
        )
    assert spider.paths == ["/", "/a"]
    first, second = server.times("site.test", robots=True)
    assert second - first >= 0.3 - TOLERANCE_S
    assert min(server.times("site.test")) > second  # no page before robots.txt was read
    assert run.stats["robots/waiting"] >= 1
    assert run.stats["robots/disallowed"] == 1


async def test_robots_txt_failing_every_time_drops_the_hosts_requests() -> None:
    pages = {"/": html_page("home"), "/robots.txt": status(500)}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test"), server.url("site.test", "/other")])
        run = await crawl(
            spider,
            RESOLVE=server.resolve_map(),
            ROBOTSTXT_OBEY=True,
            ROBOTSTXT_RETRY_S=0.1,
            ROBOTSTXT_MAX_FAILURES=2,
        )
    assert len(server.robots_requests) == 2
    assert server.requests == []
    assert run.stats["failures/robots_unavailable"] == 2
    times = server.times("site.test", robots=True)
    assert times[1] - times[0] >= 0.1 - TOLERANCE_S


async def test_unreachable_robots_txt_counts_as_a_failure(refused_port: int) -> None:
    spider = Recorder([f"http://127.0.0.1:{refused_port}/"])
    run = await crawl(spider, ROBOTSTXT_OBEY=True, ROBOTSTXT_RETRY_S=0.05, ROBOTSTXT_MAX_FAILURES=2)
    assert run.stats["failures/robots_unavailable"] == 1
    # a network error: the configured tries and NETWORK_EXTRA_TRIES more, retried sooner
    assert run.crawler.robots is not None
    assert run.crawler.robots.fetched == 2 + NETWORK_EXTRA_TRIES
    assert spider.responses == []


async def test_robots_txt_is_fetched_once_per_origin() -> None:
    robots = "User-agent: *\nDisallow: /no\n"
    pages = {
        "/": html_page("home", ["/a", "/b", "/no", "http://other.test:{port}/"]),
        "/a": html_page("a"),
        "/b": html_page("b"),
        "/robots.txt": robots,
    }
    other = {"/": html_page("other", ["/no"]), "/no": html_page("other no")}
    async with timed_site({"site.test": pages, "other.test": other}) as server:
        spider = Recorder([server.url("site.test")], follow=True)
        await crawl(spider, RESOLVE=server.resolve_map(), ROBOTSTXT_OBEY=True, CONCURRENCY=8)
    assert sorted(r.host for r in server.robots_requests) == ["other.test", "site.test"]
    assert "/no" in server.paths_seen("other.test")  # other.test has no robots.txt (404)
    assert "/no" not in server.paths_seen("site.test")


# -- RobotsCache on its own, with a manual clock ---------------------------------------------


def _response(request: Request, code: int, text: str = "") -> Response:
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain"}))
    return Response(request.url, code, headers, text.encode(), request)


class FakeFetch:
    """Answers robots.txt requests from a list of ``(status, text)`` or exceptions."""

    def __init__(self, *answers: tuple[int, str] | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[Request] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, request: Request) -> Response:
        self.calls.append(request)
        await self.gate.wait()
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return _response(request, *answer)


async def test_concurrent_checks_share_one_fetch() -> None:
    fetch = FakeFetch((200, "User-agent: *\nDisallow: /no\n"))
    fetch.gate.clear()
    cache = RobotsCache(fetch, "bot", ManualClock())
    checks = [
        asyncio.create_task(cache.check(Request(f"http://h.test/{p}"))) for p in ("a", "no", "b")
    ]
    for _ in range(3):
        await asyncio.sleep(0)
    fetch.gate.set()
    verdicts = await asyncio.gather(*checks)
    assert [v.verdict for v in verdicts] == [Verdict.ALLOWED, Verdict.DISALLOWED, Verdict.ALLOWED]
    assert [v.waited for v in verdicts] == [False, True, True]  # leased before rules were known
    assert not (await cache.check(Request("http://h.test/c"))).waited
    assert len(fetch.calls) == 1
    assert fetch.calls[0].url == "http://h.test/robots.txt"


async def test_failures_wait_retry_s_then_give_up_after_max_failures() -> None:
    clock = ManualClock()
    fetch = FakeFetch((503, ""), NetworkError("refused"), (500, ""))
    cache = RobotsCache(fetch, "bot", clock, retry_s=10.0, max_failures=3)
    request = Request("http://h.test/page")
    first = await cache.check(request)
    assert first.verdict is Verdict.UNAVAILABLE and first.retry_in_s == 10.0
    await clock.advance(4.0)
    waiting = await cache.check(request)
    assert waiting.verdict is Verdict.UNAVAILABLE and waiting.retry_in_s == pytest.approx(6.0)
    assert len(fetch.calls) == 1  # not re-fetched before retry_s has passed
    await clock.advance(6.0)
    assert (await cache.check(request)).verdict is Verdict.UNAVAILABLE  # unreachable
    await clock.advance(10.0)
    assert (await cache.check(request)).verdict is Verdict.GAVE_UP  # third failure
    await clock.advance(100.0)
    assert (await cache.check(request)).verdict is Verdict.GAVE_UP
    assert len(fetch.calls) == 3


async def test_network_errors_are_retried_within_seconds_and_shown_on_the_host_board() -> None:
    clock = ManualClock(start=0.0)
    board = HostBoard(clock)
    fetch = FakeFetch(NetworkError("connection refused"))
    cache = RobotsCache(fetch, "bot", clock, retry_s=60.0, max_failures=3, hosts=board)
    request = Request("http://gone.test/page")
    first = await cache.check(request)
    assert first.verdict is Verdict.UNAVAILABLE and first.retry_in_s == 1.0
    [wait] = board.waits()
    assert wait.host == "gone.test" and wait.until == 1.0
    assert wait.reason == "robots.txt unavailable (connection refused), retrying"
    waits = [1.0]
    while (verdict := await cache.check(request)).verdict is not Verdict.GAVE_UP:
        if verdict.retry_in_s == waits[-1]:  # asked again before the retry time: no fetch
            await clock.advance(verdict.retry_in_s)
            continue
        waits.append(verdict.retry_in_s)
    # 3 tries + 3 more for network errors, 1 s then doubling: given up 31 s after the first
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0] and clock.now() == 31.0
    assert len(fetch.calls) == 6
    assert [w.reason for w in board.waits()] == [
        "robots.txt unavailable (connection refused): gave up"
    ]


async def test_a_network_blip_does_not_drop_the_host() -> None:
    clock = ManualClock(start=0.0)
    fetch = FakeFetch(
        NetworkError("reset"), NetworkError("reset"), NetworkError("reset"), (200, "")
    )
    cache = RobotsCache(fetch, "bot", clock, retry_s=60.0, max_failures=3)
    request = Request("http://flaky.test/page")
    for delay in (1.0, 2.0, 4.0):
        assert (await cache.check(request)).verdict is Verdict.UNAVAILABLE
        await clock.advance(delay)
    assert (await cache.check(request)).verdict is Verdict.ALLOWED


async def test_a_failure_then_success_obeys_the_rules() -> None:
    clock = ManualClock()
    fetch = FakeFetch((502, ""), (200, "User-agent: *\nDisallow: /no\nCrawl-delay: 2\n"))
    cache = RobotsCache(fetch, "bot", clock, retry_s=5.0)
    assert (await cache.check(Request("http://h.test/no"))).verdict is Verdict.UNAVAILABLE
    await clock.advance(5.0)
    verdict = await cache.check(Request("http://h.test/no"))
    assert verdict.verdict is Verdict.DISALLOWED and verdict.delay_s == 2.0
    assert (await cache.check(Request("http://h.test/yes"))).verdict is Verdict.ALLOWED


async def test_origins_are_separate_by_scheme_host_and_port() -> None:
    fetch = FakeFetch((200, "User-agent: *\nDisallow: /\n"))
    cache = RobotsCache(fetch, "bot", ManualClock())
    for url in ("http://h.test/", "http://h.test:8080/", "https://h.test/", "http://g.test/x"):
        assert (await cache.check(Request(url))).verdict is Verdict.DISALLOWED
    assert len(fetch.calls) == 4


async def test_sitemaps_from_the_cached_robots_txt() -> None:
    fetch = FakeFetch((200, "Sitemap: http://h.test/a.xml\nSitemap: http://h.test/b.xml.gz\n"))
    cache = RobotsCache(fetch, "bot", ManualClock())
    assert cache.sitemaps("http://h.test/") == []
    await cache.check(Request("http://h.test/"))
    assert cache.sitemaps("http://h.test/x") == ["http://h.test/a.xml", "http://h.test/b.xml.gz"]


async def test_a_robots_warning_names_the_url(caplog: pytest.LogCaptureFixture) -> None:
    fetch = FakeFetch((503, ""))
    cache = RobotsCache(fetch, "bot", ManualClock(), retry_s=7.0)
    with caplog.at_level(logging.WARNING, logger="crawler.robots"):
        await cache.check(Request("http://h.test/"))
    assert "http://h.test/robots.txt" in caplog.text
    assert "HTTP 503" in caplog.text
