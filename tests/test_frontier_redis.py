"""The Redis frontier against a real redis-server on a free port.

The whole frontier contract runs over Redis in ``test_frontier_contract.py``; here
is what only a shared frontier does: the same lease order as the memory frontier,
leases that expire and are re-delivered, acks final only at a flush, heartbeats,
seeding by the first process only, isolated jobs, stats, Redis restarts, outages
waited out (and given up on), a job's state lost or replaced (its epoch).
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner
from redis_peer import RedisServer, running_redis
from test_frontier_contract import (
    assert_waiting,
    finish,
    lease_now,
    lease_nowait,
    req,
    take,
)

from crawler import Request
from crawler.cli.status import status_command
from crawler.errors import ConfigError
from crawler.frontier import FrontierCounts, Lease, MemoryFrontier, PolitenessPolicy
from crawler.frontier.base import FrontierFailed, FrontierUnavailable, HealthReports, StateLost
from crawler.frontier.redis import RedisFrontier, read_status
from crawler.testing import ManualClock


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


class Opener:
    """Opens RedisFrontiers on one server (each a "process") and closes them after the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened: list[RedisFrontier] = []

    async def __call__(self, job: str = "job", **kwargs: Any) -> RedisFrontier:
        kwargs.setdefault("flush_interval_s", 0)
        frontier = RedisFrontier(self.url, job=job, **kwargs)
        await frontier.open()
        self.opened.append(frontier)
        return frontier

    async def close(self) -> None:
        for frontier in self.opened:
            await frontier.close()


@pytest.fixture
async def opener(redis_server: RedisServer) -> AsyncIterator[Opener]:
    """An Opener on the module's redis-server, emptied first."""
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.flushall()
    finally:
        await admin.aclose()
    opener = Opener(redis_server.url)
    yield opener
    await opener.close()


# -- the same leases as the memory frontier --------------------------------------------


async def assert_redis_waits(frontier: RedisFrontier) -> None:
    """Start a lease, let it reach Redis and park as a waiter, then cancel it."""
    task = asyncio.create_task(frontier.lease())
    await assert_waiting(task)  # redis must wait where memory waits
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_same_lease_order_as_the_memory_frontier(opener: Opener) -> None:
    """Random pushes, leases, acks, fails, retries, holds and clock steps: the Redis
    frontier hands out the same requests in the same order as the memory frontier."""
    rng = random.Random(5)
    policy = PolitenessPolicy(per_host=2, delay_s=0.5)
    memory_clock, redis_clock = ManualClock(), ManualClock()
    memory = MemoryFrontier(policy, memory_clock)
    shared = await opener(policy=policy, clock=redis_clock, server_time=False)
    hosts = [f"h{n}.test" for n in range(5)]
    held: list[tuple[Lease, Lease]] = []
    for step in range(700):
        action = rng.random()
        if action < 0.25:
            batch = [
                req(f"/{rng.randint(0, 300)}", rng.choice(hosts), priority=rng.randint(-1, 2))
                for _ in range(rng.randint(1, 5))
            ]
            assert await memory.push(batch) == await shared.push(batch), step
        elif action < 0.6:
            waits, expected = lease_nowait(memory)
            if waits:
                await assert_redis_waits(shared)
                continue
            got = await asyncio.wait_for(shared.lease(), 5)
            if expected is None:
                assert got is None, step
                continue
            assert got is not None and got.request.url == expected.request.url, step
            held.append((expected, got))
        elif action < 0.85 and held:
            pair = held.pop(rng.randrange(len(held)))
            choice = rng.random()
            if choice < 0.6:
                await memory.ack(pair[0])
                await shared.ack(pair[1])
            elif choice < 0.75:
                await memory.fail(pair[0], "x")
                await shared.fail(pair[1], "x")
            else:
                delay = rng.choice([0.0, 0.3, 2.0])
                await memory.retry(pair[0], delay)
                await shared.retry(pair[1], delay)
        elif action < 0.9:
            host, hold_s = rng.choice(hosts), rng.choice([0.2, 1.0])
            await memory.hold_host(host, hold_s)
            await shared.hold_host(host, hold_s)
        else:
            step_s = rng.choice([0.1, 0.5, 1.0])
            await memory_clock.advance(step_s)
            await redis_clock.advance(step_s)
        assert await memory.counts() == await shared.counts(), step


