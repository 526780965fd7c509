"""MemoryFrontier: priority, FIFO, de-duplication, per-host politeness, retries, leases.

Time is a ManualClock: a lease that must wait is a task that is checked with
``.done()`` after ``await clock.advance(...)``; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from crawler import Request
from crawler.fingerprint import fingerprint
from crawler.frontier import Frontier, FrontierCounts, Lease, MemoryFrontier, PolitenessPolicy
from crawler.testing import ManualClock


def req(path: str, host: str = "a.test", **kwargs: Any) -> Request:
    return Request(f"http://{host}{path}", **kwargs)


def make(per_host: int = 100, delay_s: float = 0.0) -> tuple[MemoryFrontier, ManualClock]:
    clock = ManualClock()
    return MemoryFrontier(PolitenessPolicy(per_host=per_host, delay_s=delay_s), clock), clock


def run_nowait(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that must finish without suspending, and return its value."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the call suspended: it would have waited")


def lease_nowait(frontier: MemoryFrontier) -> Lease | None:
    return run_nowait(frontier.lease())


def urls(leases: list[Lease | None]) -> list[str]:
    return [lease.request.url if lease else "None" for lease in leases]


async def settle() -> None:
    """Let woken tasks run (no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_memory_frontier_implements_the_protocol() -> None:
    assert isinstance(MemoryFrontier(), Frontier)


async def test_higher_priority_is_leased_first() -> None:
    frontier, _ = make()
    await frontier.push(
        [
            req("/p0", priority=0),
            req("/p5a", priority=5),
            req("/neg", priority=-1),
            req("/p5b", priority=5),
            req("/p10", priority=10),
        ]
    )
    leased = [lease_nowait(frontier) for _ in range(5)]
    assert [lease.request.url.rsplit("/", 1)[1] for lease in leased if lease] == [
        "p10",
        "p5a",
        "p5b",
        "p0",
        "neg",
    ]


async def test_priority_is_global_across_hosts() -> None:
    frontier, _ = make()
    await frontier.push([req("/low", "a.test", priority=1), req("/high", "b.test", priority=9)])
    await frontier.push([req("/mid", "c.test", priority=5)])
    assert urls([lease_nowait(frontier) for _ in range(3)]) == [
        "http://b.test/high",
        "http://c.test/mid",
        "http://a.test/low",
    ]


async def test_fifo_within_a_priority_across_hosts_and_pushes() -> None:
    frontier, _ = make()
    order = [req(f"/{n}", host) for n in range(4) for host in ("a.test", "b.test")]
    await frontier.push(order[:3])
    await frontier.push(order[3:])
    assert urls([lease_nowait(frontier) for _ in order]) == [r.url for r in order]


async def test_duplicates_are_refused_by_fingerprint() -> None:
    frontier, _ = make()
    accepted = await frontier.push(
        [
            req("/page?a=1&b=2"),
            req("/page?b=2&a=1#section"),  # same page: query order and fragment don't count
            req("/page?a=1&b=2", dont_filter=True),  # explicitly allowed again
            req("/other"),
            Request("HTTP://A.TEST:80/other"),
        ]
    )
    assert accepted == [True, False, True, True, False]
    assert (await frontier.counts()).queued == 3


async def test_a_done_request_stays_seen() -> None:
    frontier, _ = make()
    await frontier.push([req("/x")])
    lease = lease_nowait(frontier)
    assert lease is not None
    await frontier.ack(lease)
    assert await frontier.push([req("/x"), req("/x", dont_filter=True)]) == [False, True]


async def test_add_seen_records_fingerprints_for_push() -> None:
    frontier, _ = make()
    fp = fingerprint(req("/redirect-target"))
    assert await frontier.add_seen(fp) is True
    assert await frontier.add_seen(fp) is False
    assert await frontier.push([req("/redirect-target")]) == [False]


async def test_host_at_its_limit_is_skipped_while_another_host_is_served() -> None:
    frontier, _ = make(per_host=2)
    await frontier.push(
        [
            req("/1", "a.test", priority=10),
            req("/2", "a.test", priority=10),
            req("/3", "a.test", priority=10),
            req("/1", "b.test", priority=0),
        ]
    )
    first = [lease_nowait(frontier), lease_nowait(frontier)]
    assert urls(first) == ["http://a.test/1", "http://a.test/2"]
    # a.test has 2 in flight: its higher-priority /3 waits, b.test is served.
    assert urls([lease_nowait(frontier)]) == ["http://b.test/1"]
    waiting = asyncio.create_task(frontier.lease())
    await settle()
    assert not waiting.done()
    assert first[0] is not None
    await frontier.ack(first[0])
    await settle()
    assert waiting.done()
    assert urls([waiting.result()]) == ["http://a.test/3"]


async def test_failed_and_retried_leases_free_the_host_slot() -> None:
    frontier, _ = make(per_host=1)
    await frontier.push([req("/1"), req("/2"), req("/3")])
    one = lease_nowait(frontier)
    assert one is not None
    await frontier.fail(one, "network")
    two = lease_nowait(frontier)
    assert urls([two]) == ["http://a.test/2"]
    assert two is not None
    await frontier.retry(two, 0.0)
    assert urls([lease_nowait(frontier)]) == ["http://a.test/3"]


async def test_download_delay_spaces_the_starts_of_one_host() -> None:
    frontier, clock = make(delay_s=2.0)
    await frontier.push([req("/1"), req("/2"), req("/1", "b.test")])
    assert urls([lease_nowait(frontier), lease_nowait(frontier)]) == [
        "http://a.test/1",
        "http://b.test/1",
    ]
    waiting = asyncio.create_task(frontier.lease())
    await settle()
    assert not waiting.done()
    await clock.advance(1.0)
    assert not waiting.done()
    await clock.advance(1.0)
    assert waiting.done()
    assert urls([waiting.result()]) == ["http://a.test/2"]


async def test_download_delay_counts_from_the_start_not_the_end() -> None:
    frontier, clock = make(delay_s=5.0)
    await frontier.push([req("/1"), req("/2")])
    first = lease_nowait(frontier)
    assert first is not None
    await clock.advance(3.0)
    await frontier.ack(first)  # finishing early does not shorten the delay
    waiting = asyncio.create_task(frontier.lease())
    await clock.advance(1.9)
    assert not waiting.done()
    await clock.advance(0.1)
    assert urls([waiting.result()]) == ["http://a.test/2"]


async def test_delay_host_holds_one_host_until_a_time() -> None:
    frontier, clock = make()
    frontier.readiness.delay_host("a.test", clock.now() + 10)
    await frontier.push([req("/1", "a.test", priority=5), req("/1", "b.test")])
    assert urls([lease_nowait(frontier)]) == ["http://b.test/1"]
    waiting = asyncio.create_task(frontier.lease())
    await clock.advance(9.5)
    assert not waiting.done()
    await clock.advance(0.5)
    assert urls([waiting.result()]) == ["http://a.test/1"]


async def test_per_host_limit_override() -> None:
    frontier, _ = make(per_host=5)
    frontier.readiness.set_limit("a.test", 1)
    await frontier.push([req("/1"), req("/2"), req("/1", "b.test"), req("/2", "b.test")])
    got = urls([lease_nowait(frontier) for _ in range(3)])
    assert got == ["http://a.test/1", "http://b.test/1", "http://b.test/2"]
    assert frontier.readiness.in_flight("a.test") == 1


async def test_retry_redelivers_after_the_delay() -> None:
    frontier, clock = make()
    await frontier.push([req("/flaky", meta={"attempt": 1})])
    lease = lease_nowait(frontier)
    assert lease is not None
    await frontier.retry(lease, 5.0)
    assert await frontier.counts() == FrontierCounts(queued=1, in_flight=0, done=0, failed=0)
    waiting = asyncio.create_task(frontier.lease())
    await clock.advance(4.9)
    assert not waiting.done()
    await clock.advance(0.1)
    again = waiting.result()
    assert again is not None
    assert again.request is lease.request  # the same request, not a duplicate refused
    assert again.request.meta == {"attempt": 1}
    await frontier.ack(again)
    assert lease_nowait(frontier) is None


async def test_an_earlier_retry_rearms_the_wakeup() -> None:
    frontier, clock = make()
    frontier.readiness.delay_host("a.test", clock.now() + 100)
    await frontier.push([req("/1", "a.test"), req("/1", "b.test")])
    b1 = lease_nowait(frontier)
    assert urls([b1]) == ["http://b.test/1"]
    assert b1 is not None
    waiting = asyncio.create_task(frontier.lease())  # a wake-up is armed for a.test at +100
    await settle()
    await frontier.retry(b1, 1.0)  # due long before a.test
    await clock.advance(1.0)
    assert waiting.done()
    assert urls([waiting.result()]) == ["http://b.test/1"]


async def test_lease_returns_none_when_exhausted() -> None:
    frontier, _ = make()
    assert lease_nowait(frontier) is None
    await frontier.push([req("/only")])
    lease = lease_nowait(frontier)
    assert lease is not None
    assert await frontier.counts() == FrontierCounts(queued=0, in_flight=1, done=0, failed=0)
    # Something is in flight: it may still produce new requests, so lease() waits ...
    waiters = [asyncio.create_task(frontier.lease()) for _ in range(3)]
    await settle()
    assert not any(w.done() for w in waiters)
    # ... and every waiter gets None once the last request is done.
    await frontier.ack(lease)
    await settle()
    assert [w.done() and w.result() for w in waiters] == [None, None, None]


async def test_requests_pushed_by_an_inflight_request_reach_a_waiter() -> None:
    frontier, _ = make()
    await frontier.push([req("/parent")])
    parent = lease_nowait(frontier)
    assert parent is not None
    waiters = [asyncio.create_task(frontier.lease()) for _ in range(2)]
    await settle()
    await frontier.push([req("/child")])
    await frontier.ack(parent)
    await settle()
    results = [w.result() for w in waiters if w.done()]
    assert urls(results) == ["http://a.test/child"]  # exactly one waiter gets it
    pending = [w for w in waiters if not w.done()]
    assert len(pending) == 1
    assert results[0] is not None
    await frontier.ack(results[0])
    await settle()
    assert pending[0].done() and pending[0].result() is None


async def test_stop_wakes_waiters_and_refuses_future_leases() -> None:
    frontier, _ = make(per_host=1)
    await frontier.push([req("/1"), req("/2")])
    held = lease_nowait(frontier)
    assert held is not None
    waiters = [asyncio.create_task(frontier.lease()) for _ in range(2)]
    await settle()
    assert not any(w.done() for w in waiters)
    frontier.stop()
    await settle()
    assert [w.done() and w.result() for w in waiters] == [None, None]
    await frontier.ack(held)
    assert lease_nowait(frontier) is None  # /2 is still queued, but the frontier is stopped
    assert (await frontier.counts()).queued == 1


async def test_close_stops_waiters() -> None:
    frontier, _ = make()
    await frontier.open()
    await frontier.push([req("/1")])
    held = lease_nowait(frontier)
    waiter = asyncio.create_task(frontier.lease())
    await settle()
    await frontier.close()
    await settle()
    assert waiter.done() and waiter.result() is None
    assert held is not None


async def test_cancelled_waiter_does_not_swallow_a_wakeup() -> None:
    frontier, _ = make()
    await frontier.push([req("/parent")])
    parent = lease_nowait(frontier)
    assert parent is not None
    cancelled = asyncio.create_task(frontier.lease())
    live = asyncio.create_task(frontier.lease())
    await settle()
    cancelled.cancel()
    await settle()
    await frontier.push([req("/child")])
    await settle()
    assert cancelled.cancelled()
    assert urls([live.result()]) == ["http://a.test/child"]
    await frontier.ack(parent)


async def test_counts_track_every_state() -> None:
    frontier, clock = make()
    await frontier.push([req(f"/{n}") for n in range(5)])
    assert await frontier.counts() == FrontierCounts(queued=5, in_flight=0, done=0, failed=0)
    leases = [lease_nowait(frontier) for _ in range(4)]
    assert all(leases)
    assert await frontier.counts() == FrontierCounts(queued=1, in_flight=4, done=0, failed=0)
    await frontier.ack(leases[0])  # type: ignore[arg-type]
    await frontier.ack(leases[1])  # type: ignore[arg-type]
    await frontier.fail(leases[2], "http_status")  # type: ignore[arg-type]
    await frontier.retry(leases[3], 10.0)  # type: ignore[arg-type]
    assert await frontier.counts() == FrontierCounts(queued=2, in_flight=0, done=2, failed=1)
    counts = await frontier.counts()
    with pytest.raises(AttributeError):
        counts.queued = 0  # type: ignore[misc]  # a snapshot, not a live view
    await clock.advance(10.0)
    assert (
        len(
            {
                lease.request.url
                for lease in [lease_nowait(frontier), lease_nowait(frontier)]
                if lease
            }
        )
        == 2
    )


async def test_lease_records_host_and_fingerprint() -> None:
    frontier, _ = make()
    request = Request("http://Sub.A.Test:8080/x?b=1&a=2#f")
    await frontier.push([request])
    lease = lease_nowait(frontier)
    assert lease is not None
    assert lease.host == "sub.a.test"
    assert lease.fingerprint == fingerprint(request)
    assert lease.request is request
