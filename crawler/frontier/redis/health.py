"""Whether a worker's shared crawl can go on: joining a job, Redis outages, lost state.

**The epoch.** The worker that seeds a job writes a random token, the job's epoch,
with its ``seeded`` mark (``CLAIM_SEED``); the others read it when they join. From
then on every script the worker runs checks it (:mod:`.prelude`). The rule for
"new job or lost state":

- no ``seeded`` mark, no epoch and no ``lost`` tombstone: a new job; this worker seeds it;
- an epoch: the job exists; this worker joins it. Empty queues, nothing leased and the
  seeding done mean the job is finished, and only that;
- a worker that joined finds the epoch gone: Redis lost the job's state while it ran.
  It writes the ``lost`` tombstone (the epoch it lost) and stops, as every other worker
  does at its next Redis call (``crawl run`` exits 11). A worker started later finds the
  tombstone and refuses the job at once, with the same message, and ``crawl status``
  says "lost": a job whose state was lost is never taken for finished, nor silently
  started over. The tombstone goes away with the job's keys, or when Redis is restored
  from its persistence files (they predate it);
- a worker that joined finds another epoch: the job was replaced (another crawl's
  state restored, or seeded anew); it stops the same way, writing no tombstone.

Redis keeps no trace of a job it lost while no worker was running (say every worker
stopped at REDIS_UNAVAILABLE_TIMEOUT, then Redis came back empty): the next worker finds
no epoch and no tombstone and seeds the job anew. It crawls everything again (the outputs
then hold the pages of the first run twice); it never reports a finish it did not crawl.

**Outages** (:mod:`.link`): calls wait for Redis, in-flight requests go on, leases wait;
:meth:`Health.note` says since when. After REDIS_UNAVAILABLE_TIMEOUT the link fails with
FrontierUnavailable (exit 12): the job's state stays in Redis and a rerun continues it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

from ...loglines import get_logger
from ..base import FrontierCounts, FrontierFailed
from .link import RedisLink, safe_url

__all__ = ["Health", "join"]

logger = get_logger("crawler.frontier")

T = TypeVar("T")

_COUNTS_WAIT_S = 2.0  # longest a progress line waits for the counts before showing the last
_OPEN_GIVE_UP_S = 30.0


async def join(link: RedisLink, args: list[object]) -> bool:
    """Claim the seeding of the job or join it (``args``: now, worker, seeding ttl_ms);
    True if this worker seeds it. The job's epoch is then checked by every script."""
    kind, epoch = await link.script("CLAIM_SEED", [*args, os.urandom(8).hex()])
    if int(kind) == 2:
        raise link.fail(link.lost(f"job {link.job!r} in Redis {safe_url(link.url)} lost its state"))
    link.epoch = epoch.decode()
    return int(kind) == 1


class Health:
    """The failure of one worker's link to its job: who is told, what progress lines say."""

    def __init__(self, link: RedisLink, stop: Callable[[], None]) -> None:
        self.link = link
        self.stop = stop  # the frontier's: no more leases
        self._on_failure: Callable[[FrontierFailed], None] | None = None
        self._counts = FrontierCounts(0, 0, 0, 0)
        link.on_failure = self._failed

    def watch(self, on_failure: Callable[[FrontierFailed], None], timeout_s: float) -> None:
        """Tell ``on_failure`` when the link fails; wait out outages up to ``timeout_s``."""
        self._on_failure = on_failure
        self.link.unavailable_timeout_s = timeout_s

    def note(self) -> str | None:
        """Say "waiting for Redis (since HH:MM:SS)" during an outage, else None."""
        since = self.link.outage_since
        if since is None or self.link.failure is not None:
            return None
        return f"waiting for Redis (since {time.strftime('%H:%M:%S', time.localtime(since))})"

    async def refuse_lost_job(self) -> None:
        """Raise StateLost if a worker found the job's state lost (its tombstone is there)."""
        link = self.link
        client = link.client
        lost = await link.do(lambda: client.get(link.key("lost")), _OPEN_GIVE_UP_S)
        if lost is not None:
            where = f"job {link.job!r} in Redis {safe_url(link.url)}"
            raise link.lost(f"{where} lost its state while its workers ran")

    @overload
    async def guard(self, call: Awaitable[T], default: T) -> T: ...
    @overload
    async def guard(self, call: Awaitable[T]) -> T | None: ...
    async def guard(self, call: Awaitable[T], default: T | None = None) -> T | None:
        """``await call``, or ``default`` once the link failed (the crawl stops; said once)."""
        try:
            return await call
        except FrontierFailed:
            return default

    async def counts(
        self,
        send: Callable[[], Awaitable[None]],
        read: Callable[[RedisLink], Awaitable[FrontierCounts]],
    ) -> FrontierCounts:
        """The job's counts after ``send()``ing this worker's releases; the last ones
        read while Redis is away or failed (a progress line must not wait for Redis)."""
        link = self.link
        if link.outage_since is None and link.failure is None:
            try:
                async with asyncio.timeout(_COUNTS_WAIT_S):
                    await send()
                    self._counts = await read(link)
            except (TimeoutError, FrontierFailed):
                pass
        return self._counts

    def _failed(self, failure: FrontierFailed) -> None:
        self.stop()
        if self._on_failure is not None:
            self._on_failure(failure)
        else:  # nobody watches (the frontier used on its own): say it here
            logger.error("frontier %s: %s", self.link.job, failure)
