"""One process's connection to one job's keys in Redis: calls, retries, errors, wake-ups.

Every Redis call of the frontier goes through :meth:`RedisLink.do`, the one place
where redis-py exceptions become :class:`~crawler.errors.CrawlerError`: a lost
connection (or a replica that is read-only during a fail-over, or a server still
loading its data) is retried with exponential back-off, 50 ms doubling to 5 s,
forever unless the caller gives a deadline; the first failure of an outage is
logged as a warning, the rest at debug level, and the recovery again as a warning.
:func:`repeat` runs the frontier's background loops (heartbeat, flush).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
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

from ...errors import ConfigError, CrawlerError
from ...loglines import get_logger
from . import scripts as lua

try:
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors
except ImportError:  # pragma: no cover - the package is an optional dependency
    raise ConfigError(
        "FRONTIER_URL=redis://... needs the redis package: pip install 'crawler[redis]'"
    ) from None

__all__ = ["TRANSIENT", "RedisLink", "repeat", "safe_url"]

logger = get_logger("crawler.frontier")

T = TypeVar("T")

TRANSIENT = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ReadOnlyError)
"""Errors that pass: the connection, not the request, was the problem."""

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0
_LISTEN_S = 1.0  # longest read on the wake-up channel
_SCRIPTS = "PUSH LEASE RELEASE FINALIZE ABANDON RENEW HOLD REFUND CLAIM_SEED SEED_DONE".split()


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
        """Run the Lua script ``name`` of :mod:`.scripts` on the job's keys."""
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
        except CrawlerError:
            logger.exception("frontier %s failed", what)
