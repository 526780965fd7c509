"""robots.txt: fetched once per origin, cached for the crawl, parsed with Protego.

Outcomes: 2xx → obey the rules; 4xx → everything allowed; 5xx or unreachable →
the origin is treated as disallowed for now (RFC 9309) and robots.txt is tried again
(requests wait in the frontier meanwhile); after ``max_failures`` failed tries the
origin's requests are dropped. A 5xx or a timeout is tried again after ``retry_s``;
a network error (connection refused, a name that does not resolve) after 1 s, then
2 s, 4 s... (capped at ``retry_s``), with ``NETWORK_EXTRA_TRIES`` more tries: a host that is
not there is reported at once and given up after ~30 s, while a blip of a few seconds
costs nothing. Each wait
is shown on the host board (the progress display) with its reason.

Parsed robots.txt files are kept for the ``max_origins`` most recently checked
origins (:class:`RecentHosts`). An origin whose robots.txt is being fetched, or
that failed and waits for its retry time, is never evicted; any other may be,
and is fetched again if it comes back (``fetched`` and ``evicted`` count both).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protego import Protego
from yarl import URL

from .bounded import RecentHosts
from .clock import Clock
from .errors import BlockedAddress, FetchError, NetworkError
from .hostboard import HostBoard
from .loglines import get_logger
from .request import Request
from .response import Response
from .settings import Settings

__all__ = ["RobotsCache", "RobotsVerdict", "Verdict"]

logger = get_logger("crawler.robots")

# RFC 9309: crawlers must parse at least 500 KiB; what lies beyond is cut, not refused.
ROBOTS_MAX_BYTES = 500 * 1024
# Network errors are retried sooner, so they get a few more tries before the host is given up.
NETWORK_EXTRA_TRIES = 3
_ROBOTS_META = {"robots_txt": True, "download_maxsize": ROBOTS_MAX_BYTES, "download_truncate": True}


class Verdict(enum.Enum):
    """What robots.txt says about one request."""

    ALLOWED = "allowed"
    DISALLOWED = "disallowed"
    UNAVAILABLE = "unavailable"  # robots.txt could not be read yet: wait and try again
    GAVE_UP = "gave_up"  # robots.txt failed too often: the origin is treated as disallowed


@dataclass(frozen=True, slots=True)
class RobotsVerdict:
    """A verdict, the origin's politeness delay (Crawl-delay / Request-rate), and a retry time.

    ``waited`` is True when this check waited for robots.txt being fetched for another
    request: the request was handed out before the origin's delay was known, so a caller
    should let the frontier space it rather than send it at once.
    """

    verdict: Verdict
    delay_s: float | None = None
    retry_in_s: float = 0.0
    waited: bool = False


@dataclass(slots=True)
class _Origin:
    parser: Protego | None = None
    allow_all: bool = False
    failures: int = 0
    give_up_after: int = 0  # failures that end the tries (more for network errors)
    retry_at: float = 0.0
    delay_s: float | None = None
    fetching: asyncio.Future[None] | None = None


Fetcher = Callable[[Request], Awaitable[Response]]


class RobotsCache:
    """Answers "may this request be fetched?" per origin, fetching robots.txt when needed."""

    def __init__(
        self,
        fetch: Fetcher,
        user_agent: str,
        clock: Clock,
        retry_s: float = 60.0,
        max_failures: int = 3,
        max_delay_s: float = 60.0,
        max_origins: int | None = None,  # None: bounded.DEFAULT_MAX_HOSTS
        hosts: HostBoard | None = None,
    ) -> None:
        self._fetch = fetch
        self._agent = user_agent
        self._clock = clock
        self._retry_s = retry_s
        self._max_failures = max_failures
        self._max_delay_s = max_delay_s
        self._origins: RecentHosts[_Origin] = RecentHosts(max_origins, self._evictable)
        self._hosts = hosts
        self.fetched = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, fetch: Fetcher, clock: Clock, hosts: HostBoard | None = None
    ) -> RobotsCache:
        """A cache with the ROBOTSTXT_* settings and the crawl's USER_AGENT."""
        return cls(
            fetch,
            settings.USER_AGENT,
            clock,
            retry_s=settings.ROBOTSTXT_RETRY_S,
            max_failures=settings.ROBOTSTXT_MAX_FAILURES,
            max_delay_s=settings.ROBOTSTXT_MAX_DELAY,
            hosts=hosts,
        )

    def __len__(self) -> int:
        """Origins whose robots.txt state is kept now."""
        return len(self._origins)

    @property
    def evicted(self) -> int:
        """Origins forgotten so far to stay within ``max_origins``."""
        return self._origins.evicted

    def _evictable(self, state: _Origin) -> bool:
        if state.fetching is not None:
            return False  # requests are waiting on it
        # a failed origin keeps its retry time (and failure count) until the retry is due
        return not state.failures or state.retry_at <= self._clock.now()

    def sitemaps(self, url: str) -> list[str]:
        """Sitemap URLs listed in the cached robots.txt of ``url``'s origin."""
        origin = self._origins.peek(_origin(URL(url)))
        if origin is None or origin.parser is None:
            return []
        return list(origin.parser.sitemaps)

    async def check(self, request: Request) -> RobotsVerdict:
        """The verdict for ``request``, fetching its origin's robots.txt on first use."""
        key = _origin(request.yarl_url)
        state = self._origins.get(key)
        if state is None:
            state = self._origins.put(key, _Origin())
        waited = False
        while True:
            if state.fetching is not None:
                waited = True
                await asyncio.shield(state.fetching)
                continue
            if state.parser is not None:
                if state.parser.can_fetch(request.url, self._agent):
                    return RobotsVerdict(Verdict.ALLOWED, state.delay_s, waited=waited)
                return RobotsVerdict(Verdict.DISALLOWED, state.delay_s, waited=waited)
            if state.allow_all:
                return RobotsVerdict(Verdict.ALLOWED, waited=waited)
            if state.failures and state.failures >= state.give_up_after:
                return RobotsVerdict(Verdict.GAVE_UP)
            wait = state.retry_at - self._clock.now()
            if state.failures and wait > 0:
                return RobotsVerdict(Verdict.UNAVAILABLE, retry_in_s=wait)
            await self._load(key, state)

    async def _load(self, key: str, state: _Origin) -> None:
        state.fetching = asyncio.get_running_loop().create_future()
        try:
            robots_url = f"{key}/robots.txt"
            self.fetched += 1
            try:
                response = await self._fetch(
                    Request(robots_url, dont_filter=True, meta=dict(_ROBOTS_META))
                )
            except BlockedAddress:
                # the pages will be refused (and counted) the same way: nothing to wait for
                state.allow_all = True
                return
            except FetchError as exc:
                self._failed(state, robots_url, str(exc), isinstance(exc, NetworkError))
                return
            status = response.status
            if 200 <= status < 300:
                state.parser = Protego.parse(response.text)
                state.delay_s = self._delay(state.parser)
            elif 400 <= status < 500:
                state.allow_all = True
            else:
                self._failed(state, robots_url, f"HTTP {status}")
        finally:
            fetching, state.fetching = state.fetching, None
            if fetching is not None and not fetching.done():
                fetching.set_result(None)

    def _failed(self, state: _Origin, url: str, why: str, network: bool = False) -> None:
        state.failures += 1
        retry_s = min(self._retry_s, 2.0 ** (state.failures - 1)) if network else self._retry_s
        state.retry_at = self._clock.now() + retry_s
        state.give_up_after = self._max_failures + (NETWORK_EXTRA_TRIES if network else 0)
        last = state.failures >= state.give_up_after
        if self._hosts is not None:
            host = URL(url).host or url
            if last:
                self._hosts.waiting(host, f"robots.txt unavailable ({why:.80}): gave up")
            else:
                self._hosts.waiting(host, f"robots.txt unavailable ({why:.80}), retrying", retry_s)
        if last:
            logger.warning(
                "%s unavailable (%s): gave up after %d tries; the host's requests are dropped"
                " (RFC 9309: an unreachable robots.txt disallows everything)",
                url,
                why,
                state.failures,
            )
            return
        logger.warning(
            "%s unavailable (%s): host treated as disallowed, retry in %.0fs (%d/%d)",
            url,
            why,
            retry_s,
            state.failures,
            state.give_up_after,
        )

    def _delay(self, parser: Protego) -> float | None:
        delays = []
        crawl_delay = parser.crawl_delay(self._agent)
        if crawl_delay:
            delays.append(float(crawl_delay))
        rate = parser.request_rate(self._agent)
        if rate is not None and rate.requests:
            delays.append(rate.seconds / rate.requests)
        if not delays:
            return None
        return min(max(delays), self._max_delay_s)


def _origin(url: URL) -> str:
    return str(url.origin())
