"""The Frontier contract, run over every backend: memory, SQLite and Redis.

Time is a ManualClock (the Redis frontier schedules on it too: ``server_time=False``,
and its acks are final at once). A lease that must wait is a task; ``assert_waiting``
lets it run until it either returns (a failure) or parks on an unresolved waiter
future in ``crawler/frontier/waiters.py`` (read from the coroutine's await chain,
not from the frontier's private state). The SQLite backend does its I/O on a thread
and Redis over a socket, so the helper polls; no real-time pause decides the outcome.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_peer import RedisServer, running_redis

from crawler import Request
from crawler.fingerprint import fingerprint
from crawler.frontier import (
    CheckpointMarks,
    DelayRefunds,
    Frontier,
    FrontierCounts,
    Lease,
    MemoryFrontier,
    PolitenessPolicy,
    Resettable,
    StatsPublisher,
)
from crawler.frontier.redis import RedisFrontier
from crawler.frontier.sqlite import SqliteFrontier
from crawler.frontier.waiters import LeaseWaiters
from crawler.testing import ManualClock

Make = Callable[..., Awaitable[tuple[Any, ManualClock]]]

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the module (started only if a Redis test runs)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


async def empty_redis(server: RedisServer) -> None:
    admin = aioredis.Redis.from_url(server.url)
    try:
        await admin.flushall()
    finally:
        await admin.aclose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, RedisServer | None]:
    """The backend's name, and the redis-server for "redis" (started outside the loop)."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_server")
    return request.param, None


@pytest.fixture
async def make(backend: tuple[str, RedisServer | None], tmp_path: Path) -> AsyncIterator[Make]:
    """``await make(per_host=, delay_s=)`` -> an opened frontier of this backend and its clock."""
    opened: list[Any] = []
    name, server = backend
    if server is not None:
        await empty_redis(server)

    async def factory(per_host: int = 100, delay_s: float = 0.0) -> tuple[Any, ManualClock]:
        clock = ManualClock()
        policy = PolitenessPolicy(per_host=per_host, delay_s=delay_s)
        frontier: Any
        if name == "memory":
            frontier = MemoryFrontier(policy, clock)
        elif server is not None:
            frontier = RedisFrontier(
                server.url,
                job=f"contract{len(opened)}",
                policy=policy,
                clock=clock,
                server_time=False,
                flush_interval_s=0,  # acks final at once (flushing: test_frontier_redis.py)
            )
        else:
            # Tiny windows and batches so refills, evictions and flushes happen in every test.
            frontier = SqliteFrontier(
                tmp_path / f"state{len(opened)}.db",
                policy,
                clock,
                window=2,
                max_loaded=4,
                flush_ops=3,
            )
        await frontier.open()
        opened.append(frontier)
        return frontier, clock

    yield factory
    for frontier in opened:
        await frontier.close()


def req(path: str, host: str = "a.test", **kwargs: Any) -> Request:
    return Request(f"http://{host}{path}", **kwargs)


async def lease_now(frontier: Any) -> Lease | None:
    """A lease that must be available without any time passing."""
    return await asyncio.wait_for(frontier.lease(), 5)


async def take(frontier: Any, count: int) -> list[str]:
    leases = [await lease_now(frontier) for _ in range(count)]
    return [lease.request.url if lease else "None" for lease in leases]


def parked(task: asyncio.Task[Any]) -> bool:
    """True if ``task`` is blocked in ``LeaseWaiters.wait`` on a future nobody resolved yet."""
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None)
        if frame is not None and frame.f_code is LeaseWaiters.wait.__code__:
            waiter = frame.f_locals.get("waiter")
            return waiter is not None and not waiter.done()
        awaited = getattr(awaited, "cr_await", None)
    return False


async def assert_waiting(task: asyncio.Task[Any]) -> None:
    """Let ``task`` (a ``lease()``) run until it parks as a waiter; it must not return."""
    async with asyncio.timeout(5):
        for spins in itertools.count():
            if task.done() or parked(task):
                break
            # Its I/O runs on aiosqlite's thread or a Redis socket: poll, yielding first.
            await asyncio.sleep(0 if spins < 100 else 0.001)
    assert not task.done(), f"lease returned {task.result()!r} but should have waited"


