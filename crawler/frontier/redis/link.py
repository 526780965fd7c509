"""One process's connection to one job's keys in Redis: calls, retries, errors, wake-ups.

Every Redis call of the frontier goes through :meth:`RedisLink.do`, the one place
where redis-py exceptions become :class:`~crawler.errors.CrawlerError`: a lost
connection (or a replica that is read-only during a fail-over, or a server still
loading its data) is retried with exponential back-off, 50 ms doubling to 5 s. The
first failure of an outage is logged as a warning (the rest at debug level), the
recovery again; :attr:`RedisLink.outage_since` says since when Redis is away. An outage
longer than ``unavailable_timeout_s`` (REDIS_UNAVAILABLE_TIMEOUT, once the frontier is
open) fails the link for good: :class:`~crawler.frontier.base.FrontierUnavailable`. A
script that finds the job's epoch gone or replaced answers with an error reply, which
becomes :class:`~crawler.frontier.base.StateLost` (see :mod:`.prelude`).
:func:`repeat` runs the frontier's background loops (heartbeat, flush).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from yarl import URL

from ...errors import ConfigError, CrawlerError
from ...loglines import get_logger
from ..base import FrontierFailed, FrontierUnavailable, StateLost
from . import scripts as lua

try:
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError:  # pragma: no cover - the package is an optional dependency
    raise ConfigError(
        "FRONTIER_URL=redis://... needs the redis package: pip install 'crawler[redis]'"
    ) from None

__all__ = ["TRANSIENT", "RedisLink", "repeat", "safe_url", "state_lost"]

logger = get_logger("crawler.frontier")

T = TypeVar("T")

TRANSIENT = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError)
"""Errors that pass: the connection, not the request, was the problem."""

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0
_LISTEN_S = 1.0  # longest read on the wake-up channel
_LOST = "CRAWLER_STATE_LOST"  # the error reply of a script that finds the epoch gone or changed
_WHAT_TO_DO = (
    "restore Redis from its persistence files (AOF/RDB) and run the same command again to"
    " continue, or crawl the job anew under a new job name (--job), or after deleting its keys"
)
_SCRIPTS = "PUSH LEASE RELEASE FINALIZE ABANDON RENEW HOLD REFUND CLAIM_SEED SEED_DONE".split()


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT) and not isinstance(exc, redis_errors.AuthenticationError)


def state_lost(how: str) -> StateLost:
    """The one-line error "the shared crawl's state was lost" (``how``: what was found)."""
    return StateLost(
        f"the shared crawl's state was lost: {how} (Redis restarted without its data,"
        " was flushed, or failed over to an empty replica); nothing more is fetched."
        f" To go on, {_WHAT_TO_DO}"
    )


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
        self.epoch = ""  # the job's epoch once this worker joined it ("" before: not checked)
        self.unavailable_timeout_s = 300.0  # an outage this long fails the link ...
        self.watch_outages = False  # ... once the frontier is open
        self.outage_since: float | None = None  # wall-clock time the current outage began
        self.recoveries = 0  # connections lost and found again so far
        self.failure: FrontierFailed | None = None  # the link failed for good
        self.on_failure: Callable[[FrontierFailed], None] | None = None  # told once
        self._outage_began = 0.0  # loop time the current outage began
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

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
        # No retries inside redis-py: every failure reaches do(), which retries and times outages.
        client = aioredis.Redis.from_url(self.url, retry=Retry(NoBackoff(), 0))
        self._client = client
        self.failure = None
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
        """Run the Lua script ``name`` of :mod:`.scripts` on the job's keys."""
        if self._client is None:
            raise self._closed()
        script, args = self._scripts[name], [self.epoch, *args]
        return await self.do(lambda: script(keys=self.keys, args=args), give_up_s)

    async def do(self, call: Callable[[], Awaitable[T]], give_up_s: float | None = None) -> T:
        """``call()``; on a lost connection, again with exponential back-off until it works,
        ``give_up_s`` passed (CrawlerError) or the outage is too long (FrontierUnavailable).
        Redis errors become CrawlerError here, and only here."""
        if self.failure is not None:
            raise self.failure.with_traceback(None)
        for attempt in range(1 if self.outage_since is not None else 2):
            try:  # a second time at once: a pooled connection may be stale (Redis restarted)
                result = await call()
            except redis_errors.RedisError as exc:
                if not _transient(exc):
                    raise self._error(exc) from None
                error: redis_errors.RedisError = exc
            else:
                self.recoveries += attempt  # reconnected: Redis may hold an older state now
                return result
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay_s = _RETRY_FIRST_S
        while True:
            now = loop.time()
            if self.outage_since is None:
                self.outage_since, self._outage_began = time.time(), now
                logger.warning(
                    "frontier %s (job %s): %s; waiting for Redis%s",
                    safe_url(self.url),
                    self.job,
                    error,
                    f" up to {self.unavailable_timeout_s:g} s" if self.watch_outages else "",
                )
            else:
                logger.debug("frontier %s: still waiting for Redis (%s)", self.job, error)
            outage_end = self._outage_began + self.unavailable_timeout_s
            deadline = outage_end if self.watch_outages else float("inf")
            if give_up_s is not None:
                deadline = min(deadline, started + give_up_s)
            if now >= deadline:
                if self.watch_outages and now >= outage_end:
                    raise self.fail(self._unavailable(error))
                raise CrawlerError(f"{self._where()} is unreachable: {error}")
            await asyncio.sleep(min(delay_s + random.uniform(0, _RETRY_FIRST_S), deadline - now))
            delay_s = min(delay_s * 2, _RETRY_MAX_S)
            if self.failure is not None:  # another call gave up meanwhile
                raise self.failure.with_traceback(None)
            try:
                result = await call()
            except redis_errors.RedisError as exc:
                if not _transient(exc):
                    raise self._error(exc) from None
                error = exc
                continue
            if self.outage_since is not None:
                lasted_s = time.time() - self.outage_since
                self.outage_since = None
                self.recoveries += 1
                logger.warning(
                    "frontier %s (job %s): Redis is back after %.1f s",
                    safe_url(self.url),
                    self.job,
                    lasted_s,
                )
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

    def _where(self) -> str:
        return f"Redis frontier {safe_url(self.url)} (job {self.job})"

    def fail(self, failure: FrontierFailed) -> FrontierFailed:
        """Fail the link for good (the first failure counts; ``on_failure`` hears of it)."""
        if self.failure is None:
            self.failure = failure
            if self.on_failure is not None:
                self.on_failure(failure)
        return self.failure

    def _unavailable(self, error: BaseException) -> FrontierUnavailable:
        return FrontierUnavailable(
            f"Redis at {safe_url(self.url)} (job {self.job}) was unreachable for"
            f" {self.unavailable_timeout_s:g} s (REDIS_UNAVAILABLE_TIMEOUT; last error: {error});"
            " the job's state stays in Redis: once Redis is back, run the same command again"
            " to continue the crawl"
        )

    def lost(self, how: str) -> StateLost:
        """The failure "the job's state was lost" (``how``: what this worker found)."""
        return state_lost(how)

    def _error(self, exc: redis_errors.RedisError) -> CrawlerError:
        where = self._where()
        if isinstance(exc, redis_errors.ResponseError) and _LOST in str(exc):
            gone = "replaced" not in str(exc)
            found = "is gone from" if gone else "was replaced by another crawl's state in"
            return self.fail(self.lost(f"job {self.job!r} {found} Redis {safe_url(self.url)}"))
        if isinstance(exc, redis_errors.AuthenticationError):
            return ConfigError(f"{where}: {exc}: check the password in FRONTIER_URL")
        if isinstance(exc, TRANSIENT):
            return CrawlerError(f"{where} is unreachable: {exc}")
        return CrawlerError(f"{where}: {exc} (is maxmemory reached, or the server too old?)")


async def repeat(
    closing: asyncio.Event, interval_s: float, step: Callable[[], Awaitable[None]], what: str
) -> None:
    """``await step()`` every ``interval_s`` until ``closing`` is set; a CrawlerError is
    logged as "``what`` failed", not raised. The loop ends on ``closing``, not only on
    cancellation: redis-py can swallow a cancellation that hits a command."""
    while True:
        try:
            async with asyncio.timeout(interval_s):
                await closing.wait()
            return
        except TimeoutError:
            pass
        try:
            await step()
        except FrontierFailed:
            return  # said once, by the frontier
        except CrawlerError:
            logger.exception("frontier %s failed", what)
