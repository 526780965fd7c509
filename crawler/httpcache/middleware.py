"""The HTTP cache's place in a crawl: a downloader middleware, and robots.txt through it."""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy

from ..clock import Clock
from ..frontier.base import DelayRefunds
from ..middleware import EndRequest, Failed, Handler, lease_started
from ..request import Request
from ..response import Response
from ..stats import Stats
from .cache import HttpCache, NotRecorded

__all__ = ["HttpCacheMiddleware", "cached_fetcher"]


class HttpCacheMiddleware:
    """Answers requests from an :class:`HttpCache`; the others go on down the chain.

    A response that did not use the network is counted like a fetched page
    (``pages``, ``status/<n>``, ``bytes``) and gives its host's delay back to the
    frontier (``refunds``): the next request to that host need not wait for it.
    In replay, a request not recorded fails (``failures/not_recorded``).
    """

    def __init__(
        self, cache: HttpCache, stats: Stats, clock: Clock, refunds: DelayRefunds | None
    ) -> None:
        self.cache = cache
        self.stats = stats
        self.clock = clock
        self.refunds = refunds

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Serve from the cache, or fetch through ``call_next`` and store."""
        # When the request was leased (set by the worker; now, outside a crawl): a refund is
        # refused if another request of the host started since, e.g. while robots.txt loaded.
        since = lease_started.get(self.clock.now())
        try:
            response, networked = await self.cache.fetch(request, call_next, self.stats)
        except NotRecorded as exc:
            await self._refund(request, since)
            raise EndRequest(Failed(exc.kind, exc)) from None
        if not networked:
            stats = self.stats
            stats.inc("pages")
            stats.inc(f"status/{response.status}")
            stats.inc("bytes", len(response.body))
            await self._refund(request, since)
        return response

    async def _refund(self, request: Request, since: float) -> None:
        if self.refunds is not None:
            await self.refunds.refund_delay(request.host, since)


def cached_fetcher(cache: HttpCache, fetch: Handler, stats: Stats | None) -> Handler:
    """``fetch`` (robots.txt's) through ``cache``; offline, a robots.txt not recorded is
    answered 404 (everything allowed): replayed pages were allowed when recorded."""

    async def fetch_cached(request: Request) -> Response:
        try:
            response, _ = await cache.fetch(request, fetch, stats, required=False)
        except NotRecorded:
            return Response(request.url, 404, _NO_HEADERS, b"", request)
        return response

    return fetch_cached


_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