async def finish(task: asyncio.Task[Any]) -> Any:
    return await asyncio.wait_for(task, 5)


async def test_implements_the_protocol(make: Make) -> None:
    frontier, _ = await make()
    assert isinstance(frontier, Frontier)


async def test_higher_priority_is_leased_first(make: Make) -> None:
    frontier, _ = await make()
    priorities = {"p0": 0, "p5a": 5, "neg": -1, "p5b": 5, "p10": 10, "p1": 1}
    await frontier.push([req(f"/{name}", priority=p) for name, p in priorities.items()])
    leased = await take(frontier, 6)
    assert [url.rsplit("/", 1)[1] for url in leased] == ["p10", "p5a", "p5b", "p1", "p0", "neg"]


async def test_priority_is_global_across_hosts(make: Make) -> None:
    frontier, _ = await make()
    await frontier.push([req("/low", "a.test", priority=1), req("/high", "b.test", priority=9)])
    await frontier.push([req("/mid", "c.test", priority=5)])
    assert await take(frontier, 3) == [
        "http://b.test/high",
        "http://c.test/mid",
        "http://a.test/low",
    ]


async def test_fifo_within_a_priority_across_hosts_and_pushes(make: Make) -> None:
    frontier, _ = await make()
    order = [req(f"/{n}", host) for n in range(6) for host in ("a.test", "b.test", "c.test")]
    await frontier.push(order[:5])
    await frontier.push(order[5:])
    assert await take(frontier, len(order)) == [r.url for r in order]


async def test_a_late_high_priority_request_overtakes_a_long_queue(make: Make) -> None:
    frontier, _ = await make()
    await frontier.push([req(f"/{n}") for n in range(10)])
    assert await take(frontier, 2) == ["http://a.test/0", "http://a.test/1"]
    await frontier.push([req("/urgent", priority=3), req("/later", priority=-3)])
    assert await take(frontier, 9) == [
        "http://a.test/urgent",
        *(f"http://a.test/{n}" for n in range(2, 10)),
    ]
    assert await take(frontier, 1) == ["http://a.test/later"]


async def test_duplicates_are_refused_by_fingerprint(make: Make) -> None:
    frontier, _ = await make()
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
    assert await frontier.push([req("/other"), req("/new")]) == [False, True]
    assert (await frontier.counts()).queued == 4


async def test_a_done_request_stays_seen(make: Make) -> None:
    frontier, _ = await make()
    await frontier.push([req("/x")])
    lease = await lease_now(frontier)
    assert lease is not None
    await frontier.ack(lease)
    assert await frontier.push([req("/x"), req("/x", dont_filter=True)]) == [False, True]


async def test_dont_filter_requests_are_all_delivered_with_the_real_fingerprint(make: Make) -> None:
    frontier, _ = await make()
    first = req("/same", dont_filter=True, meta={"n": 1})
    again = req("/same", dont_filter=True, meta={"n": 2})
    assert await frontier.push([first, again]) == [True, True]
    assert await frontier.push([req("/same")]) == [False]  # the first one entered the seen set
    leases = [await lease_now(frontier), await lease_now(frontier)]
    assert [lease.request.meta["n"] for lease in leases if lease] == [1, 2]
    assert all(lease and lease.fingerprint == fingerprint(first) for lease in leases)


async def test_add_seen_records_fingerprints_for_push(make: Make) -> None:
    frontier, _ = await make()
    fp = fingerprint(req("/redirect-target"))
    assert await frontier.add_seen(fp) is True
    assert await frontier.add_seen(fp) is False
    assert await frontier.push([req("/redirect-target")]) == [False]
    await frontier.push([req("/pushed")])
    assert await frontier.add_seen(fingerprint(req("/pushed"))) is False
    assert (await frontier.counts()).queued == 1


async def test_host_at_its_limit_is_skipped_while_another_host_is_served(make: Make) -> None:
    frontier, _ = await make(per_host=2)
    await frontier.push(
        [
            req("/1", "a.test", priority=10),
            req("/2", "a.test", priority=10),
            req("/3", "a.test", priority=10),
            req("/1", "b.test", priority=0),
        ]
    )
    first = [await lease_now(frontier), await lease_now(frontier)]
    assert [lease.request.url for lease in first if lease] == ["http://a.test/1", "http://a.test/2"]
    # a.test has 2 in flight: its higher-priority /3 waits, b.test is served.
    assert await take(frontier, 1) == ["http://b.test/1"]
    waiting = asyncio.create_task(frontier.lease())
    await assert_waiting(waiting)
    assert first[0] is not None
    await frontier.ack(first[0])
    lease = await finish(waiting)
    assert lease.request.url == "http://a.test/3"


