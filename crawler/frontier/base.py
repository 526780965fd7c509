"""The Frontier Protocol: where requests wait until their host is ready.

A frontier de-duplicates requests by fingerprint, orders them by priority and
hands out (leases) only requests whose host is below ``CONCURRENCY_PER_HOST``
and past its ``DOWNLOAD_DELAY``. Every lease ends with exactly one of ``ack``
(done), ``fail`` (finally failed) or ``retry`` (back in the queue after a delay).

What only some backends can do is an optional capability, a small Protocol of
its own, checked with ``isinstance`` (never a ``getattr`` probe):

- :class:`Resettable` (SQLite, Redis): ``--restart`` forgets the stored crawl.
- :class:`CheckpointMarks` (SQLite): the outputs' positions saved with the acks.
- :class:`StatsPublisher` (Redis): every process's stats, summed for ``crawl status``.
- :class:`DelayRefunds` (memory, SQLite, Redis): a request answered without the network
  (an HTTP cache hit) gives its host's ``DOWNLOAD_DELAY`` back.
- :class:`HealthReports` (Redis): a frontier on a server says while it waits for the
  server, and fails for good (:class:`FrontierFailed`) when the server stayed away too
  long (:class:`FrontierUnavailable`) or lost the crawl's state (:class:`StateLost`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import CrawlerError, LeaseError
from ..loglines import short_url
from ..request import Request
from ..settings import Settings

__all__ = [
    "CheckpointMarks",
    "DelayRefunds",
    "Frontier",
    "FrontierCounts",
    "FrontierFailed",
    "FrontierUnavailable",
    "HealthReports",
    "Lease",
    "PolitenessPolicy",
    "Resettable",
    "StateLost",
    "StatsPublisher",
]


@dataclass(slots=True)
class Lease:
    """A request handed to one worker; give it back with ack, fail or retry, once.

    ``settled`` says how it was given back (None while it is held). Every
    backend calls :meth:`settle` first, so a second ack, fail or retry of the same
    lease raises :class:`~crawler.errors.LeaseError` instead of corrupting counts.
    """

    request: Request
    host: str
    fingerprint: bytes
    settled: str | None = field(default=None, compare=False)

    def settle(self, how: str) -> None:
        """Record that the lease is given back (``how``: ack, fail, retry), or raise."""
        if self.settled is not None:
            raise LeaseError(
                f"the lease of {short_url(self.request.url)} was already given back"
                f" ({self.settled}); a second {how} is a bug in the caller"
            )
        self.settled = how


@dataclass(frozen=True, slots=True)
class FrontierCounts:
    """How many requests are queued, in flight, done and failed (an immutable snapshot)."""

    queued: int
    in_flight: int
    done: int
    failed: int


@dataclass(frozen=True, slots=True)
class PolitenessPolicy:
    """Per-host limits the frontier enforces: concurrency and the delay between starts."""

    per_host: int = 8
    delay_s: float = 0.0
    jitter: float = 0.0  # each delay is multiplied by uniform(1 - jitter, 1 + jitter)
    host_delays: Mapping[str, float] = field(default_factory=dict)  # per-host overrides

    @classmethod
    def from_settings(cls, settings: Settings) -> PolitenessPolicy:
        """CONCURRENCY_PER_HOST, DOWNLOAD_DELAY (with its jitter) and HOST_DELAYS."""
        return cls(
            per_host=settings.CONCURRENCY_PER_HOST,
            delay_s=settings.DOWNLOAD_DELAY,
            jitter=settings.DOWNLOAD_DELAY_JITTER,
            host_delays={h.lower(): d for h, d in settings.HOST_DELAYS.items()},
        )


@runtime_checkable
class Frontier(Protocol):
    """Priority queue + de-duplication + per-host readiness, with leases."""

    async def open(self) -> None:
        """Acquire resources (files, connections). Called once before use."""

    async def close(self) -> None:
        """Release resources; wakes any waiting ``lease`` call."""

    async def push(self, requests: Sequence[Request]) -> list[bool]:
        """Queue requests; for each, True if queued, False if it was a duplicate."""

    async def add_seen(self, fingerprint: bytes) -> bool:
        """Record a fingerprint (e.g. a redirect target); True if it was new."""

    async def lease(self) -> Lease | None:
        """Wait for a request whose host is ready; None when the crawl is exhausted or stopped."""

    async def ack(self, lease: Lease) -> None:
        """The leased request was handled."""

    async def fail(self, lease: Lease, reason: str) -> None:
        """The leased request finally failed for ``reason``."""

    async def retry(self, lease: Lease, delay_s: float) -> None:
        """Put the leased request back, not to be leased again for ``delay_s`` seconds."""

    async def set_host_delay(self, host: str, delay_s: float | None) -> None:
        """Override the delay between requests to ``host`` (None restores the policy's)."""

    async def hold_host(self, host: str, delay_s: float) -> None:
        """Start no request to ``host`` for ``delay_s`` seconds (back-off, Retry-After)."""

    def stop(self) -> None:
        """Stop handing out leases: waiting and future ``lease`` calls return None."""

    async def claim_seed(self) -> bool:
        """True if this process should push the start requests (the crawl's first run).

        A persistent or shared frontier that was seeded before answers False.
        """

    async def seed_done(self) -> None:
        """The start requests are all pushed (until then the crawl is never exhausted)."""

    async def flush(self) -> None:
        """Make every push and state change so far durable (no-op in memory)."""

    async def counts(self) -> FrontierCounts:
        """Queued / in flight / done / failed counts."""


@runtime_checkable
class CheckpointMarks(Protocol):
    """A frontier that stores small named marks atomically with its acks (optional capability).

    The engine saves the outputs' durable positions this way: a position is
    durable exactly when the acks of the requests whose items it covers are, so
    a resume can cut every file back to what the acked requests produced.
    """

    def set_marks(self, marks: Mapping[str, str]) -> None:
        """Buffer ``marks``; the next ``flush()`` writes them in the acks' transaction."""

    async def load_marks(self) -> dict[str, str]:
        """The marks written by the last successful flush (empty if none)."""


@runtime_checkable
class Resettable(Protocol):
    """A frontier whose stored crawl can be forgotten (optional capability: ``--restart``)."""

    async def reset(self) -> None:
        """Delete every stored request, fingerprint and mark; opens the store if needed."""


@runtime_checkable
class StatsPublisher(Protocol):
    """A shared frontier that sums the stats of every process (optional capability).

    ``crawl status`` shows the sums; the engine publishes its counters periodically
    and once more at the end.
    """

    async def publish_stats(self, counters: Mapping[str, int]) -> None:
        """Add what ``counters`` (this process's running totals) gained since the last call."""


@runtime_checkable
class DelayRefunds(Protocol):
    """A frontier that can give back a delay a request did not use (optional capability).

    A frontier charges a host's delay when it hands out a request; a request answered
    from the HTTP cache never reached the host, so the next one need not wait for it.
    """

    async def refund_delay(self, host: str, since: float) -> None:
        """A request of ``host`` leased at or before ``since`` (the frontier's clock) did
        not reach the network: let the host's next request start without its delay.

        No-op if another request of ``host`` started after ``since`` or a hold
        (``hold_host``) applies since: those delays were used.
        """


class FrontierFailed(CrawlerError):
    """The frontier's server failed for good: the crawl stops; ``reason`` is its finish reason."""

    reason = "frontier_failed"


class StateLost(FrontierFailed):
    """The shared crawl's state is gone or was replaced (a Redis restarted empty, flushed,
    or failed over to an empty replica): nothing of it can be trusted (``crawl run`` exits 11)."""

    reason = "state_lost"


class FrontierUnavailable(FrontierFailed):
    """The frontier's server stayed unreachable longer than allowed (``crawl run`` exits 12);
    its state is kept there: running the same command again continues the crawl."""

    reason = "frontier_unavailable"


@runtime_checkable
class HealthReports(Protocol):
    """A frontier on a server that can go away or lose the crawl (optional capability: Redis).

    While the server is unreachable the frontier waits (leases wait, in-flight work goes
    on) for up to ``unavailable_timeout_s`` seconds and says so in :meth:`status_note`.
    When it fails for good it calls ``on_failure`` once, then hands out no more leases.
    """

    def watch_health(
        self, on_failure: Callable[[FrontierFailed], None], unavailable_timeout_s: float
    ) -> None:
        """Call ``on_failure`` when the frontier fails for good; wait out outages this long."""

    def status_note(self) -> str | None:
        """A short line for progress displays (e.g. "waiting for Redis (since 12:03:04)")."""
