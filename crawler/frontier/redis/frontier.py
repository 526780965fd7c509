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
- ``ack`` / ``fail`` / ``retry`` go with this process's next ``lease`` (one round trip)
  or right after. They free the host's slot, but an acked request stays leased (D/F)
  until this process's next ``flush()``, which the engine calls after the items are
  flushed: a crash never marks done a request whose items were not written.
- The crawl is exhausted for everyone when nothing is queued, delayed or leased
  and nobody is still seeding; every waiting ``lease`` then returns None.

Idle workers wait as :mod:`.waiting` says. Redis calls are retried through lost
connections (see :mod:`.link`): a request is lost only if Redis loses it (README,
"Scaling out": persistence settings).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from ...bounded import RecentHosts
from ...clock import Clock, MonotonicClock
from ...errors import ConfigError, CrawlerError
from ...fingerprint import fingerprint
from ...loglines import get_logger
from ...request import Request
from ..base import FrontierCounts, Lease, PolitenessPolicy
from ..codec import RequestCodec
from ..leases import LeaseBook
from ..seen import SeenCache
from . import scripts as lua
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
        self._held: LeaseBook[bytes] = LeaseBook(job)  # lease -> its request id
        self._releases = Releases(
            self._link,
            self.worker,
            lambda: [self._now(), self.worker, self._limit, self._final],
            final=flush_interval_s <= 0,
            on_ready=self._waiters.wake_one,
        )
        self._host_delays: dict[str, float | None] = {}  # last value sent per host
        # Per host, this process's last lease (id, local clock time): what refund_delay names.
        self._last_lease: RecentHosts[tuple[bytes, float]] = RecentHosts()
        self._stats = PublishedStats(self._link)
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
            if self.policy.host_delays:
                delays = [item for pair in self.policy.host_delays.items() for item in pair]
                await link.do(lambda: client.hset(link.key("pdelay"), items=delays))
            await self._renew()
        except BaseException as exc:
            await link.close()
            if isinstance(exc, CrawlerError) and not isinstance(exc, ConfigError):
                raise ConfigError(f"cannot use the Redis frontier: {exc}") from None
            raise
        self._tasks = [
            asyncio.create_task(
                repeat(
                    self._closing, self.lease_timeout_s / 3, self._renew, f"{self.job}: heartbeat"
                ),
                name=f"heartbeat {self.job}",
            ),
            asyncio.create_task(
                link.listen(self._waiters.wake_one, lambda: not self._closing.is_set()),
                name=f"wake-ups {self.job}",
            ),
        ]
        if 0 < self.flush_interval_s < float("inf"):
            flushing = repeat(
                self._closing, self.flush_interval_s, self._releases.finalize, f"{self.job}: flush"
            )
            self._tasks.append(asyncio.create_task(flushing, name=f"flush {self.job}"))

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
        try:
            await self._releases.close(give_up_s)
            held = self._held.keys()
            self._held.clear()
            if held:
                args = [self._now(), self.worker, self._limit, *held]
                await link.script("ABANDON", args, give_up_s)
            client = link.client
            await link.do(lambda: client.zrem(link.key("workers"), self.worker), 1.0)
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
        for state in (self._known, self._held, self._host_delays, self._stats):
            state.clear()
        self._releases.clear()
        await self._renew()

    # -- the Frontier protocol --------------------------------------------------------

    async def push(self, requests: Sequence[Request]) -> list[bool]:
        """Queue new requests; duplicates (by fingerprint, cluster-wide) are refused.

        Fingerprints this process already saw in the seen set are refused without asking
        Redis (the set only grows): most links of a page are such duplicates."""
        known = self._known
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
        reply = await self._link.script("PUSH", args)
        ready = int(reply.pop())
        for index, flag in zip(sent, reply, strict=True):
            accepted[index] = bool(flag)
        self._known.add(fps)
        if ready:
            self._waiters.wake(ready)
        return accepted

    async def add_seen(self, fingerprint: bytes) -> bool:
        """Record a fingerprint (cluster-wide); True if it was new."""
        if fingerprint in self._known:
            return False
        link = self._link
        client = link.client
        added = await link.do(lambda: client.sadd(link.key("seen"), fingerprint))
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
        if host in self._host_delays and self._host_delays[host] == delay_s:
            return
        link = self._link
        client, key = link.client, link.key("hdelay")
        if delay_s is None:
            await link.do(lambda: client.hdel(key, host))
        else:
            await link.do(lambda: client.hset(key, host, delay_s))
        self._host_delays[host] = delay_s

    async def hold_host(self, host: str, delay_s: float) -> None:
        """Start no request to ``host`` anywhere for ``delay_s`` seconds."""
        await self._link.script("HOLD", [self._now(), self._limit, host, delay_s])

    async def refund_delay(self, host: str, since: float) -> None:
        """Give back the delay of this process's last lease of ``host`` if it was leased by
        ``since`` and no lease anywhere (nor a hold) set the host's delay after it."""
        last = self._last_lease.peek(host)
        if last is None or last[1] > since:
            return
        self._last_lease.pop(host)
        args = [self._now(), self._limit, host, last[0]]
        if await self._link.script("REFUND", args):
            self._waiters.wake(1)

    def stop(self) -> None:
        """Make every current and future ``lease`` of this process return None."""
        self._stopped = True
        self._waiters.wake_all()

    async def claim_seed(self) -> bool:
        """True for the first process of the job: it pushes the start requests."""
        args = [self._now(), self.worker, self._seeding_ttl_ms]
        self._seeding = bool(await self._link.script("CLAIM_SEED", args))
        return self._seeding

    async def seed_done(self) -> None:
        """The start requests are all pushed: from now on the crawl may end."""
        if self._seeding:
            self._seeding = False
            await self._link.script("SEED_DONE", [self.worker])

    async def flush(self) -> None:
        """Make the acks and failures since the last flush final."""
        await self._releases.send()
        await self._releases.finalize()

    async def counts(self) -> FrontierCounts:
        """Queued / in flight / done / failed for the whole cluster."""
        await self._releases.send()
        return await read_counts(self._link)

    # -- beyond the protocol ------------------------------------------------------------

    async def publish_stats(self, counters: Mapping[str, int]) -> None:
        """Add what ``counters`` (this process's running totals) gained since the last call
        to the job's stats hash, which sums every process (``crawl status`` shows it)."""
        await self._stats.publish(counters)

    # -- leases ---------------------------------------------------------------------------

    def _make_lease(self, rid: bytes, data: bytes, host: str) -> Lease | None:
        request = self._codec.decode_stored(data, self.job, rid)
        if request is None:  # marked failed ("undecodable" in the SQLite frontier)
            self._releases.queue((rid, b"F", 0.0, b"", f"request {rid.decode()}"))
            return None
        lease = Lease(request, host, fingerprint(request))
        self._held.add(lease, rid)
        self._last_lease.put(host, (rid, self.clock.now()))
        return lease

    def _give_back(
        self, lease: Lease, outcome: bytes, delay_s: float = 0.0, data: bytes = b""
    ) -> None:
        rid = self._held.give_back(lease, _OUTCOMES[outcome])
        if rid is not None:
            self._releases.queue((rid, outcome, delay_s, data, lease.request.url))

    # -- background tasks ---------------------------------------------------------------

    async def _renew(self) -> None:
        ids = self._held.keys() + self._releases.ids()
        ttl = self._seeding_ttl_ms if self._seeding else 0
        lost = await self._link.script(
            "RENEW", [self._now(), self.worker, self.lease_timeout_s, ttl, *ids]
        )
        if lost:
            logger.warning(
                "frontier %s: %d leases of this worker expired and were re-delivered",
                self.job,
                len(lost),
            )

    @property
    def _limit(self) -> int:
        return self.policy.per_host

    def _now(self) -> str:
        return "" if self.server_time else repr(self.clock.now())