# -- leases across processes ------------------------------------------------------------


async def test_an_expired_lease_is_re_delivered_and_a_late_ack_does_not_count(
    opener: Opener,
) -> None:
    clock = ManualClock()
    dead = await opener(clock=clock, server_time=False, lease_timeout_s=30)
    alive = await opener(clock=clock, server_time=False, lease_timeout_s=30)
    await dead.push([req("/1")])
    lost = await lease_now(dead)
    assert lost is not None
    waiting = asyncio.create_task(alive.lease())
    await assert_waiting(waiting)  # /1 is leased, not lost: nothing to take yet
    await clock.advance(29)
    await assert_waiting(waiting)
    await clock.advance(2)  # the dead process never renewed its lease
    again = await finish(waiting)
    assert again.request.url == "http://a.test/1"
    assert await alive.counts() == FrontierCounts(queued=0, in_flight=1, done=0, failed=0)
    await dead.ack(lost)  # too late: the request now belongs to the other worker
    assert await alive.counts() == FrontierCounts(queued=0, in_flight=1, done=0, failed=0)
    await alive.ack(again)
    assert await alive.counts() == FrontierCounts(queued=0, in_flight=0, done=1, failed=0)
    assert await lease_now(alive) is None
    assert (await read_status(opener.url, "job")).reclaimed == 1


async def test_an_acked_request_not_yet_flushed_is_re_delivered_if_its_worker_dies(
    opener: Opener,
) -> None:
    """Until the engine flushes (items written), an ack can still be undone by a crash."""
    clock = ManualClock()
    dead = await opener(clock=clock, server_time=False, lease_timeout_s=30, flush_interval_s=1e9)
    alive = await opener(clock=clock, server_time=False, lease_timeout_s=30)
    await dead.push([req("/1")])
    lease = await lease_now(dead)
    assert lease is not None
    await dead.ack(lease)
    assert await dead.counts() == FrontierCounts(queued=0, in_flight=0, done=1, failed=0)
    waiting = asyncio.create_task(alive.lease())
    await assert_waiting(waiting)  # done, but not final: the crawl is not over
    await clock.advance(31)
    assert (await finish(waiting)).request.url == "http://a.test/1"
    assert await alive.counts() == FrontierCounts(queued=0, in_flight=1, done=0, failed=0)


async def test_flush_makes_acks_final_and_ends_the_crawl(opener: Opener) -> None:
    frontier = await opener(flush_interval_s=1e9)
    await frontier.push([req("/1")])
    lease = await lease_now(frontier)
    assert lease is not None
    await frontier.ack(lease)
    waiting = asyncio.create_task(frontier.lease())
    await assert_waiting(waiting)
    await frontier.flush()
    assert await finish(waiting) is None


async def test_the_heartbeat_keeps_a_slow_request_leased(opener: Opener) -> None:
    slow = await opener(lease_timeout_s=0.3)
    other = await opener(lease_timeout_s=0.3)
    await slow.push([req("/slow")])
    lease = await lease_now(slow)
    assert lease is not None
    waiting = asyncio.create_task(other.lease())
    await asyncio.sleep(1.0)  # three lease timeouts: only the heartbeat keeps it
    assert not waiting.done()
    await slow.ack(lease)
    assert await finish(waiting) is None
    assert (await read_status(opener.url, "job")).reclaimed == 0