async def test_download_delay_spaces_requests_to_one_host(make: Make) -> None:
    frontier, clock = await make(delay_s=10.0)
    await frontier.push([req("/1"), req("/2"), req("/1", "b.test")])
    assert await take(frontier, 2) == ["http://a.test/1", "http://b.test/1"]
    waiting = asyncio.create_task(frontier.lease())
    await assert_waiting(waiting)
    await clock.advance(9.0)
    await assert_waiting(waiting)
    await clock.advance(1.0)
    assert (await finish(waiting)).request.url == "http://a.test/2"


async def test_download_delay_counts_from_the_start_not_the_end(make: Make) -> None:
    frontier, clock = await make(delay_s=5.0)
    await frontier.push([req("/1"), req("/2")])
    first = await lease_now(frontier)
    assert first is not None
    await clock.advance(3.0)
    await frontier.ack(first)  # finishing early does not shorten the delay
    waiting = asyncio.create_task(frontier.lease())
    await clock.advance(1.9)
    await assert_waiting(waiting)
    await clock.advance(0.1)
    assert (await finish(waiting)).request.url == "http://a.test/2"


async def test_hold_host_and_set_host_delay(make: Make) -> None:
    frontier, clock = await make()
    await frontier.hold_host("a.test", 10.0)
    await frontier.set_host_delay("b.test", 4.0)
    await frontier.push([req("/1", "a.test", priority=5), req("/1", "b.test"), req("/2", "b.test")])
    assert await take(frontier, 1) == ["http://b.test/1"]
    waiting = asyncio.create_task(frontier.lease())
    await clock.advance(3.9)
    await assert_waiting(waiting)  # a.test is held, b.test waits out its own delay
    await clock.advance(0.1)
    assert (await finish(waiting)).request.url == "http://b.test/2"
    waiting = asyncio.create_task(frontier.lease())
    await clock.advance(5.9)
    await assert_waiting(waiting)
    await clock.advance(0.1)
    assert (await finish(waiting)).request.url == "http://a.test/1"


async def test_a_refunded_delay_lets_the_hosts_next_request_start_at_once(make: Make) -> None:
    frontier, clock = await make(delay_s=10.0)
    refunds = frontier
    assert isinstance(refunds, DelayRefunds)
    await frontier.push([req("/1"), req("/2"), req("/3"), req("/4")])
    assert await take(frontier, 1) == ["http://a.test/1"]
    await refunds.refund_delay("a.test", clock.now())  # /1 was answered by the cache
    assert await take(frontier, 1) == ["http://a.test/2"]  # no time passed
    # /2 started after this `since`: its delay was used by another request, it stays
    await refunds.refund_delay("a.test", clock.now() - 1.0)
    waiting = asyncio.create_task(frontier.lease())
    await assert_waiting(waiting)
    await refunds.refund_delay("a.test", clock.now())  # /2 was a hit too: wakes the waiter
    assert (await finish(waiting)).request.url == "http://a.test/3"
    await frontier.hold_host("a.test", 5.0)  # a hold is never given back, nor the delay under it
    await refunds.refund_delay("a.test", clock.now())
    waiting = asyncio.create_task(frontier.lease())
    await clock.advance(9.9)
    await assert_waiting(waiting)
    await clock.advance(0.1)
    assert (await finish(waiting)).request.url == "http://a.test/4"


async def test_failed_and_retried_leases_free_the_host_slot(make: Make) -> None:
    frontier, _ = await make(per_host=1)
    await frontier.push([req("/1"), req("/2"), req("/3")])
    one = await lease_now(frontier)
    assert one is not None
    await frontier.fail(one, "network")
    two = await lease_now(frontier)
    assert two is not None and two.request.url == "http://a.test/2"
    await frontier.retry(two, 0.0)
    three = await lease_now(frontier)  # the retry went behind /3
    assert three is not None and three.request.url == "http://a.test/3"
    await frontier.ack(three)
    assert await take(frontier, 1) == ["http://a.test/2"]


