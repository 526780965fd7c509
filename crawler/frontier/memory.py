"""The in-memory frontier: fast, and gone when the process ends."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

from ..clock import Clock, MonotonicClock
from ..fingerprint import fingerprint
from ..request import Request
from .base import FrontierCounts, Lease, PolitenessPolicy
from .domains import HostReadiness
from .waiters import LeaseWaiters, LocalPoliteness

__all__ = ["MemoryFrontier"]


class MemoryFrontier(LocalPoliteness):
    """Frontier held in process memory: per-host priority queues and a fingerprint set."""

    def __init__(self, policy: PolitenessPolicy | None = None, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.readiness = HostReadiness(policy or PolitenessPolicy(), self.clock)
        self._seen: set[bytes] = set()
        self._queues: dict[str, list[tuple[int, int, Request, bytes]]] = {}
        self._sleeping: list[tuple[float, int, Request, bytes]] = []  # retries not yet due
        self._seq = itertools.count()
        self._queued = 0
        self._in_flight = 0
        self._done = 0
        self._failed = 0
        self._stopped = False
        self._waiters = LeaseWaiters(self.clock)

    async def open(self) -> None:
        """Nothing to acquire in memory."""

    async def close(self) -> None:
        """Stop and wake every waiter."""
        self.stop()

    async def push(self, requests: Sequence[Request]) -> list[bool]:
        """Queue new requests; duplicates (by fingerprint) are refused unless ``dont_filter``."""
        accepted: list[bool] = []
        seen, enqueue, keep = self._seen, self._enqueue, accepted.append  # ~30 links a page
        for request in requests:
            fp = fingerprint(request)
            if fp in seen and not request.dont_filter:
                keep(False)
                continue
            seen.add(fp)
            enqueue(request, fp)
            keep(True)
        self._waiters.wake(len(requests))
        return accepted

    def _enqueue(self, request: Request, fp: bytes) -> None:
        host = request.host
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = []
        entry = (-request.priority, next(self._seq), request, fp)
        heapq.heappush(queue, entry)
        self._queued += 1
        if queue[0] is entry:
            self.readiness.set_head(host, (entry[0], entry[1]))

    async def add_seen(self, fingerprint: bytes) -> bool:
        """Record a fingerprint; True if it was not seen before."""
        if fingerprint in self._seen:
            return False
        self._seen.add(fingerprint)
        return True

    async def lease(self) -> Lease | None:
        """Wait until a request's host is ready and hand it out; None when exhausted."""
        while True:
            if self._stopped:
                return None
            self._wake_sleeping()
            host = self.readiness.pop_ready()
            if host is not None:
                queue = self._queues[host]
                _, _, request, fp = heapq.heappop(queue)
                if queue:
                    self.readiness.set_head(host, (queue[0][0], queue[0][1]))
                else:
                    del self._queues[host]
                    self.readiness.set_head(host, None)
                self._queued -= 1
                self._in_flight += 1
                if self._waiters and self.readiness.has_ready():
                    self._waiters.wake(1)  # more is ready: let the next idle worker take it
                return Lease(request, host, fp)
            if self._queued == 0 and self._in_flight == 0 and not self._sleeping:
                self._waiters.wake_all()  # exhausted: release everybody
                return None
            await self._wait()

    async def ack(self, lease: Lease) -> None:
        """The request was handled."""
        lease.settle("ack")
        self._done += 1
        self._release(lease)

    async def fail(self, lease: Lease, reason: str) -> None:
        """The request finally failed."""
        lease.settle("fail")
        self._failed += 1
        self._release(lease)

    async def retry(self, lease: Lease, delay_s: float) -> None:
        """Re-queue the request once ``delay_s`` seconds have passed."""
        lease.settle("retry")
        due = self.clock.now() + delay_s
        heapq.heappush(self._sleeping, (due, next(self._seq), lease.request, lease.fingerprint))
        self._release(lease)

    async def claim_seed(self) -> bool:
        """A memory frontier always starts empty: seed it."""
        return True

    async def seed_done(self) -> None:
        """Nothing to record."""

    async def flush(self) -> None:
        """Nothing to write."""

    def stop(self) -> None:
        """Make every current and future ``lease`` return None."""
        self._stopped = True
        self._waiters.wake_all()

    async def counts(self) -> FrontierCounts:
        """Queued / in flight / done / failed."""
        return FrontierCounts(
            self._queued + len(self._sleeping), self._in_flight, self._done, self._failed
        )

    def _release(self, lease: Lease) -> None:
        self._in_flight -= 1
        self.readiness.finished(lease.host)
        if self._queued or self._sleeping or self._in_flight:
            self._waiters.wake(1)
        else:
            self._waiters.wake_all()

    def _wake_sleeping(self) -> None:
        sleeping = self._sleeping
        if not sleeping:
            return
        now = self.clock.now()
        while sleeping and sleeping[0][0] <= now:
            _, _, request, fp = heapq.heappop(sleeping)
            self._enqueue(request, fp)

    async def _wait(self) -> None:
        wake_at = self.readiness.next_time()
        if self._sleeping and (wake_at is None or self._sleeping[0][0] < wake_at):
            wake_at = self._sleeping[0][0]
        await self._waiters.wait(wake_at)