async def test_a_closing_worker_gives_its_leases_back_at_once(opener: Opener) -> None:
    leaving = await opener(lease_timeout_s=60)
    staying = await opener(lease_timeout_s=60)
    await leaving.push([req("/1")])
    assert await lease_now(leaving) is not None
    waiting = asyncio.create_task(staying.lease())
    await assert_waiting(waiting)
    await leaving.close()
    assert (await finish(waiting)).request.url == "http://a.test/1"


async def test_politeness_is_shared_by_every_process(opener: Opener) -> None:
    """CONCURRENCY_PER_HOST and DOWNLOAD_DELAY count for the cluster, on Redis time."""
    policy = PolitenessPolicy(per_host=1, delay_s=0.3)
    one, two = await opener(policy=policy), await opener(policy=policy)
    await one.push([req("/1"), req("/2"), req("/3")])
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = await lease_now(one)
    assert first is not None
    waiting = asyncio.create_task(two.lease())
    await assert_waiting(waiting)  # a.test has its one request in flight (in another process)
    await one.ack(first)
    second = await finish(waiting)
    assert second.request.url == "http://a.test/2"
    assert loop.time() - started >= 0.29  # the delay, across processes


async def test_host_delays_and_holds_apply_to_every_process(opener: Opener) -> None:
    """HOST_DELAYS (the policy), set_host_delay and hold_host from one process bind all."""
    policy = PolitenessPolicy(host_delays={"c.test": 0.4})
    one, two = await opener(policy=policy), await opener(policy=policy)
    await one.set_host_delay("a.test", 0.4)
    await two.push([req("/1"), req("/2"), req("/1", "b.test")])
    await two.push([req("/1", "c.test"), req("/2", "c.test")])
    await two.hold_host("b.test", 0.4)
    loop = asyncio.get_running_loop()
    started = loop.time()
    early: set[str] = set()
    late: set[str] = set()
    for _ in range(5):
        lease = await asyncio.wait_for(one.lease(), 5)
        assert lease is not None
        (late if loop.time() - started >= 0.35 else early).add(lease.request.url)
        await one.ack(lease)
    assert early == {"http://a.test/1", "http://c.test/1"}
    assert late == {"http://a.test/2", "http://b.test/1", "http://c.test/2"}


# -- seeding, jobs, stats -----------------------------------------------------------------


async def test_only_the_first_process_seeds_and_others_wait_for_it(opener: Opener) -> None:
    seeder, joiner = await opener(), await opener()
    assert await seeder.claim_seed() is True
    assert await joiner.claim_seed() is False
    waiting = asyncio.create_task(joiner.lease())
    await assert_waiting(waiting)  # empty, but the seeder is still pushing
    await seeder.push([req("/start")])
    lease = await finish(waiting)
    assert lease.request.url == "http://a.test/start"
    await joiner.ack(lease)
    waiting = asyncio.create_task(joiner.lease())
    await assert_waiting(waiting)
    await seeder.seed_done()
    assert await finish(waiting) is None
    late = await opener()
    assert await late.claim_seed() is False  # the job was seeded: never again
    assert await lease_now(late) is None


async def test_a_seeder_that_dies_stops_blocking_the_end_of_the_crawl(opener: Opener) -> None:
    seeder = await opener(lease_timeout_s=0.3)
    other = await opener(lease_timeout_s=0.3)
    assert await seeder.claim_seed() is True
    seeder._closing.set()  # the seeder hangs: no more heartbeats
    waiting = asyncio.create_task(other.lease())
    assert await asyncio.wait_for(waiting, 5) is None  # the seeding mark expired


async def test_two_jobs_on_one_redis_are_isolated(opener: Opener) -> None:
    books, films = await opener(job="books"), await opener(job="films")
    assert await books.push([req("/1"), req("/2")]) == [True, True]
    assert await films.push([req("/1")]) == [True]  # its own fingerprint set
    assert await films.claim_seed() is True and await books.claim_seed() is True
    await films.seed_done()
    await books.seed_done()
    lease = await lease_now(films)
    assert lease is not None and lease.request.url == "http://a.test/1"
    await films.ack(lease)
    assert await lease_now(films) is None  # films is done while books is not
    assert await books.counts() == FrontierCounts(queued=2, in_flight=0, done=0, failed=0)
    assert await films.counts() == FrontierCounts(queued=0, in_flight=0, done=1, failed=0)
    await books.reset()
    assert await books.counts() == FrontierCounts(0, 0, 0, 0)
    assert await films.counts() == FrontierCounts(0, 0, 1, 0)