async def test_an_earlier_retry_rearms_the_wakeup(make: Make) -> None:
    frontier, clock = await make()
    await frontier.hold_host("a.test", 100.0)
    await frontier.push([req("/1", "a.test"), req("/1", "b.test")])
    b1 = await lease_now(frontier)
    assert b1 is not None and b1.request.url == "http://b.test/1"
    waiting = asyncio.create_task(frontier.lease())  # a wake-up is armed for a.test at +100
    await assert_waiting(waiting)
    await frontier.retry(b1, 1.0)  # due long before a.test
    await frontier.counts()  # the retry has reached the frontier (Redis sends it in the background)
    await clock.advance(1.0)
    assert (await finish(waiting)).request.url == "http://b.test/1"


async def test_a_cancelled_waiter_does_not_swallow_a_wakeup(make: Make) -> None:
    frontier, _ = await make()
    await frontier.push([req("/parent")])
    parent = await lease_now(frontier)
    assert parent is not None
    cancelled = asyncio.create_task(frontier.lease())
    live = asyncio.create_task(frontier.lease())
    await assert_waiting(live)
    cancelled.cancel()
    await frontier.push([req("/child")])
    assert (await finish(live)).request.url == "http://a.test/child"
    assert cancelled.cancelled()
    await frontier.ack(parent)


async def test_a_fresh_frontier_asks_to_be_seeded_and_flush_is_safe(make: Make) -> None:
    frontier, _ = await make()
    assert await frontier.claim_seed() is True
    await frontier.push([req("/start")])
    await frontier.seed_done()
    await frontier.flush()
    assert await take(frontier, 1) == ["http://a.test/start"]


async def test_retry_comes_back_after_its_delay_with_its_changes(make: Make) -> None:
    frontier, clock = await make()
    await frontier.push([req("/flaky")])
    lease = await lease_now(frontier)
    assert lease is not None
    lease.request.meta["retry_times"] = 1
    await frontier.retry(lease, 5.0)
    assert await frontier.counts() == FrontierCounts(queued=1, in_flight=0, done=0, failed=0)
    waiting = asyncio.create_task(frontier.lease())
    await assert_waiting(waiting)  # not exhausted: the retry is still due
    await clock.advance(4.0)
    await assert_waiting(waiting)
    await clock.advance(1.0)
    again = await finish(waiting)
    assert again.request.url == "http://a.test/flaky"
    assert again.request.meta == {"retry_times": 1}
    assert again.fingerprint == lease.fingerprint
    await frontier.ack(again)
    assert await frontier.lease() is None


async def test_a_retry_goes_behind_requests_of_its_priority(make: Make) -> None:
    frontier, _ = await make()
    await frontier.push([req("/a"), req("/b"), req("/c", priority=-1)])
    lease = await lease_now(frontier)
    assert lease is not None
    await frontier.retry(lease, 0.0)
    assert await take(frontier, 3) == ["http://a.test/b", "http://a.test/a", "http://a.test/c"]


async def test_exhausted_frontier_returns_none_and_wakes_waiters(make: Make) -> None:
    frontier, _ = await make()
    assert await lease_now(frontier) is None
    await frontier.push([req("/only"), req("/bad")])
    lease = await lease_now(frontier)
    bad = await lease_now(frontier)
    assert lease is not None and bad is not None
    waiters = [asyncio.create_task(frontier.lease()) for _ in range(3)]
    await assert_waiting(waiters[0])
    await frontier.fail(bad, "http_status")
    await assert_waiting(waiters[0])  # /only is still in flight: it may yield more requests
    await frontier.ack(lease)
    assert [await finish(task) for task in waiters] == [None, None, None]
    assert await frontier.counts() == FrontierCounts(queued=0, in_flight=0, done=1, failed=1)


async def test_requests_pushed_while_waiting_wake_a_waiter(make: Make) -> None:
    frontier, _ = await make()
    await frontier.push([req("/parent")])
    parent = await lease_now(frontier)
    assert parent is not None
    waiting = asyncio.create_task(frontier.lease())
    await assert_waiting(waiting)
    await frontier.push([req("/child", "b.test")])
    assert (await finish(waiting)).request.url == "http://b.test/child"


