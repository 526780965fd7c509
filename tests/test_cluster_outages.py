"""A shared crawl whose Redis goes away: restarts with and without data, FLUSHDB, outages.

Two real ``crawl run`` workers (see ``test_cluster.py``) crawl the six-host site through
a Redis of their own. Mid-crawl means: the site received 40 requests and holds the 41st
(so one request is in flight across whatever happens to Redis) until the test lets it
go. Then Redis is restarted (with its AOF or RDB files, or empty), flushed, or stopped
for a while, and the test asserts on the workers' exit codes, their last lines and the
union of their outputs. Waits are for evidence (a held request, a log line, an exit);
the timeouts are hang guards only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis_peer import RedisServer
from test_cluster import GUARD_S, Cluster, Site, Worker
from test_cluster import site as site  # the fixture

from crawler.cli.status import status_command
from crawler.frontier.redis import read_status

MID_CRAWL = 40  # the request after this many is held while Redis changes
LOST = "the shared crawl's state was lost"
EXIT_STATE_LOST = 11
EXIT_UNAVAILABLE = 12


@pytest.fixture
async def redis_params(request: pytest.FixtureRequest) -> bool | str:
    return getattr(request, "param", False)


@pytest.fixture
async def redis(tmp_path: Path, redis_params: bool | str) -> AsyncIterator[RedisServer]:
    """A redis-server of the test's own (it is stopped and restarted)."""
    server = RedisServer(tmp_path / "redis", persist=redis_params)
    async with server:
        yield server


@pytest.fixture
async def cluster(tmp_path: Path, site: Site, redis: RedisServer) -> AsyncIterator[Cluster]:
    site.workers = 2
    site.trap_after = MID_CRAWL
    cluster = Cluster(tmp_path, site, redis)
    yield cluster
    site.killed.set()
    await cluster.kill_leftovers()


async def mid_crawl(site: Site) -> None:
    """Wait until the site holds the request after the first MID_CRAWL."""
    async with asyncio.timeout(GUARD_S):
        await site.trapped.wait()


async def logged(worker: Worker, text: str) -> None:
    """Wait until ``worker``'s log holds ``text`` (polls the file; GUARD_S at most)."""
    async with asyncio.timeout(GUARD_S):
        while text not in worker.log.read_text():
            if worker.process.returncode is not None:
                raise AssertionError(f"{worker.name} exited before logging {text!r}")
            await asyncio.sleep(0.02)


def last_line(worker: Worker) -> str:
    return worker.log.read_text().rstrip("\n").rsplit("\n", 1)[-1]


def union(workers: list[Worker]) -> set[str]:
    return {url for worker in workers for url in worker.items()}


def refetched(site: Site) -> int:
    return sum(len(agents) - 1 for agents in site.fetched_by.values())


@pytest.mark.parametrize("redis_params", ["aof", "rdb"], indirect=True)
async def test_a_restart_with_persistence_loses_nothing(
    site: Site, cluster: Cluster, redis: RedisServer
) -> None:
    workers = await cluster.start("persist", 2)
    await mid_crawl(site)
    await redis.stop()  # SIGTERM: the AOF is fsynced at every write; the RDB written now
    await redis.start()
    site.killed.set()  # the request held across the restart completes now
    await cluster.finish(workers)
    assert union(workers) == site.urls()  # every page, over both outputs
    status = await read_status(redis.url, "persist")  # each request counted done once
    assert (status.state, status.done, status.queued) == ("finished", len(site.urls()), 0)
    assert refetched(site) <= status.reclaimed  # only re-delivered leases were fetched again


@pytest.mark.parametrize("loss", ["restart-empty", "flushdb"])
async def test_lost_state_stops_every_worker_and_is_never_the_end(
    site: Site, cluster: Cluster, redis: RedisServer, loss: str
) -> None:
    workers = await cluster.start("lost", 2)
    await mid_crawl(site)
    if loss == "flushdb":
        await redis.flushdb()
    else:
        await redis.stop()  # no persistence: it comes back empty
        await redis.start()
    site.killed.set()
    await cluster.finish(workers, EXIT_STATE_LOST)
    for worker in workers:
        log = worker.log.read_text()
        assert last_line(worker).startswith(f"error: {LOST}: job 'lost'"), log[-2000:]
        assert "restore Redis from its persistence files" in last_line(worker)
        assert "crawl finished" not in log and "Traceback" not in log, log[-2000:]
    assert union(workers) < site.urls()  # it did stop midway

    # `crawl status` gives the same verdict, and a worker started now refuses the job.
    result = await asyncio.to_thread(
        CliRunner().invoke,
        status_command,
        ["--frontier", redis.url, "--job", "lost", "--sample", "0"],
    )
    assert result.exit_code == EXIT_STATE_LOST, result.output
    assert "lost" in result.output and LOST in result.output
    [late] = await cluster.start("lost", 1)
    await cluster.finish([late], EXIT_STATE_LOST)
    assert last_line(late).startswith(f"error: {LOST}"), late.log.read_text()[-2000:]


@pytest.mark.parametrize("redis_params", ["aof"], indirect=True)
async def test_a_short_outage_is_waited_out_visibly(
    site: Site, cluster: Cluster, redis: RedisServer
) -> None:
    settings = ["PROGRESS_INTERVAL=0.1", "REDIS_UNAVAILABLE_TIMEOUT=60"]
    workers = await cluster.start("short", 2, settings)
    await mid_crawl(site)
    await redis.stop()
    for worker in workers:  # every worker shows the wait in its progress lines
        await logged(worker, "; waiting for Redis (since ")
    await redis.start()
    site.killed.set()
    await cluster.finish(workers)
    for worker in workers:
        log = worker.log.read_text()
        assert "waiting for Redis up to 60 s" in log and "Redis is back after" in log
        assert "Traceback" not in log, log[-2000:]
    assert union(workers) == site.urls()
    status = await read_status(redis.url, "short")  # no lease counted twice
    assert (status.state, status.done, status.queued) == ("finished", len(site.urls()), 0)
    assert refetched(site) <= status.reclaimed  # only re-delivered leases were fetched again


@pytest.mark.parametrize("redis_params", ["aof"], indirect=True)
async def test_a_long_outage_stops_with_12_and_a_rerun_continues(
    site: Site, cluster: Cluster, redis: RedisServer
) -> None:
    settings = ["REDIS_UNAVAILABLE_TIMEOUT=1"]
    first = await cluster.start("long", 2, settings)
    await mid_crawl(site)
    await redis.stop()
    site.killed.set()  # the request in flight completes during the outage
    await cluster.finish(first, EXIT_UNAVAILABLE)
    for worker in first:
        line, log = last_line(worker), worker.log.read_text()
        assert line.startswith("error: Redis at redis://127.0.0.1:"), log[-2000:]
        assert "unreachable for 1 s" in line and "run the same command again" in line, line
        assert "waiting for Redis up to 1 s" in log and "Traceback" not in log, log[-2000:]
    before = union(first)
    assert before < site.urls()

    await redis.start()
    again = await cluster.start("long", 2, settings)  # the same commands, the same outputs
    await cluster.finish(again)
    assert union(again) == site.urls()  # both runs' items, in the same files
    status = await read_status(redis.url, "long")  # leases of the first run re-delivered once
    assert (status.state, status.done, status.queued) == ("finished", len(site.urls()), 0)
    assert refetched(site) <= status.reclaimed