async def test_stored_requests_keep_callbacks_meta_and_bodies(opener: Opener) -> None:
    class Spider:
        def parse_item(self, response: Any) -> None: ...

    spider = Spider()
    writer = await opener(spider=spider)
    reader = await opener(spider=spider)
    sent = Request(
        "http://a.test/form",
        method="POST",
        data={"q": "x"},
        meta={"depth_seen": [1, 2]},
        callback=spider.parse_item,
        headers={"X-A": "1"},
    )
    await writer.push([sent])
    lease = await lease_now(reader)
    assert lease is not None
    got = lease.request
    assert (got.method, got.data, got.meta, got.callback) == (
        "POST",
        {"q": "x"},
        {"depth_seen": [1, 2]},
        spider.parse_item,
    )


async def test_publish_stats_sums_processes_and_status_shows_the_cluster(
    opener: Opener,
) -> None:
    one, two = await opener(), await opener()
    assert await one.claim_seed()
    await one.push([req("/1"), req("/2"), req("/3")])
    await one.seed_done()
    lease = await lease_now(two)
    assert lease is not None
    await one.publish_stats({"pages": 3, "items": 5})
    await one.publish_stats({"pages": 4, "items": 5})  # running totals: only +1 page is sent
    await two.publish_stats({"pages": 2, "failures/timeout": 1})
    status = await read_status(opener.url, "job")
    assert status.stats == {"pages": 6, "items": 5, "failures/timeout": 1}
    assert (status.state, status.queued, status.in_flight, len(status.workers_alive)) == (
        "running",
        2,
        1,
        2,
    )
    result = await asyncio.to_thread(
        CliRunner().invoke,
        status_command,
        ["--frontier", opener.url, "--job", "job", "--sample", "0"],
    )
    assert result.exit_code == 0, result.output
    for expected in ("running", "queued", "2", "in flight", "workers", "2 alive", "pages"):
        assert expected in result.output


async def test_status_of_an_unknown_job_or_an_unreachable_redis(
    opener: Opener, refused_port: int
) -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke, status_command, ["--frontier", opener.url, "--job", "nope"]
    )
    assert result.exit_code == 2
    assert "no crawl named 'nope'" in result.output
    with pytest.raises(ConfigError, match="cannot read job"):
        await read_status(f"redis://127.0.0.1:{refused_port}/0", "job")


# -- a Redis that goes away ---------------------------------------------------------------


async def test_workers_ride_out_a_dropped_connection(opener: Opener) -> None:
    frontier = await opener()
    await frontier.push([req("/1"), req("/2")])
    admin = aioredis.Redis.from_url(opener.url)
    try:
        await admin.client_kill_filter(_type="normal", skipme=True)
    finally:
        await admin.aclose()
    assert await take(frontier, 2) == ["http://a.test/1", "http://a.test/2"]


async def test_nothing_is_lost_when_a_persistent_redis_restarts(tmp_path: Path) -> None:
    async with RedisServer(tmp_path / "aof", persist=True) as server:
        frontier = RedisFrontier(server.url, job="job", flush_interval_s=0)
        await frontier.open()
        try:
            await frontier.push([req(f"/{n}") for n in range(3)])
            first = await lease_now(frontier)
            assert first is not None
            await server.stop()
            assert frontier.status_note() is None
            pending = asyncio.create_task(frontier.lease())  # retries while Redis is down
            note = await noted(frontier)
            assert note.startswith("waiting for Redis (since ") and not pending.done()
            await server.start()
            second = await finish(pending)
            assert second.request.url == "http://a.test/1"
            await frontier.ack(first)
            await frontier.ack(second)
            third = await lease_now(frontier)
            assert third is not None and third.request.url == "http://a.test/2"
            await frontier.ack(third)
            assert await lease_now(frontier) is None
        finally:
            await frontier.close()