async def test_stop_wakes_waiters_and_refuses_further_leases(make: Make) -> None:
    frontier, _ = await make(per_host=1)
    await frontier.push([req("/1"), req("/2")])
    first = await lease_now(frontier)
    assert first is not None
    waiting = asyncio.create_task(frontier.lease())
    await assert_waiting(waiting)
    frontier.stop()
    assert await finish(waiting) is None
    assert await lease_now(frontier) is None
    await frontier.ack(first)  # in-flight work may still finish after a stop
    assert await frontier.counts() == FrontierCounts(queued=1, in_flight=0, done=1, failed=0)


async def test_close_wakes_waiters(make: Make) -> None:
    frontier, _ = await make(per_host=1)
    await frontier.push([req("/1"), req("/2")])
    assert await lease_now(frontier) is not None
    waiting = asyncio.create_task(frontier.lease())
    await assert_waiting(waiting)
    await frontier.close()
    assert await finish(waiting) is None


async def test_counts_follow_each_request(make: Make) -> None:
    frontier, clock = await make()
    assert await frontier.counts() == FrontierCounts(0, 0, 0, 0)
    await frontier.push([req(f"/{n}") for n in range(4)])
    assert await frontier.counts() == FrontierCounts(4, 0, 0, 0)
    leases = [await lease_now(frontier) for _ in range(3)]
    assert await frontier.counts() == FrontierCounts(1, 3, 0, 0)
    done, failed, retried = leases
    assert done and failed and retried
    await frontier.ack(done)
    await frontier.fail(failed, "timeout")
    await frontier.retry(retried, 1.0)
    assert await frontier.counts() == FrontierCounts(2, 0, 1, 1)
    await clock.advance(1.0)
    assert await take(frontier, 2) == ["http://a.test/3", "http://a.test/2"]
    assert await frontier.counts() == FrontierCounts(0, 2, 1, 1)


async def test_many_workers_drain_every_request_once_within_host_limits(make: Make) -> None:
    frontier, _ = await make(per_host=3)
    hosts = [f"h{n}.test" for n in range(8)]
    rng = random.Random(7)
    pushed = [req(f"/{n}", rng.choice(hosts), priority=rng.randint(0, 3)) for n in range(400)]
    await frontier.push(pushed[:200])
    active: dict[str, int] = {}
    seen: list[str] = []
    peak = 0
    more = [pushed[200:]]

    async def worker() -> None:
        nonlocal peak
        while (lease := await frontier.lease()) is not None:
            active[lease.host] = active.get(lease.host, 0) + 1
            peak = max(peak, active[lease.host])
            seen.append(lease.request.url)
            await asyncio.sleep(0)
            # Once, at 50 *or more* leases: Redis leases overlap, no worker may see exactly 50.
            if len(seen) >= 50 and more:
                await frontier.push(more.pop())  # a callback yields more work
            active[lease.host] -= 1
            await frontier.ack(lease)

    async with asyncio.timeout(20):
        await asyncio.gather(*(worker() for _ in range(20)))
    assert sorted(seen) == sorted(r.url for r in pushed)
    assert 2 <= peak <= 3  # never over the limit (a 2-request SQLite window may not reach it)
    assert await frontier.counts() == FrontierCounts(0, 0, 400, 0)


def lease_nowait(frontier: MemoryFrontier) -> tuple[bool, Lease | None]:
    """(True, None) if the memory frontier's lease would wait, else (False, its result)."""
    coro = frontier.lease()
    try:
        coro.send(None)
    except StopIteration as stop:
        return False, stop.value
    coro.close()
    return True, None


