"""A job's progress across every process: the stats each one publishes, and ``crawl status``.

Each process adds what its counters gained since its last report to the job's
``stats`` hash (:class:`PublishedStats`), so the hash sums the whole cluster;
:func:`read_status` reads it with the job's counts, workers and seeding state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ...errors import ConfigError
from ..base import FrontierCounts
from . import scripts as lua
from .link import RedisLink, safe_url

__all__ = ["ClusterStatus", "PublishedStats", "read_counts", "read_status"]


async def read_counts(link: RedisLink) -> FrontierCounts:
    """Queued / in flight / done / failed of the whole job, from its ``counts`` hash."""
    client, key = link.client, link.key("counts")
    names = ["queued", "in_flight", "done", "failed"]
    values = await link.do(lambda: client.hmget(key, names))
    queued, in_flight, done, failed = (int(value or 0) for value in values)
    return FrontierCounts(queued, in_flight, done, failed)


class PublishedStats:
    """This process's share of the job's stats hash: what it has added so far."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._published: dict[str, int] = {}

    async def publish(self, counters: Mapping[str, int]) -> None:
        """Add what ``counters`` (running totals) gained since the last call to the hash."""
        published = self._published
        deltas = {
            key: value - published.get(key, 0)
            for key, value in counters.items()
            if isinstance(value, int) and value != published.get(key, 0)
        }
        if not deltas:
            return
        link = self.link
        client, key = link.client, link.key("stats")

        async def send() -> None:
            async with client.pipeline(transaction=True) as pipe:
                for name, delta in deltas.items():
                    pipe.hincrby(key, name, delta)
                await pipe.execute()

        await link.do(send)
        for name, delta in deltas.items():
            published[name] = published.get(name, 0) + delta

    def clear(self) -> None:
        """Forget what was added (the job's keys were deleted)."""
        self._published.clear()


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """A crawl's progress across every process, as ``crawl status`` shows it."""

    job: str
    state: str  # "not started", "seeding", "running", "finished" or "lost" (see health.py)
    queued: int  # pending, and retries waiting (``delayed``) among them
    delayed: int
    in_flight: int
    unflushed: int  # handled, not yet made final by their worker's flush
    done: int
    failed: int
    reclaimed: int  # leases re-delivered after their worker went silent
    workers_alive: list[str]
    workers_gone: list[str]
    stats: dict[str, int] = field(default_factory=dict)
    started_at: float | None = None
    server_time: float = 0.0


async def read_status(url: str, job: str) -> ClusterStatus:
    """The progress of ``job`` in the Redis at ``url``; ConfigError if it is unreachable."""
    prefix = lua.job_prefix(job)
    client = aioredis.Redis.from_url(url, retry=None, socket_connect_timeout=5)
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.hgetall(prefix + "counts")
            pipe.hgetall(prefix + "stats")
            pipe.hgetall(prefix + "meta")
            pipe.zrange(prefix + "workers", 0, -1, withscores=True)
            pipe.zcard(prefix + "retry")
            pipe.zcard(prefix + "leases")
            pipe.exists(prefix + "seeded")
            pipe.exists(prefix + "seeding")
            pipe.exists(prefix + "lost")
            replies = await pipe.execute()
    except redis_errors.RedisError as exc:
        raise ConfigError(f"cannot read job {job!r} from {safe_url(url)}: {exc}") from None
    finally:
        await client.aclose()
    (secs, usecs), counts, stats, meta, workers, delayed, leases, seeded, seeding, lost = replies
    now = secs + usecs / 1e6
    number = {k.decode(): int(v) for k, v in counts.items()}
    timeout = float(meta.get(b"lease_timeout_s", 60))
    alive: list[str] = []
    gone: list[str] = []
    for worker, beat in workers:
        (alive if beat >= now - timeout else gone).append(worker.decode())
    queued = number.get("queued", 0)
    if lost:
        state = "lost"
    elif seeding:
        state = "seeding"
    elif not seeded:
        state = "not started"
    elif queued <= 0 and not leases:
        state = "finished"
    else:
        state = "running"
    started = meta.get(b"started_at")
    return ClusterStatus(
        job=job,
        state=state,
        queued=queued,
        delayed=delayed,
        in_flight=number.get("in_flight", 0),
        unflushed=leases - number.get("in_flight", 0),
        done=number.get("done", 0),
        failed=number.get("failed", 0),
        reclaimed=number.get("reclaimed", 0),
        workers_alive=alive,
        workers_gone=gone,
        stats={k.decode(): int(v) for k, v in stats.items()},
        started_at=float(started) if started else None,
        server_time=now,
    )
