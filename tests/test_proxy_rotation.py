"""Proxy rotation: ProxyPool on a manual clock, and crawls through real tinyproxy instances.

tinyproxy resolves target hosts itself, so the sites listen on their own loopback
addresses (127.0.0.2, 127.0.0.3) and those IPs are the "domains". One proxy is
made to answer 403 for a domain with a tinyproxy filter file; proxies are told
apart at the server by a header each adds (``AddHeader X-Proxy-Id``).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from peers import crawl
from politeness_peers import (
    Recorder,
    Rendezvous,
    TimedSiteServer,
    TinyproxyPeer,
    configured_tinyproxy,
    denying_filter,
    free_port,
    timed_site,
)

from crawler import ProxyError, SettingsError
from crawler.downloader.rotation import BanRules, ProxyPool, load_proxy_list
from crawler.testing import ManualClock, html_page

A = "127.0.0.2"
B = "127.0.0.3"


def pages_of(count: int) -> dict[str, Any]:
    return {f"/{n}": html_page(str(n)) for n in range(count)}


def urls(server: TimedSiteServer, host: str, count: int) -> list[str]:
    return [server.url(host, f"/{n}") for n in range(count)]


@asynccontextmanager
async def proxies(tmp_path: Path, *configs: list[str]) -> AsyncIterator[list[TinyproxyPeer]]:
    """One tinyproxy per config; each adds ``X-Proxy-Id: p<n>`` (n from 0) to requests."""
    async with AsyncExitStack() as stack:
        running = []
        for n, extra in enumerate(configs):
            directory = tmp_path / f"p{n}"
            lines = [*extra, f'AddHeader "X-Proxy-Id" "p{n}"']
            running.append(await stack.enter_async_context(configured_tinyproxy(directory, lines)))
        yield running


def proxy_ids(server: TimedSiteServer, host: str) -> Counter[str]:
    return Counter(r.headers.get("X-Proxy-Id", "direct") for r in server.requests if r.host == host)


# -- crawls through real proxies ---------------------------------------------------------------


async def test_a_proxy_refused_by_a_domain_is_benched_and_the_others_finish_the_crawl(
    tmp_path: Path,
) -> None:
    async with (
        timed_site({A: pages_of(10)}, host=A) as site_a,
        timed_site({B: pages_of(4)}, host=B) as site_b,
        proxies(tmp_path, denying_filter(tmp_path / "filter", A), [], []) as (bad, one, two),
    ):
        spider = Recorder([*urls(site_a, A, 10), *urls(site_b, B, 4)])
        run = await crawl(spider, PROXIES=[bad.url, one.url, two.url], PROXY_BAN_COOLDOWN=60)
    assert sorted(site_a.paths_seen(A)) == sorted(f"/{n}" for n in range(10))  # each once
    assert sorted(site_b.paths_seen(B)) == sorted(f"/{n}" for n in range(4))
    assert len(run.items) == 14
    assert spider.failures == []
    assert "p0" not in proxy_ids(site_a, A)  # the filtering proxy never reached the site
    assert run.stats["proxies/bans/http_403"] >= 1
    snapshot = run.stats["proxies"]
    assert snapshot[bad.url]["bans"] == 1  # one ban, however many requests were in flight
    assert snapshot[bad.url]["state"] == "cooling"
    assert snapshot[bad.url]["cooling_for"] == [A]  # benched for that domain only
    assert proxy_ids(site_b, B)["p0"] >= 1  # still used for the other domain
    for good in (one, two):
        assert snapshot[good.url]["bans"] == 0
        assert snapshot[good.url]["state"] == "active"
    assert sum(s["successes"] for s in snapshot.values()) == 14
    assert any("filtered" in line.lower() for line in bad.lines)


async def test_per_domain_limits_hold_across_several_proxies(tmp_path: Path) -> None:
    meet_a, meet_b = Rendezvous(2), Rendezvous(2)  # each host sees 2 requests at once
    async with (
        timed_site({A: {f"/{n}": meet_a.page(html_page(str(n))) for n in range(12)}}, A) as site_a,
        timed_site({B: {f"/{n}": meet_b.page(html_page(str(n))) for n in range(12)}}, B) as site_b,
        proxies(tmp_path, [], [], []) as running,
    ):
        spider = Recorder([*urls(site_a, A, 12), *urls(site_b, B, 12)])
        run = await crawl(
            spider, PROXIES=[p.url for p in running], CONCURRENCY=16, CONCURRENCY_PER_HOST=2
        )
    assert len(run.items) == 24
    assert site_a.max_concurrency[A] == 2
    assert site_b.max_concurrency[B] == 2
    assert set(proxy_ids(site_a, A)) == {"p0", "p1", "p2"}  # round robin used them all
    assert all(s["requests"] == 8 for s in run.stats["proxies"].values())


async def test_a_captcha_body_bans_the_proxy(tmp_path: Path) -> None:
    async def page(request: web.Request) -> web.Response:
        if request.headers.get("X-Proxy-Id") == "p1":
            return web.Response(text="<div class=captcha>prove you are human</div>")
        return web.Response(text=html_page(request.path), content_type="text/html")

    async with (
        timed_site({A: {f"/{n}": page for n in range(6)}}, A) as site,
        proxies(tmp_path, [], [], []) as running,
    ):
        spider = Recorder(urls(site, A, 6))
        run = await crawl(
            spider,
            PROXIES=[p.url for p in running],
            BAN_BODY_PATTERNS=[r"class=captcha"],
            CONCURRENCY_PER_HOST=1,
        )
    assert len(run.items) == 6
    assert not any(b"captcha" in r.body for r in spider.responses)
    snapshot = run.stats["proxies"]
    assert snapshot[running[1].url]["bans"] == 1
    assert snapshot[running[1].url]["state"] == "cooling"
    assert snapshot[running[1].url]["successes"] == 0
    assert run.stats["proxies/bans"] == 1


async def test_an_unreachable_proxy_is_benched(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with timed_site({A: pages_of(4)}, A) as site, proxies(tmp_path, []) as (alive,):
        spider = Recorder(urls(site, A, 4))
        run = await crawl(spider, PROXIES=[dead, alive.url])
    assert len(run.items) == 4
    snapshot = run.stats["proxies"]
    assert snapshot[dead]["bans"] == 1 and snapshot[dead]["state"] == "cooling"
    assert run.stats["proxies/bans/proxy"] >= 1
    assert "failures/proxy" not in run.stats


async def test_a_domain_waits_while_every_proxy_cools_then_fails_when_all_are_retired(
    tmp_path: Path,
) -> None:
    async with (
        timed_site({A: pages_of(1)}, A) as site,
        proxies(tmp_path, denying_filter(tmp_path / "filter", A)) as (bad,),
    ):
        spider = Recorder(urls(site, A, 1))
        run = await crawl(spider, PROXIES=[bad.url], PROXY_BAN_COOLDOWN=0.1, PROXY_MAX_BANS=2)
    assert site.requests == []
    [failure] = spider.failures
    assert isinstance(failure, ProxyError)
    assert run.stats["proxies/waits"] >= 1  # the one proxy was cooling: wait, not fail
    assert run.stats["failures/proxy"] == 1
    assert run.stats["proxies"][bad.url]["state"] == "retired"
    assert run.stats["proxies"][bad.url]["bans"] == 2


async def test_sticky_keeps_a_domain_on_one_proxy_and_moves_it_after_a_ban(
    tmp_path: Path,
) -> None:
    async with (
        timed_site({A: pages_of(6)}, A) as site_a,
        timed_site({B: pages_of(6)}, B) as site_b,
        proxies(tmp_path, denying_filter(tmp_path / "filter", A), [], []) as running,
    ):
        spider = Recorder([*urls(site_a, A, 6), *urls(site_b, B, 6)])
        run = await crawl(
            spider,
            PROXIES=[p.url for p in running],
            PROXY_ROTATION="sticky",
            CONCURRENCY_PER_HOST=1,
        )
    assert len(run.items) == 12
    [(via_a, count_a)] = proxy_ids(site_a, A).items()  # one proxy for the whole domain ...
    assert via_a != "p0" and count_a == 6  # ... and never the one that is refused there
    [(_, count_b)] = proxy_ids(site_b, B).items()
    assert count_b == 6


async def test_proxies_from_a_file(tmp_path: Path) -> None:
    async with timed_site({A: pages_of(2)}, A) as site, proxies(tmp_path, [], []) as running:
        listing = tmp_path / "proxies.txt"
        listing.write_text(f"# our pool\n{running[0].url}\n\n{running[1].url}  # second\n")
        run = await crawl(Recorder(urls(site, A, 2)), PROXY_FILE=str(listing))
    assert proxy_ids(site, A) == Counter({"p0": 1, "p1": 1})
    assert set(run.stats["proxies"]) == {running[0].url, running[1].url}


async def test_proxies_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with timed_site({A: pages_of(2)}, A) as site, proxies(tmp_path, [], []) as running:
        monkeypatch.setenv("PROXIES", f"{running[0].url}, {running[1].url}")
        run = await crawl(Recorder(urls(site, A, 2)))
    assert proxy_ids(site, A) == Counter({"p0": 1, "p1": 1})
    assert len(run.stats["proxies"]) == 2


# -- ProxyPool on a manual clock --------------------------------------------------------------

P1, P2, P3 = "http://p1.test:1", "http://p2.test:2", "http://p3.test:3"


def pool(strategy: str = "round_robin", **kwargs: Any) -> tuple[ProxyPool, ManualClock]:
    clock = ManualClock()
    return ProxyPool([P1, P2, P3], clock, strategy=strategy, **kwargs), clock


def test_round_robin_cycles_and_skips_cooling_proxies() -> None:
    proxies_, _ = pool()
    assert [proxies_.choose("a.test")[0] for _ in range(4)] == [P1, P2, P3, P1]
    proxies_.ban(P3, "a.test")
    assert [proxies_.choose("a.test")[0] for _ in range(4)] == [P2, P1, P2, P1]
    assert [proxies_.choose("b.test")[0] for _ in range(3)] == [P2, P3, P1]  # not benched here


def test_random_chooses_only_ready_proxies() -> None:
    proxies_ = ProxyPool([P1, P2, P3], ManualClock(), strategy="random", rng=random.Random(3))
    assert {proxies_.choose("a.test")[0] for _ in range(60)} == {P1, P2, P3}
    proxies_.ban(P2, "a.test")
    assert {proxies_.choose("a.test")[0] for _ in range(60)} == {P1, P3}


def test_sticky_keeps_one_proxy_per_domain_until_it_is_banned() -> None:
    proxies_, _ = pool("sticky", rng=random.Random(1))
    first = {proxies_.choose("a.test")[0] for _ in range(10)}
    assert len(first) == 1
    [stuck] = first
    assert stuck is not None
    assert proxies_.ban(P1 if stuck != P1 else P2, "a.test") is False  # not its proxy
    assert proxies_.choose("a.test")[0] == stuck
    assert proxies_.ban(stuck, "a.test") is True  # the domain needs a new identity
    after = {proxies_.choose("a.test")[0] for _ in range(10)}
    assert len(after) == 1 and stuck not in after


async def test_cooldown_doubles_per_ban_until_a_success_and_is_capped() -> None:
    proxies_ = ProxyPool(
        [P1], clock := ManualClock(), cooldown_s=10, max_cooldown_s=35, max_bans=10
    )
    waits = []
    for _ in range(4):
        proxies_.ban(P1, "a.test")
        proxy, wait = proxies_.choose("a.test")
        assert proxy is None
        waits.append(wait)
        await clock.advance(wait)
        assert proxies_.choose("a.test")[0] == P1
    assert waits == [10, 20, 35, 35]
    proxies_.success(P1, "a.test")  # a success starts the doubling over
    proxies_.ban(P1, "a.test")
    assert proxies_.choose("a.test") == (None, 10)


async def test_responses_in_flight_during_a_ban_are_the_same_ban() -> None:
    proxies_ = ProxyPool([P1, P2], clock := ManualClock(), cooldown_s=10, max_bans=2)
    proxies_.ban(P1, "a.test")
    proxies_.ban(P1, "a.test")  # a second 403 from a request sent before the first came back
    proxies_.ban(P1, "a.test")
    snap = proxies_.snapshot()[P1]
    assert snap["bans"] == 1 and snap["state"] == "cooling"
    await clock.advance(10)
    proxies_.ban(P1, "a.test")  # a new ban once it is back
    assert proxies_.snapshot()[P1]["bans"] == 2


async def test_a_proxy_is_retired_after_max_bans_across_domains() -> None:
    proxies_, clock = pool(max_bans=3, cooldown_s=1)
    for domain in ("a.test", "b.test", "c.test"):
        proxies_.ban(P1, domain)
    await clock.advance(100)
    assert proxies_.snapshot()[P1]["state"] == "retired"
    assert P1 not in {proxies_.choose("d.test")[0] for _ in range(6)}


async def test_choose_says_how_long_to_wait_when_all_are_cooling() -> None:
    proxies_, clock = pool(cooldown_s=30)
    proxies_.ban(P1, "a.test")
    await clock.advance(5)
    proxies_.ban(P2, "a.test")
    proxies_.ban(P3, "a.test")
    assert proxies_.choose("a.test") == (None, 25)  # P1 is back first
    assert proxies_.choose("b.test")[0] is not None
    await clock.advance(25)
    assert proxies_.choose("a.test") == (P1, 0.0)


def test_choose_says_minus_one_when_every_proxy_is_retired() -> None:
    proxies_, _ = pool(max_bans=1)
    for proxy in (P1, P2, P3):
        proxies_.ban(proxy, "a.test")
    assert proxies_.choose("other.test") == (None, -1.0)


async def test_snapshot_counts_states_and_redacts_credentials() -> None:
    clock = ManualClock()
    secret = "http://alice:s3cret@gw.test:8000"
    session = "http://bob:hunter2@gw.test:8000"  # same gateway, other credentials
    proxies_ = ProxyPool([secret, session, P3], clock, cooldown_s=10, max_bans=1)
    assert proxies_.choose("a.test")[0] == secret
    proxies_.success(secret, "a.test")
    proxies_.ban(session, "a.test")
    snapshot = proxies_.snapshot()
    assert "s3cret" not in repr(snapshot) and "hunter2" not in repr(snapshot)
    assert "alice" not in repr(snapshot)
    assert list(snapshot) == ["http://***@gw.test:8000", "http://***@gw.test:8000#2", P3]
    assert snapshot["http://***@gw.test:8000"] == {
        "requests": 1,
        "successes": 1,
        "bans": 0,
        "state": "active",
        "cooling_for": [],
    }
    assert snapshot["http://***@gw.test:8000#2"]["state"] == "retired"
    assert snapshot["http://***@gw.test:8000#2"]["cooling_for"] == ["a.test"]


def test_an_unknown_strategy_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="PROXY_ROTATION='fastest'"):
        ProxyPool([P1], ManualClock(), strategy="fastest")


def test_ban_rules_statuses_and_body_patterns() -> None:
    rules = BanRules.build([403], [r"captcha", r"(?i)access denied"], network=True)
    assert rules.is_ban(403, b"")
    assert not rules.is_ban(429, b"")
    assert rules.is_ban(200, b"<div id=captcha>")
    assert rules.is_ban(200, b"ACCESS DENIED")
    assert not rules.is_ban(200, b"<html>fine</html>")
    with pytest.raises(SettingsError, match="BAN_BODY_PATTERNS"):
        BanRules.build([], ["(unclosed"], network=True)


def test_load_proxy_list_precedence_file_format_and_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = tmp_path / "proxies.txt"
    listing.write_text(f"# comment\n{P1}\n  {P2}  # trailing comment\n\n")
    monkeypatch.setenv("PROXIES", f"{P3},{P1} {P2}")
    assert load_proxy_list([P3], str(listing)) == [P3]  # the setting wins
    assert load_proxy_list([], str(listing)) == [P1, P2]  # then the file
    assert load_proxy_list([], "") == [P3, P1, P2]  # then the environment
    monkeypatch.delenv("PROXIES")
    assert load_proxy_list([], "") == []
    with pytest.raises(SettingsError, match="PROXY_FILE"):
        load_proxy_list([], str(tmp_path / "missing.txt"))
    with pytest.raises(SettingsError, match="PROXIES entry"):
        load_proxy_list(["ftp://p.test:1"])
    monkeypatch.setenv("PROXIES", "http://user:pw@")
    with pytest.raises(SettingsError) as error:
        load_proxy_list([])
    assert "pw" not in str(error.value)


async def test_robots_txt_goes_through_the_proxy_pool(tmp_path: Path) -> None:
    pages = {**pages_of(1), "/robots.txt": "User-agent: *\nDisallow:\n"}
    async with timed_site({A: pages}, A) as site, proxies(tmp_path, []) as (proxy,):
        await crawl(Recorder(urls(site, A, 1)), PROXIES=[proxy.url], ROBOTSTXT_OBEY=True)
    assert proxy_ids(site, A) == Counter({"p0": 1})
    [robots] = site.robots_requests
    assert robots.headers.get("X-Proxy-Id") == "p0"


async def test_direct_fetches_wait_for_a_resting_proxy_and_never_go_around_the_pool() -> None:
    from typing import cast

    from crawler.direct import direct_fetcher
    from crawler.downloader import Downloader
    from crawler.errors import ProxyError
    from crawler.request import Request
    from crawler.testing import ManualClock

    clock = ManualClock(start=0.0)
    pool = ProxyPool(["http://p1.test:3128"], clock, cooldown_s=30.0, max_bans=2)
    sent: list[str | None] = []

    class Recording:
        async def fetch(self, request: Request, proxy: str | None = None) -> str:
            sent.append(proxy)
            return "response"

    fetch = direct_fetcher(cast(Downloader, Recording()), pool, clock)
    pool.ban("http://p1.test:3128", "shop.test")
    waiting = asyncio.create_task(fetch(Request("http://shop.test/robots.txt")))
    await clock.advance(29)
    assert not waiting.done() and sent == []  # resting: neither sent nor sent without it
    await clock.advance(1)
    assert await waiting == "response" and sent == ["http://p1.test:3128"]
    pool.ban("http://p1.test:3128", "shop.test")  # the second ban retires it
    with pytest.raises(ProxyError, match="every proxy is retired"):
        await fetch(Request("http://shop.test/robots.txt"))
