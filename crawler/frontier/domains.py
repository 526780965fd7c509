"""Per-host readiness: which hosts may start a request now, and when the next one may.

A host is *ready* when it has queued work, fewer than ``per_host`` requests in
flight and its delay has passed. Ready hosts sit in a heap ordered by the
priority of their best request, so the globally most urgent ready request is
served first; hosts waiting out a delay sit in a heap ordered by time; hosts at
their concurrency limit sit in neither until a request finishes. Every
operation is O(log hosts) and independent of how many requests are queued.

A host with no queued request, none in flight and no hold in the future is
*idle*. An idle host without overrides is forgotten at once; one with a delay or
concurrency override (AutoThrottle, robots.txt Crawl-delay) is kept among the
``max_hosts`` most recently active hosts (:class:`RecentHosts`) and evicted after
that. A host that is not idle is never evicted: its queue, in-flight count and
hold are the frontier's truth. An evicted host that comes back starts from the
policy's delay until its override is set again.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from ..bounded import RecentHosts
from ..clock import Clock
from .base import PolitenessPolicy

__all__ = ["HeadKey", "HostReadiness"]

HeadKey = tuple[int, int]
"""(negated priority, sequence) of a host's best queued request: smaller is more urgent."""


@dataclass(slots=True)
class _Host:
    in_flight: int = 0
    next_at: float = 0.0
    head: HeadKey | None = None  # best queued request, None when the host queue is empty
    ready_entry: HeadKey | None = None  # the live entry of this host in the ready heap
    delayed_until: float | None = None  # the live entry of this host in the delayed heap
    delay_s: float | None = None  # per-host override of the policy delay
    limit: int | None = None  # per-host override of the policy concurrency
    started_at: float = 0.0  # when its last request started (see refund)
    charged: float | None = None  # the next_at its last start set, while it may be given back


@dataclass(slots=True)
class HostReadiness:
    """Tracks in-flight counts and next-allowed times per host, and picks the next host."""

    policy: PolitenessPolicy
    clock: Clock
    max_hosts: int | None = None  # None: bounded.DEFAULT_MAX_HOSTS
    _hosts: RecentHosts[_Host] = field(init=False)
    _ready: list[tuple[int, int, str]] = field(default_factory=list)
    _delayed: list[tuple[float, str]] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._hosts = RecentHosts(self.max_hosts, self._idle)

    def __len__(self) -> int:
        """Hosts whose state is kept now."""
        return len(self._hosts)

    def _idle(self, state: _Host) -> bool:
        """True if ``state`` may be forgotten: nothing queued, in flight or held."""
        return (
            state.head is None
            and state.in_flight == 0
            and state.delayed_until is None
            and state.next_at <= self.clock.now()
        )

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts.put(host, _Host())
        return state

    def set_head(self, host: str, head: HeadKey | None) -> None:
        """Record the best queued request of ``host`` after a push or pop."""
        state = self._hosts.get(host)
        if state is None:
            if head is None:
                return
            state = self._hosts.put(host, _Host())
        state.head = head
        self._schedule(host, state)

    def pop_ready(self) -> str | None:
        """The host whose request should start now (marked as started), or None."""
        now = self.clock.now()
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            when, host = heapq.heappop(delayed)
            state = self._hosts.get(host)
            if state is not None and state.delayed_until == when:
                state.delayed_until = None
                self._schedule(host, state)
        ready = self._ready
        while ready:
            neg_priority, seq, host = heapq.heappop(ready)
            state = self._hosts.get(host)
            if state is None or state.ready_entry != (neg_priority, seq):
                continue  # stale entry: the host's head changed since it was pushed
            state.ready_entry = None
            state.in_flight += 1
            state.started_at = now
            state.charged = None
            delay = state.delay_s
            if delay is None:
                delay = self.policy.host_delays.get(host, self.policy.delay_s)
            if delay:
                jitter = self.policy.jitter
                if jitter:
                    delay *= self._rng.uniform(1.0 - jitter, 1.0 + jitter)
                state.next_at = state.charged = now + delay
            return host
        return None

    def refund(self, host: str, since: float) -> bool:
        """Give back the delay of ``host``'s last start if it started at or before ``since``.

        For a request that never reached the network (an HTTP cache hit): its host may
        start the next request at once. Nothing changes if another request of the host
        started after ``since`` or a hold moved the next start since (``next_at`` is no
        longer what that start set). True if the host became ready.
        """
        state = self._hosts.get(host)
        if state is None or state.charged is None or state.started_at > since:
            return False
        if state.next_at != state.charged:
            return False
        state.charged = None
        state.next_at = state.started_at
        state.delayed_until = None  # its entry in the delayed heap is stale now
        self._schedule(host, state)
        return state.ready_entry is not None

    def finished(self, host: str) -> None:
        """A request of ``host`` is no longer in flight."""
        state = self._hosts.get(host)
        if state is None:
            return
        state.in_flight -= 1
        if (
            state.head is None
            and state.in_flight == 0
            and state.next_at <= self.clock.now()
            and state.delay_s is None
            and state.limit is None
        ):
            self._hosts.pop(host)  # forget idle hosts so 100k-host crawls stay small
            return
        self._schedule(host, state)

    def set_delay(self, host: str, delay_s: float | None) -> None:
        """Override the delay of one host (None restores the policy's)."""
        state = self._host(host)
        state.delay_s = delay_s
        self._schedule(host, state)

    def set_limit(self, host: str, limit: int | None) -> None:
        """Override the concurrency of one host (None restores the policy's)."""
        state = self._host(host)
        state.limit = limit
        self._schedule(host, state)

    def delay_of(self, host: str) -> float:
        """The delay in force for ``host`` (override or policy)."""
        state = self._hosts.peek(host)
        if state is not None and state.delay_s is not None:
            return state.delay_s
        return self.policy.host_delays.get(host, self.policy.delay_s)

    def delay_host(self, host: str, until: float) -> None:
        """Hold every request of ``host`` until clock time ``until`` (back-off, Retry-After)."""
        state = self._host(host)
        state.next_at = max(state.next_at, until)
        state.charged = None  # a hold is never given back
        state.ready_entry = None
        self._schedule(host, state)

    def has_ready(self) -> bool:
        """True if a host may start a request now."""
        return bool(self._ready) or bool(self._delayed and self._delayed[0][0] <= self.clock.now())

    def next_time(self) -> float | None:
        """When the earliest delayed host becomes ready, or None."""
        return self._delayed[0][0] if self._delayed else None

    def in_flight(self, host: str) -> int:
        """Requests of ``host`` in flight now."""
        state = self._hosts.peek(host)
        return state.in_flight if state else 0

    def _schedule(self, host: str, state: _Host) -> None:
        if state.head is None:
            state.ready_entry = None
            return
        limit = self.policy.per_host if state.limit is None else state.limit
        if state.in_flight >= limit:
            state.ready_entry = None  # parked until a request finishes
            return
        if state.next_at > self.clock.now():
            state.ready_entry = None
            if state.delayed_until != state.next_at:
                state.delayed_until = state.next_at
                heapq.heappush(self._delayed, (state.next_at, host))
            return
        if state.ready_entry != state.head:
            state.ready_entry = state.head
            heapq.heappush(self._ready, (state.head[0], state.head[1], host))
