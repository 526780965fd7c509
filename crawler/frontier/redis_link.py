"""One process's connection to one job's keys in Redis: calls, retries, errors, wake-ups.

Every Redis call of the frontier goes through :meth:`RedisLink.do`, the one place
where redis-py exceptions become :class:`~crawler.errors.CrawlerError`: a lost
connection (or a replica that is read-only during a fail-over, or a server still
loading its data) is retried with exponential back-off, 50 ms doubling to 5 s,
forever unless the caller gives a deadline; the first failure of an outage is
logged as a warning, the rest at debug level, and the recovery again as a warning.
:func:`read_status` reads a job's progress for ``crawl status``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_exponential,
    wait_random,
)
from yarl import URL

from ..errors import ConfigError, CrawlerError
from ..loglines import get_logger
from . import redis_scripts as lua

try:
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
except ImportError:  # pragma: no cover - the package is an optional dependency
    raise ConfigError(
        "FRONTIER_URL=redis://... needs the redis package: pip install 'crawler[redis]'"
    ) from None

__all__ = ["TRANSIENT", "ClusterStatus", "RedisLink", "read_status", "safe_url"]

logger = get_logger("crawler.frontier")

T = TypeVar("T")

TRANSIENT = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError)
"""Errors that pass: the connection, not the request, was the problem."""

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0
_LISTEN_S = 1.0  # longest read on the wake-up channel
_SCRIPTS = "PUSH LEASE RELEASE FINALIZE ABANDON RENEW HOLD CLAIM_SEED SEED_DONE".split()


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT) and not isinstance(exc, redis_errors.AuthenticationError)


def safe_url(url: str) -> str:
    """``url`` without its password (for logs and errors)."""
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else url


class RedisLink:
    """The client, the Lua scripts and the key prefix of one job, with retrying calls."""

    def __init__(self, url: str, job: str) -> None:
        self.url = url
        self.job = job
        self.keys = [lua.job_prefix(job)]
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._outage = False

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client; CrawlerError when the link is closed."""
        if self._client is None:
            raise self._closed()
        return self._client

    @property
    def is_open(self) -> bool:
        """True between ``open()`` and ``close()``."""
        return self._client is not None

    def open(self) -> None:
        """Create the client (it connects on first use) and register the scripts."""
        client = aioredis.Redis.from_url(self.url)
        self._client = client
        self._scripts = {name: client.register_script(getattr(lua, name)) for name in _SCRIPTS}

    async def close(self) -> None:
        """Disconnect."""
        client, self._client = self._client, None
        self._scripts = {}
        if client is not None:
            await client.aclose()

    def key(self, name: str) -> str:
        """The full name of the job's key ``name``."""
        return self.keys[0] + name

    async def script(self, name: str, args: list[Any], give_up_s: float | None = None) -> Any:
        """Run the Lua script ``name`` of :mod:`.redis_scripts` on the job's keys."""
        if self._client is None:
            raise self._closed()
        script = self._scripts[name]
        return await self.do(lambda: script(keys=self.keys, args=args), give_up_s)

    async def do(self, call: Callable[[], Awaitable[T]], give_up_s: float | None = None) -> T:
        """``call()``; on a lost connection, again with exponential back-off (forever, or
        until ``give_up_s``). Redis errors become CrawlerError here, and only here."""
        try:
            return await call()
        except redis_errors.RedisError as exc:
            if not _transient(exc):
                raise self._error(exc) from None
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            wait=wait_exponential(multiplier=_RETRY_FIRST_S, max=_RETRY_MAX_S)
            + wait_random(0, _RETRY_FIRST_S),
            stop=stop_never if give_up_s is None else stop_after_delay(give_up_s),
            before_sleep=self._log_retry,
            reraise=True,
        )

        async def attempt() -> T:
            return await call()

        try:
            result: T = await retrying(attempt)
        except redis_errors.RedisError as exc:
            raise self._error(exc) from None
        if self._outage:
            self._outage = False
            logger.warning("frontier %s (job %s): Redis is back", safe_url(self.url), self.job)
        return result

    async def listen(self, on_message: Callable[[], None], running: Callable[[], bool]) -> None:
        """Call ``on_message()`` for every wake-up published on the job's channel, while
        ``running()``; resubscribes after a lost connection. Reads with a timeout: redis-py
        may swallow a cancellation that arrives while it (re)subscribes."""
        pubsub: Any = None
        delay_s = 0.1
        try:
            while running():
                try:
                    if pubsub is None:
                        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                        await pubsub.subscribe(self.key("wake"))
                    if await pubsub.get_message(timeout=_LISTEN_S) is not None:
                        on_message()
                    delay_s = 0.1
                except TRANSIENT as exc:
                    logger.debug("frontier %s: wake-up channel lost (%s)", self.job, exc)
                    if pubsub is not None:
                        await pubsub.aclose()
                        pubsub = None
                    await asyncio.sleep(delay_s)
                    delay_s = min(delay_s * 2, _RETRY_MAX_S)
        finally:
            if pubsub is not None:
                await pubsub.aclose()

    async def delete_job(self) -> None:
        """Delete every key of the job."""
        client = self.client
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.keys[0]) + "*"

        async def delete_all() -> None:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await client.unlink(*batch)
                    batch = []
            if batch:
                await client.unlink(*batch)

        await self.do(delete_all)

    def _closed(self) -> CrawlerError:
        return CrawlerError(f"the Redis frontier (job {self.job}) is not open: open() it first")

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait_s = state.next_action.sleep if state.next_action is not None else 0.0
        level = logging.DEBUG if self._outage else logging.WARNING
        self._outage = True
        logger.log(
            level,
            "frontier %s (job %s): %s; retrying in %.2f s",
            safe_url(self.url),
            self.job,
            exc,
            wait_s,
        )

    def _error(self, exc: redis_errors.RedisError) -> CrawlerError:
        where = f"Redis frontier {safe_url(self.url)} (job {self.job})"
        if isinstance(exc, redis_errors.AuthenticationError):
            return ConfigError(f"{where}: {exc}: check the password in FRONTIER_URL")
        if isinstance(exc, TRANSIENT):
            return CrawlerError(f"{where} is unreachable: {exc}")
        return CrawlerError(f"{where}: {exc} (is maxmemory reached, or the server too old?)")


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """A crawl's progress across every process, as ``crawl status`` shows it."""

    job: str
    state: str  # "not started", "seeding", "running" or "finished"
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
            replies = await pipe.execute()
    except redis_errors.RedisError as exc:
        raise ConfigError(f"cannot read job {job!r} from {safe_url(url)}: {exc}") from None
    finally:
        await client.aclose()
    (secs, usecs), counts, stats, meta, workers, delayed, leases, seeded, seeding = replies
    now = secs + usecs / 1e6
    number = {k.decode(): int(v) for k, v in counts.items()}
    timeout = float(meta.get(b"lease_timeout_s", 60))
    alive: list[str] = []
    gone: list[str] = []
    for worker, beat in workers:
        (alive if beat >= now - timeout else gone).append(worker.decode())
    queued = number.get("queued", 0)
    if seeding:
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