async def noted(frontier: RedisFrontier) -> str:
    """Wait until the frontier's status note says it waits for Redis (hang guard: 5 s)."""
    async with asyncio.timeout(5):
        while True:  # polled: the note is a value, not an event
            note = frontier.status_note()
            if note is not None:
                return note
            await asyncio.sleep(0.01)


class Failures:
    """What a frontier with HealthReports told its watcher."""

    def __init__(self, frontier: RedisFrontier, unavailable_timeout_s: float = 300) -> None:
        self.seen: list[FrontierFailed] = []
        assert isinstance(frontier, HealthReports)
        frontier.watch_health(self.seen.append, unavailable_timeout_s)


async def test_a_flushed_job_is_lost_state_not_a_finished_crawl(opener: Opener) -> None:
    seeder, joiner = await opener(), await opener()
    seeder_failures, joiner_failures = Failures(seeder), Failures(joiner)
    assert await seeder.claim_seed() is True
    await seeder.push([req("/1"), req("/2")])
    await seeder.seed_done()
    assert await joiner.claim_seed() is False  # it joins the job: same epoch
    lease = await lease_now(joiner)
    assert lease is not None
    admin = aioredis.Redis.from_url(opener.url)
    try:
        await admin.flushdb()
        assert await lease_now(seeder) is None  # stopped, not "exhausted": see the failure
        [failure] = seeder_failures.seen
        assert isinstance(failure, StateLost) and failure.reason == "state_lost"
        assert "job 'job' is gone from Redis" in str(failure)
        assert "restore Redis from its persistence files" in str(failure)
        assert await admin.get("crawler:{job}:lost") is not None  # the tombstone
        await joiner.ack(lease)
        assert await joiner.push([req("/3")]) == [False]  # the joiner stops at its next call
        assert [type(f) for f in joiner_failures.seen] == [StateLost]
        assert await lease_now(joiner) is None
        with pytest.raises(FrontierFailed):
            await joiner.flush()  # its acks can never be made final
    finally:
        await admin.aclose()
    late = RedisFrontier(opener.url, job="job")
    with pytest.raises(StateLost, match="lost its state while its workers ran"):
        await late.open()  # a worker started later refuses the job at once
    assert (await read_status(opener.url, "job")).state == "lost"
    result = await asyncio.to_thread(
        CliRunner().invoke,
        status_command,
        ["--frontier", opener.url, "--job", "job", "--sample", "0"],
    )
    assert result.exit_code == 11, result.output
    assert "lost" in result.output and "the shared crawl's state was lost" in result.output


async def test_a_job_replaced_under_its_workers_is_lost_state_too(opener: Opener) -> None:
    worker = await opener()
    failures = Failures(worker)
    assert await worker.claim_seed() is True
    await worker.push([req("/1")])
    admin = aioredis.Redis.from_url(opener.url)
    try:
        await admin.set("crawler:{job}:epoch", "another crawl")  # e.g. another backup restored
        assert await lease_now(worker) is None
        [failure] = failures.seen
        assert isinstance(failure, StateLost) and "was replaced by another crawl" in str(failure)
        assert await admin.get("crawler:{job}:lost") is None  # the job lives on: no tombstone
    finally:
        await admin.aclose()


async def test_joining_a_finished_job_finishes_and_a_new_job_is_seeded(opener: Opener) -> None:
    first = await opener()
    assert await first.claim_seed() is True  # no epoch, no tombstone: a new job
    await first.push([req("/1")])
    await first.seed_done()
    lease = await lease_now(first)
    assert lease is not None
    await first.ack(lease)
    assert await lease_now(first) is None
    late = await opener()
    failures = Failures(late)
    assert await late.claim_seed() is False  # the epoch is there: the job exists
    assert await lease_now(late) is None and failures.seen == []  # finished, not lost
    assert (await read_status(opener.url, "job")).state == "finished"


