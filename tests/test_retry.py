"""Retries against real local servers, plus RetryPolicy on its own.

Waits are asserted from the server's own arrival times, as lower bounds only.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest
from peers import crawl
from politeness_peers import TOLERANCE_S, Recorder, sequence, status, timed_site

from crawler import Request
from crawler.errors import (
    BadResponse,
    HttpError,
    NetworkError,
    ProxyError,
    RequestTimeout,
    TlsError,
)
from crawler.retry import RetryPolicy, parse_retry_after
from crawler.testing import html_page

FAST = {"RETRY_BACKOFF_BASE": 0.01, "RETRY_BACKOFF_MAX": 0.05}


async def test_503_twice_then_200_yields_the_page_after_two_retries() -> None:
    pages = {"/": sequence(status(503), status(503), html_page("finally"))}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")])
        run = await crawl(spider, RESOLVE=server.resolve_map(), RETRY_TIMES=2, **FAST)
    assert [r.status for r in spider.responses] == [200]
    assert run.items == [{"url": server.url("site.test"), "status": 200}]
    assert spider.responses[0].meta["retry_times"] == 2
    assert server.paths_seen("site.test") == ["/", "/", "/"]
    assert run.stats["retries"] == 2
    assert run.stats["retries/http_503"] == 2
    assert run.stats["status/503"] == 2
    assert "failures/http_status" not in run.stats


async def test_429_retry_after_seconds_is_waited_out() -> None:
    pages = {"/": sequence(status(429, headers={"Retry-After": "2"}), html_page("ok"))}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")])
        run = await crawl(spider, RESOLVE=server.resolve_map(), RETRY_TIMES=1, **FAST)
    assert [r.status for r in spider.responses] == [200]
    [gap] = server.gaps("site.test")
    assert gap >= 2.0 - TOLERANCE_S
    assert run.stats["retries/http_429"] == 1


async def test_retry_after_holds_the_whole_host() -> None:
    """Retry-After on one page holds the host: no other page of it starts meanwhile."""
    pages = {
        "/busy": sequence(status(503, headers={"Retry-After": "1"}), html_page("busy")),
        "/next": html_page("next"),
    }
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test", "/busy"), server.url("site.test", "/next")])
        await crawl(
            spider, RESOLVE=server.resolve_map(), RETRY_TIMES=1, CONCURRENCY_PER_HOST=1, **FAST
        )
    assert sorted(spider.paths) == ["/busy", "/next"]
    first, *later = server.times("site.test")
    assert min(later) - first >= 1.0 - TOLERANCE_S


async def test_retry_after_is_capped_by_retry_after_max() -> None:
    pages = {"/": sequence(status(503, headers={"Retry-After": "3600"}), html_page("ok"))}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")])
        await crawl(
            spider, RESOLVE=server.resolve_map(), RETRY_TIMES=1, RETRY_AFTER_MAX=0.3, **FAST
        )
    assert [r.status for r in spider.responses] == [200]
    [gap] = server.gaps("site.test")
    assert gap >= 0.3 - TOLERANCE_S


async def test_retry_after_as_an_http_date_is_waited_out() -> None:
    # An HTTP date has one-second resolution: 2 s ahead means at least 1 s from now.
    async def busy(request: Any) -> Any:
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        return await status(503, headers={"Retry-After": when})(request)

    pages = {"/": sequence(busy, html_page("ok"))}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")])
        await crawl(spider, RESOLVE=server.resolve_map(), RETRY_TIMES=1, **FAST)
    assert [r.status for r in spider.responses] == [200]
    [gap] = server.gaps("site.test")
    assert gap >= 1.0 - TOLERANCE_S


async def test_retry_times_then_the_errback_gets_the_last_failure() -> None:
    pages = {"/": status(500)}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")])
        run = await crawl(spider, RESOLVE=server.resolve_map(), RETRY_TIMES=3, **FAST)
    assert len(server.requests) == 4
    assert spider.responses == []
    [failure] = spider.failures
    assert isinstance(failure, HttpError)
    assert failure.response.status == 500  # type: ignore[attr-defined]
    assert failure.request.meta["retry_times"] == 3  # type: ignore[attr-defined]
    assert run.stats["retries"] == 3
    assert run.stats["retries/http_500"] == 3
    assert run.stats["failures/http_status"] == 1


@pytest.mark.parametrize(
    ("meta", "expected_requests"),
    [
        ({"max_retry_times": 1}, 2),
        ({"max_retry_times": 0}, 1),
        ({"max_retry_times": 4}, 5),  # more than RETRY_TIMES
        ({"dont_retry": True}, 1),
    ],
)
async def test_request_meta_overrides_retry_times(
    meta: dict[str, Any], expected_requests: int
) -> None:
    async with timed_site({"site.test": {"/": status(502)}}) as server:
        spider = Recorder([])
        spider.urls = [
            Request(
                server.url("site.test"), meta=meta, callback=spider.parse, errback=spider.failed
            )
        ]
        run = await crawl(spider, RESOLVE=server.resolve_map(), RETRY_TIMES=2, **FAST)
    assert len(server.requests) == expected_requests
    assert len(spider.failures) == 1
    assert run.stats.get("retries", 0) == expected_requests - 1


@pytest.mark.parametrize(
    ("setting", "meta", "expected_requests"),
    [
        (False, {}, 1),  # POST is not retried by default
        (True, {}, 3),  # RETRY_NON_IDEMPOTENT
        (False, {"retry_non_idempotent": True}, 3),  # per request
    ],
)
async def test_post_is_retried_only_when_asked(
    setting: bool, meta: dict[str, Any], expected_requests: int
) -> None:
    async with timed_site({"site.test": {"/form": status(503)}}) as server:
        spider = Recorder([])
        spider.urls = [
            Request(
                server.url("site.test", "/form"),
                method="POST",
                data=b"x=1",
                meta=meta,
                callback=spider.parse,
                errback=spider.failed,
            )
        ]
        run = await crawl(
            spider,
            RESOLVE=server.resolve_map(),
            RETRY_TIMES=2,
            RETRY_NON_IDEMPOTENT=setting,
            **FAST,
        )
    assert [r.method for r in server.requests] == ["POST"] * expected_requests
    assert all(r.body == b"x=1" for r in server.requests)
    assert run.stats["failures/http_status"] == 1
    assert len(spider.failures) == 1


async def test_connection_refused_is_retried_then_fails(refused_port: int) -> None:
    spider = Recorder([f"http://127.0.0.1:{refused_port}/"])
    run = await crawl(spider, RETRY_TIMES=2, **FAST)
    [failure] = spider.failures
    assert isinstance(failure, NetworkError)
    assert run.stats["retries/network"] == 2
    assert run.stats["failures/network"] == 1
    assert run.result.finish_reason == "finished"


async def test_a_status_outside_retry_http_codes_is_not_retried() -> None:
    async with timed_site({"site.test": {"/": status(500)}}) as server:
        spider = Recorder([server.url("site.test")])
        run = await crawl(
            spider, RESOLVE=server.resolve_map(), RETRY_TIMES=2, RETRY_HTTP_CODES=[503], **FAST
        )
    assert len(server.requests) == 1
    assert "retries" not in run.stats


async def test_backoff_spaces_retries() -> None:
    pages = {"/": sequence(status(500), status(500), html_page("ok"))}
    async with timed_site({"site.test": pages}) as server:
        spider = Recorder([server.url("site.test")])
        await crawl(
            spider,
            RESOLVE=server.resolve_map(),
            RETRY_TIMES=2,
            RETRY_BACKOFF_BASE=0.1,
            RETRY_BACKOFF_MAX=5.0,
        )
    first, second = server.gaps("site.test")
    # wait_exponential_jitter: base * 2**(n-1) plus jitter in [0, base]
    assert first >= 0.1 - TOLERANCE_S
    assert second >= 0.2 - TOLERANCE_S


# -- RetryPolicy on its own ------------------------------------------------------------------


def test_parse_retry_after_seconds_and_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2020"):
        assert parse_retry_after(bad, now=now) is None


def test_for_status_honours_retry_after_and_its_cap() -> None:
    policy = RetryPolicy(times=2, retry_after_max_s=10.0)
    request = Request("http://h.test/")
    decision = policy.for_status(request, 429, "5")
    assert decision is not None
    assert (decision.delay_s, decision.reason, decision.hold_host) == (5.0, "http_429", True)
    capped = policy.for_status(request, 503, "3600")
    assert capped is not None and capped.delay_s == 10.0
    assert policy.for_status(request, 404, "5") is None


def test_for_status_without_retry_after_backs_off_and_holds_only_on_429_503() -> None:
    policy = RetryPolicy(times=5, backoff_base_s=1.0, backoff_max_s=100.0)
    request = Request("http://h.test/")
    for code, holds in ((500, False), (502, False), (503, True), (429, True), (408, False)):
        decision = policy.for_status(request, code, None)
        assert decision is not None and decision.hold_host is holds
        assert 1.0 <= decision.delay_s <= 2.0


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=3.0)
    for _ in range(50):
        assert 0.5 <= policy.backoff_s(1) <= 1.0
        assert 1.0 <= policy.backoff_s(2) <= 1.5
        assert 2.0 <= policy.backoff_s(3) <= 2.5
        assert policy.backoff_s(10) <= 3.0


def test_for_error_retries_only_transient_errors() -> None:
    policy = RetryPolicy(times=1)
    request = Request("http://h.test/")
    for error in (NetworkError("x"), ProxyError("x"), RequestTimeout("x")):
        decision = policy.for_error(request, error)
        assert decision is not None and decision.reason == error.kind
    for final in (TlsError("x"), BadResponse("x"), HttpError("x")):
        assert policy.for_error(request, final) is None
    request.meta["retry_times"] = 1
    assert policy.for_error(request, NetworkError("x")) is None


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_idempotent_methods_are_retried(method: str) -> None:
    assert RetryPolicy().for_status(Request("http://h.test/", method=method), 503, None)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_methods_need_an_opt_in(method: str) -> None:
    request = Request("http://h.test/", method=method)
    assert RetryPolicy().for_status(request, 503, None) is None
    assert RetryPolicy(non_idempotent=True).for_status(request, 503, None)
    request.meta["retry_non_idempotent"] = True
    assert RetryPolicy().for_status(request, 503, None)


def test_retry_after_dates_are_read_on_the_policys_wall_clock() -> None:
    now = 1_700_000_000.0
    policy = RetryPolicy(retry_after_max_s=100.0, wall_clock=lambda: now)
    date = email.utils.formatdate(now + 42, usegmt=True)
    decision = policy.for_status(Request("https://a.test/"), 503, date)
    assert decision is not None and decision.delay_s == 42.0 and decision.hold_host