async def assert_sqlite_waits(frontier: SqliteFrontier) -> None:
    """Start a lease, let it do its I/O until it parks as a waiter, then cancel it."""
    task = asyncio.create_task(frontier.lease())
    await assert_waiting(task)  # sqlite must wait where memory waits
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_same_lease_order_as_the_memory_frontier(tmp_path: Path) -> None:
    """A random sequence of pushes, leases, acks, retries and clock steps gives both
    backends the same leases in the same order (small windows force refills and evictions)."""
    rng = random.Random(11)
    policy = PolitenessPolicy(per_host=2, delay_s=0.5)
    memory_clock, sqlite_clock = ManualClock(), ManualClock()
    memory = MemoryFrontier(policy, memory_clock)
    sqlite = SqliteFrontier(
        tmp_path / "s.db", policy, sqlite_clock, window=3, max_loaded=7, flush_ops=5
    )
    await sqlite.open()
    hosts = [f"h{n}.test" for n in range(6)]
    held: list[tuple[Lease, Lease]] = []
    try:
        for step in range(1500):
            action = rng.random()
            if action < 0.25:
                batch = [
                    req(f"/{rng.randint(0, 400)}", rng.choice(hosts), priority=rng.randint(-1, 2))
                    for _ in range(rng.randint(1, 6))
                ]
                assert await memory.push(batch) == await sqlite.push(batch), step
            elif action < 0.6:
                waits, expected = lease_nowait(memory)
                if waits:
                    await assert_sqlite_waits(sqlite)
                    continue
                got = await asyncio.wait_for(sqlite.lease(), 5)
                if expected is None:
                    assert got is None, step
                    continue
                assert got is not None and got.request.url == expected.request.url, step
                held.append((expected, got))
            elif action < 0.85 and held:
                pair = held.pop(rng.randrange(len(held)))
                choice = rng.random()
                if choice < 0.7:
                    await memory.ack(pair[0])
                    await sqlite.ack(pair[1])
                elif choice < 0.85:
                    await memory.fail(pair[0], "x")
                    await sqlite.fail(pair[1], "x")
                else:
                    delay = rng.choice([0.0, 0.3, 2.0])
                    await memory.retry(pair[0], delay)
                    await sqlite.retry(pair[1], delay)
            else:
                step_s = rng.choice([0.1, 0.5, 1.0])
                await memory_clock.advance(step_s)
                await sqlite_clock.advance(step_s)
            assert await memory.counts() == await sqlite.counts(), step
            assert sqlite.loaded_count() <= 7 + 3
    finally:
        await sqlite.close()


@pytest.mark.parametrize("first", ["ack", "fail", "retry"])
@pytest.mark.parametrize("second", ["ack", "fail", "retry"])
async def test_a_lease_is_given_back_once(make: Make, first: str, second: str) -> None:
    from crawler.errors import LeaseError

    frontier, _ = await make()
    await frontier.push([req("/1"), req("/2")])
    lease = await lease_now(frontier)
    assert lease is not None

    async def give_back(how: str) -> None:
        if how == "ack":
            await frontier.ack(lease)
        elif how == "fail":
            await frontier.fail(lease, "test")
        else:
            await frontier.retry(lease, 60.0)

    await give_back(first)
    before = await frontier.counts()
    with pytest.raises(LeaseError, match=r"already given back \(" + first + r"\)"):
        await give_back(second)
    assert await frontier.counts() == before  # nothing was counted twice
    assert before.in_flight == 0


async def test_optional_capabilities_pass_through_the_ack_gate(make: Make) -> None:
    from crawler.checkpoint import AckGate

    frontier, _ = await make()
    gate = AckGate(frontier)
    for capability in (Resettable, CheckpointMarks, StatsPublisher):
        assert isinstance(gate, capability) == isinstance(frontier, capability), capability
    assert isinstance(frontier, Resettable) != isinstance(frontier, MemoryFrontier)
    assert isinstance(frontier, StatsPublisher) == isinstance(frontier, RedisFrontier)


async def test_reset_forgets_every_request_and_fingerprint(make: Make) -> None:
    frontier, _ = await make()
    if not isinstance(frontier, Resettable):
        pytest.skip("nothing is stored: a memory frontier starts empty anyway")
    assert await frontier.claim_seed() is True
    await frontier.push([req("/1"), req("/2")])
    await frontier.seed_done()
    lease = await lease_now(frontier)
    assert lease is not None
    await frontier.ack(lease)
    await frontier.flush()
    await frontier.reset()
    assert await frontier.counts() == FrontierCounts(0, 0, 0, 0)
    assert await frontier.claim_seed() is True  # a crawl started over is seeded again
    assert await frontier.push([req("/1")]) == [True]
    assert await take(frontier, 1) == ["http://a.test/1"]