async def test_an_outage_longer_than_the_timeout_fails_and_a_rerun_continues(
    tmp_path: Path,
) -> None:
    async with RedisServer(tmp_path / "aof", persist=True) as server:
        frontier = RedisFrontier(server.url, job="job", flush_interval_s=0, lease_timeout_s=1)
        failures = Failures(frontier, unavailable_timeout_s=1)
        await frontier.open()
        try:
            assert await frontier.claim_seed() is True
            await frontier.push([req("/1"), req("/2")])
            await frontier.seed_done()
            first = await lease_now(frontier)
            assert first is not None
            await server.stop()
            async with asyncio.timeout(10):  # hang guard: the timeout is 1 s
                assert await frontier.lease() is None
            [failure] = failures.seen
            assert isinstance(failure, FrontierUnavailable)
            assert "unreachable for 1 s (REDIS_UNAVAILABLE_TIMEOUT" in str(failure)
            assert frontier.status_note() is None  # no longer waiting: given up
        finally:
            await frontier.close()  # no sign-off: Redis is away
        await server.start()
        rerun = RedisFrontier(server.url, job="job", flush_interval_s=0, lease_timeout_s=1)
        await rerun.open()
        try:
            assert await rerun.claim_seed() is False  # the same job, continued
            got = []
            for _ in range(2):  # /2, and /1: its lease expired and is delivered once more
                lease = await lease_now(rerun)
                assert lease is not None
                got.append(lease.request.url)
                await rerun.ack(lease)
            assert sorted(got) == ["http://a.test/1", "http://a.test/2"]
            assert await lease_now(rerun) is None
            status = await read_status(server.url, "job")
            assert (status.done, status.reclaimed) == (2, 1)
        finally:
            await rerun.close()


async def test_redis_back_with_an_older_state_voids_leases_of_reissued_ids(
    tmp_path: Path,
) -> None:
    """A crash rolls Redis back to its last snapshot: the same job, older. Ids issued since
    are issued again to other requests; the older leases of those ids must not settle them."""
    async with RedisServer(tmp_path / "rdb", persist="rdb") as server:
        frontier = RedisFrontier(server.url, job="job", flush_interval_s=0)
        await frontier.open()
        admin = aioredis.Redis.from_url(server.url)
        try:
            assert await frontier.claim_seed() is True
            await frontier.push([req("/1"), req("/2")])
            await frontier.seed_done()
            await admin.save()  # the snapshot: /1 and /2 queued (ids 1, 2)
            await frontier.push([req("/3")])  # id 3, lost with the crash
            old = [await lease_now(frontier) for _ in range(3)]
            assert [lease.request.url for lease in old if lease] == [
                "http://a.test/1",
                "http://a.test/2",
                "http://a.test/3",
            ]
            await admin.aclose()
            await server.stop(signal.SIGKILL)  # no snapshot at exit: back to the last one
            await server.start()
            admin = aioredis.Redis.from_url(server.url)
            assert await frontier.push([req("/4")]) == [True]  # gets id 3, like /3 before
            new = [await lease_now(frontier) for _ in range(3)]
            assert [lease.request.url for lease in new if lease] == [
                "http://a.test/1",
                "http://a.test/2",
                "http://a.test/4",
            ]
            for lease in old:  # void: none of them settles a request leased again
                assert lease is not None
                await frontier.ack(lease)
            assert await frontier.counts() == FrontierCounts(0, 3, 0, 0)
            for lease in new:
                assert lease is not None
                await frontier.ack(lease)
            assert await frontier.counts() == FrontierCounts(0, 0, 3, 0)
            assert await lease_now(frontier) is None
        finally:
            await admin.aclose()
            await frontier.close()
