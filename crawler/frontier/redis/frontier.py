"""The Redis frontier: one crawl shared by every process started with the same URL and job.

Each step is one Lua script (key layout and scripts: :mod:`.scripts`), so
processes on different machines never see a half-done change:

- ``push`` de-duplicates against the job's fingerprint set and queues the new
  requests in their hosts' priority queues, in one step.
- ``lease`` first re-queues expired leases and due retries, then takes the best
  request of the most urgent ready host, counts it in flight for that host
  (``CONCURRENCY_PER_HOST`` holds for the whole cluster), sets the host's next
  allowed start (``DOWNLOAD_DELAY``, one clock for everyone: Redis ``TIME``) and
  records a lease with a deadline ``lease_timeout_s`` ahead.
- A heartbeat renews this process's leases every ``lease_timeout_s / 3``; a dead
  process's leases expire and the next ``lease`` anywhere re-queues them (at least once).
- ``ack`` / ``fail`` / ``retry`` ride with the next ``lease`` (:mod:`.releases`); an acked
  request stays leased until the engine's next ``flush()``, after the items are written.
- The crawl is exhausted for everyone when nothing is queued, delayed or leased
  and nobody is still seeding; every waiting ``lease`` then returns None.

Idle workers wait as :mod:`.waiting` says. Redis calls are retried through outages
(:mod:`.link`) for up to REDIS_UNAVAILABLE_TIMEOUT; the job's epoch tells a lost state
from a finished crawl (:mod:`.health`).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...clock import Clock, MonotonicClock
from ...errors import ConfigError, CrawlerError
from ...fingerprint import fingerprint
from ...loglines import get_logger
from ...request import Request
from ..base import FrontierCounts, FrontierFailed, Lease, PolitenessPolicy
from ..codec import RequestCodec
from ..seen import SeenCache
from . import scripts as lua
from .delays import HostDelays
from .health import Health, join
from .held import HeldLeases
from .link import RedisLink, repeat, safe_url
from .releases import Releases
from .status import PublishedStats, read_counts
from .waiting import PolledWaiters

__all__ = ["RedisFrontier"]

logger = get_logger("crawler.frontier")

_OUTCOMES = {b"D": "ack", b"F": "fail", b"R": "retry"}

_MOVES = 64  # expired leases / due retries / due hosts handled per lease call
_CONNECT_GIVE_UP_S = 30.0
_KNOWN_MAX = 65_536  # fingerprints remembered per process to skip known duplicates


class RedisFrontier:
    """Frontier shared through Redis by every process with the same ``url`` and ``job``.

    ``spider`` resolves stored callbacks by name (see :mod:`crawler.frontier.codec`).
    ``flush_interval_s``: how often acks are made final on their own (``math.inf``:
    only at ``flush()``, when the engine checkpoints; 0: at once). ``server_time``:
    schedule with Redis ``TIME`` (False: with ``clock``, for single-clock tests).
    """

    def __init__(
        self,
        url: str,
        *,
        job: str,
        policy: PolitenessPolicy | None = None,
        clock: Clock | None = None,
        spider: object | None = None,
        lease_timeout_s: float = 60.0,
        flush_interval_s: float = 1.0,
        server_time: bool = True,
    ) -> None:
        if not job:
            raise ConfigError("a Redis frontier needs a job name (JOB / --job)")
        self.job = job
        self.policy = policy or PolitenessPolicy()
        self.clock: Clock = clock or MonotonicClock()
        self.lease_timeout_s = lease_timeout_s
        self.flush_interval_s = flush_interval_s
        self._final = "1" if flush_interval_s <= 0 else "0"  # acks final at once (no interval)
        self._seeding_ttl_ms = max(1000, int(lease_timeout_s * 1000))
        self.server_time = server_time
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self._link = RedisLink(url, job)
        self._codec = RequestCodec(spider)
        self._rng = random.Random()
        self._waiters = PolledWaiters(self.clock)
        self._known = SeenCache(_KNOWN_MAX)  # fingerprints known to be in the seen set
        self._held = HeldLeases(job)  # lease -> its request id
        self._releases = Releases(
            self._link,
            self.worker,
            lambda: [self._now(), self.worker, self._limit, self._final],
            final=flush_interval_s <= 0,
            on_ready=self._waiters.wake_one,
        )
        self._stats = PublishedStats(self._link)
        self._health = Health(self._link, self.stop)
        self._delays = HostDelays(
            self._link,
            self._health,
            lambda: [self._now(), self._limit],
            self._waiters.wake,
            self.clock,
        )
        self._known_at = 0  # the link's recoveries when ``_known`` was last trusted
        self._seeding = False
        self._stopped = False
        self._closing = asyncio.Event()  # ends the background tasks (see link.repeat)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        """The Redis URL."""
        return self._link.url

    # -- open / close -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (retrying for up to 30 s), register this worker, start the heartbeat."""
        link = self._link
        if link.is_open:
            return
        link.open()
        client = link.client
        self._stopped = False
        self._closing = asyncio.Event()
        try:
            meta, timeout = link.key("meta"), self.lease_timeout_s
            await link.do(lambda: client.hset(meta, "lease_timeout_s", timeout), _CONNECT_GIVE_UP_S)
            await self._health.refuse_lost_job()
            if self.policy.host_delays:
                delays = [item for pair in self.policy.host_delays.items() for item in pair]
                await link.do(lambda: client.hset(link.key("pdelay"), items=delays))
            await self._renew()
        except BaseException as exc:
            await link.close()
            if isinstance(exc, CrawlerError) and not isinstance(exc, ConfigError | FrontierFailed):
                raise ConfigError(f"cannot use the Redis frontier: {exc}") from None
            raise
        link.watch_outages = True  # from now on, an outage may last REDIS_UNAVAILABLE_TIMEOUT
        closing, job = self._closing, self.job
        loops = {
            "heartbeat": repeat(
                closing, self.lease_timeout_s / 3, self._renew, f"{job}: heartbeat"
            ),
            "wake-ups": link.listen(self._waiters.wake_one, lambda: not closing.is_set()),
        }
        if 0 < self.flush_interval_s < float("inf"):
            flush = self._releases.finalize
            loops["flush"] = repeat(closing, self.flush_interval_s, flush, f"{job}: flush")
        self._tasks = [
            asyncio.create_task(loop, name=f"{name} {job}") for name, loop in loops.items()
        ]

    async def close(self) -> None:
        """Stop; send acks (final only if flushed), give leases still held back, disconnect."""
        self.stop()
        link = self._link
        if not link.is_open:
            return
        self._waiters.cancel_timer()
        self._closing.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        give_up_s = self.lease_timeout_s  # after that, the leases expire anyway
        if link.failure is not None:  # Redis is away or lost the job: nothing to sign off
            await link.close()
            return
        held = self._held.keys()
        self._held.clear()
        try:
            await self._releases.sign_off(held, give_up_s)
        except CrawlerError as exc:
            logger.warning(
                "frontier %s (job %s): could not sign off (%s); this worker's leases"
                " will be re-delivered after %.0f s",
                safe_url(self.url),
                self.job,
                exc,
                self.lease_timeout_s,
            )
        finally:
            await link.close()

    async def reset(self) -> None:
        """Delete every key of this job (``--restart``); opens the connection if needed."""
        if not self._link.is_open:
            await self.open()
            try:
                await self.reset()
            finally:
                await self.close()
            return
        await self._link.delete_job()
        self._link.epoch = ""
        for state in (self._known, self._held, self._delays, self._stats):
            state.clear()
        self._releases.clear()
        await self._renew()

    # -- the Frontier protocol --------------------------------------------------------

    async def push(self, requests: Sequence[Request]) -> list[bool]:
        """Queue new requests; duplicates (by fingerprint, cluster-wide) are refused.

        Fingerprints this process already saw in the seen set are refused without asking
        Redis (the set only grows): most links of a page are such duplicates."""
        known = self._seen
        accepted = [False] * len(requests)
        sent: list[int] = []
        fps: list[bytes] = []
        args: list[Any] = [self._now(), self._limit]
        for index, request in enumerate(requests):
            fp = fingerprint(request)
            if fp in known and not request.dont_filter:
                continue
            priority = max(-lua.PRIORITY_LIMIT, min(lua.PRIORITY_LIMIT, request.priority))
            args += (fp, int(request.dont_filter), request.host, priority)
            args.append(self._codec.encode(request))
            sent.append(index)
            fps.append(fp)
        if not sent:
            return accepted
        reply = await self._health.guard(self._link.script("PUSH", args))
        if reply is None:
            return accepted  # the crawl stops (the health callback said why)
        ready = int(reply.pop())
        for index, flag in zip(sent, reply, strict=True):
            accepted[index] = bool(flag)
        self._known.add(fps)
        if ready:
            self._waiters.wake(ready)
        return accepted

    async def add_seen(self, fingerprint: bytes) -> bool:
        """Record a fingerprint (cluster-wide); True if it was new."""
        if fingerprint in self._seen:
            return False
        link, client = self._link, self._link.client
        call = link.do(lambda: client.sadd(link.key("seen"), fingerprint))
        added = await self._health.guard(call)
        self._known.add((fingerprint,))
        return bool(added)

    async def lease(self) -> Lease | None:
        """Wait until a request's host is ready anywhere in the cluster; None when exhausted."""
        while True:
            if self._stopped or not self._link.is_open:
                return None
            jitter = self.policy.jitter
            factor = self._rng.uniform(1.0 - jitter, 1.0 + jitter) if jitter else 1.0
            args = [self._now(), self.worker, self.lease_timeout_s, self._limit]
            args += (self.policy.delay_s, factor, _MOVES, self._final)
            batch = self._releases.take(args)  # this worker's acks ride along
            reply = None
            try:
                reply = await self._link.script("LEASE", args)
            except FrontierFailed:
                return None  # the crawl stops (the health callback said why)
            finally:
                self._releases.settle(batch, None if reply is None else reply[0])
            kind = int(reply[1])
            if kind == 1:
                rid, data, host, still_ready = reply[2], reply[3], reply[4].decode(), reply[5]
                lease = self._make_lease(rid, data, host)
                if lease is None:
                    continue
                self._waiters.found()
                if still_ready and self._waiters:
                    self._waiters.wake(1)  # more is ready: let the next idle worker take it
                return lease
            if kind == 0:
                self._waiters.wake_all()  # exhausted: release everybody
                return None
            await self._waiters.wait_hint(float(reply[2]) if reply[2] else None)

    async def ack(self, lease: Lease) -> None:
        """The request was handled: its slot is freed with this process's next Redis call
        (usually its next lease); the ack is final at the next flush."""
        self._give_back(lease, b"D")

    async def fail(self, lease: Lease, reason: str) -> None:
        """The request finally failed for ``reason``."""
        self._give_back(lease, b"F")

    async def retry(self, lease: Lease, delay_s: float) -> None:
        """Re-queue the request (as it is now, meta included) once ``delay_s`` seconds passed."""
        data = await self._codec.encode_retry(lease, self.fail)
        self._give_back(lease, b"R", delay_s, data)

    async def set_host_delay(self, host: str, delay_s: float | None) -> None:
        """Override the delay between requests to ``host`` for the whole cluster."""
        await self._delays.set(host, delay_s)

    async def hold_host(self, host: str, delay_s: float) -> None:
        """Start no request to ``host`` anywhere for ``delay_s`` seconds."""
        await self._delays.hold(host, delay_s)

    async def refund_delay(self, host: str, since: float) -> None:
        """Give back the delay of this process's last lease of ``host`` if it was leased by
        ``since`` and no lease anywhere (nor a hold) set the host's delay after it."""
        await self._delays.refund(host, since)

    def stop(self) -> None:
        """Make every current and future ``lease`` of this process return None."""
        self._stopped = True
        self._waiters.wake_all()

    async def claim_seed(self) -> bool:
        """True for the first process of the job: it pushes the start requests."""
        self._seeding = await self._health.guard(
            join(self._link, [self._now(), self.worker, self._seeding_ttl_ms]), False
        )
        return self._seeding

    async def seed_done(self) -> None:
        """The start requests are all pushed: from now on the crawl may end."""
        if self._seeding:
            self._seeding = False
            await self._health.guard(self._link.script("SEED_DONE", [self.worker]))

    async def flush(self) -> None:
        """Make the acks and failures since the last flush final."""
        await self._releases.send()
        await self._releases.finalize()

    async def counts(self) -> FrontierCounts:
        """Queued / in flight / done / failed for the whole cluster (the last known ones)."""
        return await self._health.counts(self._releases.send, read_counts)

    # -- beyond the protocol ------------------------------------------------------------

    async def publish_stats(self, counters: Mapping[str, int]) -> None:
        """Add what ``counters`` (this process's running totals) gained since the last call
        to the job's stats hash, which sums every process (``crawl status`` shows it)."""
        await self._health.guard(self._stats.publish(counters))

    def watch_health(
        self, on_failure: Callable[[FrontierFailed], None], unavailable_timeout_s: float
    ) -> None:
        """Wait out outages up to ``unavailable_timeout_s``; then, or when the job's state
        is lost, stop and call ``on_failure`` once (see :mod:`.health`)."""
        self._health.watch(on_failure, unavailable_timeout_s)

    def status_note(self) -> str | None:
        """Say "waiting for Redis (since HH:MM:SS)" during an outage, else None."""
        return self._health.note()

    def _make_lease(self, rid: bytes, data: bytes, host: str) -> Lease | None:
        request = self._codec.decode_stored(data, self.job, rid)
        if request is None:  # marked failed ("undecodable" in the SQLite frontier)
            self._releases.queue((rid, b"F", 0.0, b"", f"request {rid.decode()}"))
            return None
        lease = Lease(request, host, fingerprint(request))
        self._held.add(lease, rid)
        self._delays.leased(host, rid)
        return lease

    def _give_back(
        self, lease: Lease, outcome: bytes, delay_s: float = 0.0, data: bytes = b""
    ) -> None:
        rid = self._held.give_back(lease, _OUTCOMES[outcome])
        if rid is not None:
            self._releases.queue((rid, outcome, delay_s, data, lease.request.url))

    async def _renew(self) -> None:
        ids = self._held.keys() + self._releases.ids()
        ttl = self._seeding_ttl_ms if self._seeding else 0
        args = [self._now(), self.worker, self.lease_timeout_s, ttl, *ids]
        lost = await self._link.script("RENEW", args)
        if lost:
            said = "frontier %s: %d leases of this worker expired and were re-delivered"
            logger.warning(said, self.job, len(lost))

    @property
    def _seen(self) -> SeenCache:
        """``_known``, emptied whenever Redis may have come back with an older state."""
        if self._known_at != self._link.recoveries:
            self._known_at, self._known = self._link.recoveries, SeenCache(_KNOWN_MAX)
        return self._known

    @property
    def _limit(self) -> int:
        return self.policy.per_host

    def _now(self) -> str:
        return "" if self.server_time else repr(self.clock.now())
